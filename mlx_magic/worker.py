"""``python -m mlx_magic.worker``: the worker process of the process runtime.

The server itself is :mod:`mlx_magic.runtime.process.server`. This entry point
exists so that the protocol's file descriptors are claimed before anything
else is imported: nothing an import prints can reach the pipe.
"""

import os


def claim_stdio() -> tuple[int, int]:
    """Keep the protocol on private fds; send fd 1 to stderr and fd 0 to /dev/null."""
    protocol_in = os.dup(0)
    protocol_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return protocol_in, protocol_out


if __name__ == "__main__":
    _fds = claim_stdio()  # first thing, before any other import can print
    from mlx_magic.runtime.process.server import main

    main(_fds)
