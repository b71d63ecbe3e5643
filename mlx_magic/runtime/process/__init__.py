"""The process runtime: the kernel side (:mod:`.runtime`, which runs a
:mod:`.worker_process` at a time; how a process ends is :mod:`.exits`), the
JSON-RPC framing (:mod:`.rpc`) and the worker's server (:mod:`.server`,
started by ``python -m mlx_magic.worker``). Only the server imports MLX.

``ProcessRuntime`` below is the package's interface, whichever module defines it.
"""

from mlx_magic.runtime.process.runtime import ProcessRuntime

__all__ = ["ProcessRuntime"]
