"""Tiny random models for tests and teaching (kept here for ``mlx_magic.tiny_models``).

The code is :mod:`mlx_magic.testing.tiny_models`.
"""

from mlx_magic.testing.tiny_models import *  # noqa: F401,F403
from mlx_magic.testing.tiny_models import __all__  # noqa: F401

if __name__ == "__main__":
    import sys

    from mlx_magic.testing.tiny_models import main

    sys.exit(main())
