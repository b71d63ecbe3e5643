"""``python -m mlx_magic.bench``."""

import sys

from mlx_magic.bench.cli import main

sys.exit(main())
