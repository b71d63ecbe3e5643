"""From what a user types to a :class:`~mlx_magic.vocabulary.values.ModelSpec`:
name resolution (:mod:`.resolve`), the embedded model (:mod:`.embedded`) and
GGUF conversion (:mod:`.gguf`). Nothing here imports MLX at import time."""
