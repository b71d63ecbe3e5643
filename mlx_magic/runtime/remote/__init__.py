"""The remote runtime: generations sent to OpenAI-compatible servers. Imports no MLX."""

from mlx_magic.runtime.remote.runtime import RemoteRuntime, RemoteServerError

__all__ = ["RemoteRuntime", "RemoteServerError"]
