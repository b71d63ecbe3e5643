"""The remote runtime: generations sent to OpenAI-compatible servers. Imports no MLX.

The names below are the package's interface (``mlx_magic.runtime.remote.RemoteRuntime``
is documented), whichever module inside defines them.
"""

from mlx_magic.errors import RemoteServerError
from mlx_magic.runtime.remote.endpoints import parse_url
from mlx_magic.runtime.remote.runtime import RemoteRuntime

__all__ = ["RemoteRuntime", "RemoteServerError", "parse_url"]
