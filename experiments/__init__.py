"""One-off studies, each a subpackage named by the question it answers.

Each subpackage's docstring states its question, the answer and where docs/ records it;
``python -m experiments.<name>`` runs it (``python -m experiments`` lists them). The data
a study writes stays in results/, beside the cards. Training-side: a study may import
torch, models/ and training/; service/ never imports experiments/
(tests/service/test_service_imports.py). Why a package and which studies were deleted
instead: docs/decisions.md, "One-off studies are a package".
"""
