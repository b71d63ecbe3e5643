"""The lock that keeps MLX computations from running concurrently.

The runtime holds ``gpu_lock`` while it loads a model and during every token
step of a generation. Code in a notebook that runs its own MLX work can take
the same lock so that it never competes with a generation for the GPU::

    import mlx_magic
    with mlx_magic.gpu_lock:
        y = (x @ x).sum().item()

It is re-entrant, so a helper that takes it may call another that does too.
Because the runtime releases it between token steps, a user's block waits at
most for one step of a running generation, not for the whole answer.
"""

import threading

gpu_lock = threading.RLock()
