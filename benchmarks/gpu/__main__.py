"""``python -m mlx_magic.bench.gpu``: see :mod:`mlx_magic.bench.gpu.cli`."""

import sys

from mlx_magic.bench.gpu.cli import main

sys.exit(main())
