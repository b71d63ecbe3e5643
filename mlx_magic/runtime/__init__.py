"""Where models run, behind one interface (:class:`mlx_magic.runtime.interface.Runtime`);
the values that cross it are in :mod:`mlx_magic.vocabulary`.

* :mod:`~mlx_magic.runtime.thread`: one owner thread in the kernel (imports MLX).
* :mod:`~mlx_magic.runtime.process`: a worker process over JSON-RPC (the kernel
  side imports no MLX).
* :mod:`~mlx_magic.runtime.remote`: OpenAI-compatible servers (imports no MLX).

This package's ``__init__`` imports nothing, so choosing one runtime never
imports another.
"""
