"""The only package of the product that imports MLX, mlx-lm and mlx-vlm (the
tiny-model helpers of :mod:`mlx_magic.testing` do too): loading (and GGUF
conversion), the warm-model cache, stepping a generation one token at a time
under the GPU lock, text and vision generation, batching (text and vision),
drafts, thinking budgets, ``--schema`` constraints, the prefix, vision-prompt and
vision-feature caches, and MLX's memory. Everything here runs on the runtime's
owner thread (in the kernel, or in the worker process)."""
