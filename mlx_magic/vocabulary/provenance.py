"""The full provenance record of one answer: the request as sent and what came back.

The runtime's half (model, weights, template, library versions, the prompt
token ids' hash) arrives in the answer's stats; this adds the request (all
but the images themselves), the sampler and seed, the images' content
hashes, the caches used and the answer's tokens. Plain data, JSON-ready: it
goes into ``_mlx.provenance`` and the saved notebook's output metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from importlib import metadata
from typing import Optional, Protocol

from mlx_magic.vocabulary.values import GenerationRequest, GenerationStats

#: The version of the record's layout.
RECORD_VERSION = 1


class Answer(Protocol):
    """What the record reads of an answer (an ``MLXResult``, a layer above)."""

    @property
    def text(self) -> str: ...
    @property
    def finish_reason(self) -> str: ...
    @property
    def stats(self) -> GenerationStats: ...
    @property
    def tokens(self) -> list: ...


def provenance_record(result: Answer, request: GenerationRequest) -> dict:
    """The full record of one answer (the runtime's half comes in its stats)."""
    engine = dict(getattr(result.stats, "provenance", None) or {})
    token_ids = [token.id for token in result.tokens]
    versions = dict(engine.pop("versions", {}) or {})
    versions.update(mlx_magic=_version("mlx_magic"), python=platform.python_version())
    return {
        "version": RECORD_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **engine,
        "versions": versions,
        "request": request_record(request),
        "answer": {
            "finish_reason": result.finish_reason,
            "tokens": len(result.tokens),
            "token_ids": token_ids,
            "token_ids_sha256": token_ids_sha256(token_ids),
            "text": result.text,
            "text_sha256": hashlib.sha256(result.text.encode()).hexdigest(),
        },
        "images_sha256": list(request.image_keys),
        "caches": {
            "prefix_tokens_reused": result.stats.cached_prompt_tokens,
            "prefix_tokens_from_disk": getattr(result.stats, "disk_prompt_tokens", 0),
            "batch_size": getattr(result.stats, "batch_size", 1),
        },
    }


def token_ids_sha256(token_ids: list[int]) -> str:
    """The hash by which a replay knows it repeated an answer token for token."""
    return hashlib.sha256(json.dumps(list(token_ids)).encode()).hexdigest()


def record_to_save(record: dict) -> dict:
    """The record as a saved notebook keeps it: the answer's hashes, not its
    text and token ids again (the cell's outputs hold the text; sending it a
    second and third time with the footer would triple the answer's traffic)."""
    answer = {
        key: value
        for key, value in (record.get("answer") or {}).items()
        if key not in ("text", "token_ids")
    }
    return {**record, "answer": answer}


def request_record(request: GenerationRequest) -> dict:
    """The request as JSON-ready data: everything but the images themselves."""
    return {
        "model": dataclasses.asdict(request.model),
        "prompt": request.prompt,
        "system": request.system,
        "raw": request.raw,
        "history": [list(turn) for turn in request.history],
        "sampling": dataclasses.asdict(request.sampling),
        "schema_json": getattr(request, "schema_json", None),
        "images": len(request.images),
        "draft": dataclasses.asdict(request.draft) if request.draft is not None else None,
        "num_draft_tokens": request.num_draft_tokens,
        # What else shapes the tokens: the thinking switch and budget, and a
        # branch's point (the answer's tokens it continues from).
        "think": request.think,
        "think_budget": request.think_budget,
        "continue_ids": list(request.continue_ids),
        # --max-kv-size and --kv-bits change what the model attends to.
        "kv_cache": dataclasses.asdict(request.kv_cache),
        # --tools: the schemas offered and the calls and results so far (JSON already).
        "tools": (
            {"schemas": list(request.tools.schemas), "turns": list(request.tools.turns)}
            if request.tools is not None
            else None
        ),
    }


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
