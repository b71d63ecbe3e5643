"""The only package that imports MLX, mlx-lm and mlx-vlm: loading, the warm-model
cache, stepping a generation one token at a time under the GPU lock, text and
vision generation, and the prefix, vision-prompt and vision-feature caches.
Everything here runs on the runtime's owner thread."""
