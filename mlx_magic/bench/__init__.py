"""The benchmark: mlx_magic against raw mlx-lm and mlx-vlm, side by side, in one run.

``python -m mlx_magic.bench`` (or ``%mlx bench``); see :mod:`.runner`.
"""

from mlx_magic.bench.runner import main, run

__all__ = ["main", "run"]
