"""``python -m benchmarks``: see ``benchmarks.cli`` and docs/benchmark.md."""

import sys

from benchmarks.cli import main

sys.exit(main())
