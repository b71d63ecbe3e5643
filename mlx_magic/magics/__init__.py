"""The IPython layer: ``%%mlx``, ``%%mlx_vision`` and ``%mlx``.

Parses and validates a cell's flags, resolves its prompt and images, and hands
typed requests to a runtime (:mod:`mlx_magic.runtime`); what comes back is
shown by :mod:`mlx_magic.display`. Imports no MLX.
"""
