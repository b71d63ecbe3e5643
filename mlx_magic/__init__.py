"""mlx_magic: stream local MLX language and vision-language models in IPython and Jupyter.

In a notebook::

    %load_ext mlx_magic

    %%mlx
    What is the capital of France?

Importing this package is cheap: MLX, mlx-lm and the magics are imported when
the extension loads, and the runtime thread starts on the first generation.
"""

from mlx_magic.locking import gpu_lock

__version__ = "0.1.0"
__all__ = ["MLXMagics", "gpu_lock", "load_ipython_extension", "panel", "unload_ipython_extension"]

# The magics instance registered with the running shell, so that unloading
# can stop the runtime it owns.
_registered_magics = None


def load_ipython_extension(ipython):
    """Register the ``%mlx`` and ``%%mlx`` magics (``%load_ext mlx_magic``)."""
    global _registered_magics
    from mlx_magic.magics.mlx_magics import MLXMagics
    from mlx_magic.magics.settings import forget_refused_settings

    if _registered_magics is not None:
        unload_ipython_extension(ipython)
    for line in forget_refused_settings(ipython, MLXMagics):
        print(line)  # a stored bad value must not keep the extension from loading
    _registered_magics = MLXMagics(shell=ipython)
    ipython.register_magics(_registered_magics)


def panel(vision: bool = False, conversation: str = "panel"):
    """Show a chat panel (the same as ``%mlx panel``); returns it.

    The panel's turns form the conversation ``conversation``, which
    ``%%mlx --chat NAME`` can continue. The extension must be loaded
    (``%load_ext mlx_magic``).
    """
    from IPython.display import display

    from mlx_magic.magics.panel import ChatPanel

    if _registered_magics is None:
        raise RuntimeError("Load the extension first: %load_ext mlx_magic")
    chat = ChatPanel(_registered_magics.session, vision=vision, conversation=conversation)
    display(chat.widget)
    return chat


def unload_ipython_extension(ipython):
    """Stop and join the runtime thread, freeing every warm model."""
    global _registered_magics
    if _registered_magics is None:
        return
    _registered_magics.close()
    # IPython has no unregister: take our magics out of its tables, so that a
    # later %%mlx says "not found" instead of starting a runtime no one owns.
    manager = ipython.magics_manager
    for kind, names in type(_registered_magics).magics.items():
        for name in names:
            if getattr(manager.magics[kind].get(name), "__self__", None) is _registered_magics:
                del manager.magics[kind][name]
    manager.registry.pop(type(_registered_magics).__name__, None)
    _registered_magics = None


def __getattr__(name):
    # The magics import IPython's machinery; only load them when asked.
    if name == "MLXMagics":
        from mlx_magic.magics.mlx_magics import MLXMagics

        return MLXMagics
    raise AttributeError(f"module 'mlx_magic' has no attribute {name!r}")
