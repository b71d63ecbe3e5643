"""What the runtime knows about how an answer was made: the engine's half of provenance.

The model (where it was loaded from, its Hub revision, a hash of its weight
files' names and sizes, its quantization), the chat template's hash, the
versions of MLX, mlx-lm and mlx-vlm, and a hash of the exact prompt token
ids. The rest of the record (the request, the sampler and seed, the images'
hashes, the caches used) is added by :mod:`mlx_magic.vocabulary.provenance`;
:mod:`mlx_magic.magics.provenance` makes a request from a record again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union, cast

from mlx_magic.engine.model_cache import text_tokenizer

if TYPE_CHECKING:
    import mlx.core as mx

    from mlx_magic.engine.model_cache import WarmModel

_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".npz", ".bin")
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(?:/|$)")


def engine_provenance(warm: WarmModel, prompt_ids: Union[mx.array, list[int]]) -> dict:
    """The model's record (computed once per warm model) and this prompt's hash."""
    record = getattr(warm, "provenance", None)
    if record is None:
        record = warm.provenance = _model_record(warm)
    ids = [int(token) for token in _flat(prompt_ids)]
    return {
        **record,
        "prompt_tokens": len(ids),
        "prompt_token_ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
    }


def _model_record(warm: WarmModel) -> dict:
    # ``path`` is a str where the getattr finds one.
    folder = Path(cast(str, warm.path)) if getattr(warm, "path", None) else None
    config = warm.config if isinstance(warm.config, dict) else getattr(warm.config, "__dict__", {})
    tokenizer = text_tokenizer(warm.tokenizer)
    template = getattr(tokenizer, "chat_template", None) or getattr(
        warm.tokenizer, "chat_template", None
    )
    return {
        "model": {
            "name": warm.name,
            "key": warm.key,
            "source": getattr(warm, "source", None),
            "path": str(folder) if folder else None,
            "revision": _revision(folder),
            "weights_sha256": _weights_hash(folder),
            "quantization": config.get("quantization") or config.get("quantization_config"),
            "model_type": config.get("model_type"),
        },
        "chat_template_sha256": (
            hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None
        ),
        "versions": {name: _version(name) for name in ("mlx", "mlx-lm", "mlx-vlm")},
    }


def _weights_hash(folder: Optional[Path]) -> Optional[str]:
    """sha256 of the weight files' names and sizes: changes when the weights do,
    without reading gigabytes."""
    if folder is None or not folder.is_dir():
        return None
    entries = sorted(
        (path.name, path.stat().st_size)
        for path in folder.iterdir()
        if path.suffix in _WEIGHT_SUFFIXES and path.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest() if entries else None


def _revision(folder: Optional[Path]) -> Optional[str]:
    """The Hub commit of a model read from the Hugging Face cache."""
    if folder is None:
        return None
    match = _SNAPSHOT.search(os.path.realpath(folder).replace(os.sep, "/") + "/")
    return match.group(1) if match else None


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _flat(ids: Any) -> list:
    """Token ids as one flat list, from an array or (nested) lists of them."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    while ids and isinstance(ids[0], list):
        ids = [token for row in ids for token in row]
    return ids
