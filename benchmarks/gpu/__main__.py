"""``python -m benchmarks.gpu``: see :mod:`benchmarks.gpu.cli`."""

import sys

from benchmarks.gpu.cli import main

sys.exit(main())
