"""Turn what the user typed after ``--model`` into a :class:`ModelSpec`.

Accepted, in this order: an alias from the ``aliases`` setting; the embedded
default ``smollm2``; a local model folder; a ``.gguf`` file of the llama
family; a Hugging Face Hub id (fetched by huggingface_hub, as mlx-lm does:
:mod:`.downloads`).
Whether a model is a text or a vision model is read from its ``config.json``.
Nothing here loads weights, so resolution is quick (but for a first
download) and its errors come before the runtime is disturbed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Mapping, Optional

from mlx_magic.errors import ModelLoadError
from mlx_magic.models.downloads import fetch_quietly
from mlx_magic.models.embedded import EMBEDDED_MODEL_NAME, cache_root, embedded_gguf_path
from mlx_magic.vocabulary.values import ModelKind, ModelSource, ModelSpec

# owner/name, as the Hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

#: How a Hub model's files are fetched: ``fetch_hub(repo_id)`` gives their folder.
FetchHub = Callable[[str], Path]


def resolve_model(
    requested: Optional[str],
    *,
    default: Optional[str] = None,
    aliases: Optional[Mapping[str, str]] = None,
    fetch_hub: Optional[FetchHub] = None,
) -> ModelSpec:
    """Resolve a model name to a spec the runtime can load.

    Args:
        requested: the ``--model`` value, or ``None``.
        default: the configured default model, used when ``requested`` is
            ``None``; the embedded model is used when both are ``None``.
        aliases: short names mapped to any accepted model name.
        fetch_hub: fetches a Hub model's files (the magics' shows the plan and
            a progress bar); else :func:`~mlx_magic.models.downloads.fetch_quietly`.

    Raises:
        ModelLoadError: with one line naming the model and what to do.
    """
    shown = requested or default or EMBEDDED_MODEL_NAME
    name = follow_aliases(shown, aliases or {})
    if name == EMBEDDED_MODEL_NAME:
        return embedded_spec()
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder_spec(shown, path)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return gguf_spec(path, name=_display_name(shown))
        raise ModelLoadError(
            f"'{name}' is a file, not a model: pass a model folder (with config.json) "
            "or a .gguf file"
        )
    if is_hub_id(name):
        return _hub_spec(shown, name, fetch_hub or fetch_quietly)
    raise ModelLoadError(
        f"No model folder or file at '{name}': pass a model folder, a .gguf file, "
        f"a Hugging Face Hub id (owner/name), an alias, or '{EMBEDDED_MODEL_NAME}'"
    )


def follow_aliases(name: str, aliases: Mapping[str, str]) -> str:
    """The model name an alias stands for (aliases may name aliases)."""
    seen = [name]
    while name in aliases:
        name = aliases[name]
        if name in seen:
            raise ModelLoadError(f"The aliases form a loop: {' -> '.join(seen + [name])}")
        seen.append(name)
    return name


def is_hub_id(name: str) -> bool:
    """``owner/name`` as the Hub spells repository ids (not a path)."""
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~"))


def embedded_spec() -> ModelSpec:
    """The embedded SmolLM2 model (converted from its GGUF file on first load)."""
    return gguf_spec(embedded_gguf_path(), name=EMBEDDED_MODEL_NAME, source="embedded")


def gguf_spec(path: Path, *, name: str, source: ModelSource = "gguf") -> ModelSpec:
    """A GGUF file, converted once into a folder under the cache."""
    from mlx_magic.models.gguf import conversion_dir_for

    path = path.expanduser().resolve()
    folder = conversion_dir_for(path, cache_root() / "gguf")
    return ModelSpec(
        name=name, key=str(path), path=str(folder), kind="text", source=source, gguf=str(path)
    )


def read_model_config(folder: Path) -> dict:
    """The parsed ``config.json`` of a model folder.

    Raises:
        ModelLoadError: no ``config.json``, or one that is not a JSON object.
    """
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"'{folder}' is not a model folder: it has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"The config.json of '{folder}' is broken: {error}") from error
    if not isinstance(config, dict):
        raise ModelLoadError(f"The config.json of '{folder}' is not a JSON object")
    return config


#: SAM 3's model types: mlx-vlm loads both with its ``sam3`` package.
SAM3_TYPES = frozenset({"sam3", "sam3_video"})
#: SAM 3.1's: mlx-community's conversions say ``sam3.1_video`` (as mlx-vlm's own
#: converter writes it), which mlx-vlm maps to its ``sam3_1`` package, a name it
#: also takes as is. The detector's ``sam3.1`` inside is no top-level type:
#: mlx-vlm would look for a package named ``sam3.1`` and fail.
SAM31_TYPES = frozenset({"sam3.1_video", "sam3_1"})
#: The families mlx-vlm's ``Sam3Predictor`` runs: segmenters, not chat models.
SEGMENTER_TYPES = SAM3_TYPES | SAM31_TYPES


def model_kind(config: dict) -> ModelKind:
    """``"segmenter"`` for SAM 3 and SAM 3.1, ``"vision"`` for a vision-language
    model (mlx-vlm), else ``"text"`` (mlx-lm)."""
    # Lower case, as mlx-vlm reads it (``get_model_type``).
    if str(config.get("model_type", "")).lower() in SEGMENTER_TYPES:
        return "segmenter"
    return "vision" if "vision_config" in config else "text"


def _display_name(name: str) -> str:
    """A path is shown by its last part (a footer has no room for a full path)."""
    if os.sep in name or name.startswith("~"):
        return Path(name).expanduser().name or name
    return name


def _folder_spec(name: str, folder: Path) -> ModelSpec:
    from mlx_magic.models.embedders import is_embedder

    folder = folder.resolve()
    name = _display_name(name)
    config = read_model_config(folder)
    kind: ModelKind = "embedding" if is_embedder(folder, config) else model_kind(config)
    return ModelSpec(name=name, key=str(folder), path=str(folder), kind=kind, source="folder")


def _hub_spec(name: str, repo_id: str, fetch_hub: FetchHub) -> ModelSpec:
    spec = _folder_spec(name, fetch_hub(repo_id))
    return ModelSpec(name=name, key=repo_id, path=spec.path, kind=spec.kind, source="hub")


def served_model_spec(
    name: Optional[str], aliases: Optional[Mapping[str, str]] = None, kind: ModelKind = "text"
) -> ModelSpec:
    """A model a remote server serves: nothing is looked up locally. With no
    name the server's own (single) model answers."""
    if not name or name == EMBEDDED_MODEL_NAME:
        return ModelSpec(
            name=EMBEDDED_MODEL_NAME, key=EMBEDDED_MODEL_NAME, path="", kind=kind, source="embedded"
        )
    name = follow_aliases(name, aliases or {})
    return ModelSpec(name=name, key=name, path="", kind=kind, source="remote")
