"""``python -m mlx_magic.testing.tiny_models``: see :mod:`mlx_magic.testing.tiny_models.cli`."""

import sys

from mlx_magic.testing.tiny_models.cli import main

sys.exit(main())
