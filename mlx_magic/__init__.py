"""mlx_magic: stream local MLX language and vision-language models in IPython and Jupyter.

In a notebook::

    %load_ext mlx_magic

    %%mlx
    What is the capital of France?

Importing this package is cheap: MLX, mlx-lm and the magics are imported when
the extension loads, and the runtime thread starts on the first generation.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from mlx_magic.locking import gpu_lock

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from mlx_magic.magics.mlx_magics import MLXMagics
    from mlx_magic.magics.panel import ChatPanel

__version__ = "0.1.0"
__all__ = ["MLXMagics", "gpu_lock", "load_ipython_extension", "panel", "unload_ipython_extension"]

# The magics instance registered with each shell, so that unloading stops the
# runtime that shell's magics own (and no other shell's: a process may hold
# several shells, as tests and embedded shells do). %reload_ext re-runs this
# module: the registry is kept, or another shell's magics would be forgotten
# and its runtime never stopped.
_registered_magics: "weakref.WeakKeyDictionary" = (
    globals().get("_registered_magics") or weakref.WeakKeyDictionary()
)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the ``%mlx`` and ``%%mlx`` magics (``%load_ext mlx_magic``)."""
    from mlx_magic.magics.mlx_magics import MLXMagics
    from mlx_magic.magics.settings import forget_refused_settings

    if ipython in _registered_magics:
        unload_ipython_extension(ipython)
    for line in forget_refused_settings(ipython, MLXMagics):
        print(line)  # a stored bad value must not keep the extension from loading
    magics = MLXMagics(shell=ipython)
    _registered_magics[ipython] = magics
    ipython.register_magics(magics)


def panel(vision: bool = False, conversation: str = "panel") -> ChatPanel:
    """Show a chat panel (the same as ``%mlx panel``); returns it.

    The panel's turns form the conversation ``conversation``, which
    ``%%mlx --chat NAME`` can continue. The extension must be loaded
    (``%load_ext mlx_magic``).
    """
    from IPython import get_ipython
    from IPython.display import display

    from mlx_magic.magics.panel import ChatPanel

    shell = get_ipython()
    magics = _registered_magics.get(shell) if shell is not None else None
    if magics is None and _registered_magics:
        # Not IPython's global shell (an embedded one): the latest that loaded it.
        magics = list(_registered_magics.values())[-1]
    if magics is None:
        raise RuntimeError("Load the extension first: %load_ext mlx_magic")
    chat = ChatPanel(magics.session, vision=vision, conversation=conversation)
    display(chat.widget)
    return chat


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Stop and join the runtime thread, freeing every warm model."""
    magics = _registered_magics.pop(ipython, None)
    if magics is None:
        return
    magics.close()
    # IPython has no unregister: take our magics out of its tables, so that a
    # later %%mlx says "not found" instead of starting a runtime no one owns.
    manager = ipython.magics_manager
    for kind, names in type(magics).magics.items():
        for name in names:
            if getattr(manager.magics[kind].get(name), "__self__", None) is magics:
                del manager.magics[kind][name]
    manager.registry.pop(type(magics).__name__, None)


def __getattr__(name: str) -> type[MLXMagics]:
    # The magics import IPython's machinery; only load them when asked.
    if name == "MLXMagics":
        from mlx_magic.magics.mlx_magics import MLXMagics

        return MLXMagics
    raise AttributeError(f"module 'mlx_magic' has no attribute {name!r}")
