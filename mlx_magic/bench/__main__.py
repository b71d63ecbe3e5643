"""``python -m mlx_magic.bench``."""

import sys

from mlx_magic.bench.runner import main

sys.exit(main())
