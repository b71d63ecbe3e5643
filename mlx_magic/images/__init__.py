"""Images for ``%%mlx_vision``: where they come from (:mod:`.sources`), the cache of
decoded images, and their encodings. Imports no MLX."""
