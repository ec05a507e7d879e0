"""The ``python -m training`` subcommands that belong to no package of their own.

Every subcommand, here or beside its code (``training.evaluation.cli``,
``training.export.attach``, ``training.report``, ``training.sweep``,
``training.analysis.cli``), registers itself the same way: its module's
``add_parser(sub)``; ``training.cli`` only lists the modules.
"""
