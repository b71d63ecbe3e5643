"""How an answer was made, in full, and making it again (``%mlx replay``).

Every result carries a provenance record: the runtime's half (the model, its
revision, a hash of its weight files, its quantization, the chat template's
hash, the library versions, a hash of the exact prompt token ids: see
:mod:`mlx_magic.engine.provenance`) and the cell's half here (the request as
sent, the full sampler settings and the seed, the images' content hashes,
which caches were used, mlx_magic's and Python's versions). A sampled
answer without ``--seed`` gets a drawn seed, so every answer can be repeated.

``%mlx replay`` sends the recorded request again and compares the tokens.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Optional, get_args

from mlx_magic.errors import import_extra, one_line
from mlx_magic.vocabulary.caching import KV_BITS, KVCacheSettings
from mlx_magic.vocabulary.provenance import (
    RECORD_VERSION,
    provenance_record,
    request_record,
    token_ids_sha256,
)
from mlx_magic.vocabulary.sampling import is_whole, sampling_problem
from mlx_magic.vocabulary.tools import ToolUse
from mlx_magic.vocabulary.values import (
    GenerationRequest,
    ModelKind,
    ModelSource,
    ModelSpec,
    SamplingParams,
)

__all__ = [
    "RECORD_VERSION",
    "comparison",
    "provenance_record",
    "request_from_record",
    "request_record",
    "saved_record",
    "with_drawn_seed",
]


def with_drawn_seed(sampling: SamplingParams) -> SamplingParams:
    """``sampling`` with a seed: a sampled answer must be repeatable."""
    if sampling.temperature > 0 and sampling.seed is None:
        return dataclasses.replace(sampling, seed=secrets.randbits(31))
    return sampling


def request_from_record(record: Any, images: tuple = ()) -> GenerationRequest:
    """The :class:`GenerationRequest` a record describes (its images given apart).

    A record may come from a hand-edited or hostile notebook: every value is
    checked for its type and range before anything runs.

    Raises:
        ValueError: the record is not one, holds an impossible value (the
            message names it), or names images that are not given.
    """
    try:
        sent = record["request"]
        spec = _spec_of(sent["model"], "model")
        sampling = SamplingParams(**sent["sampling"])
        draft = _spec_of(sent["draft"], "draft") if sent.get("draft") else None
        history = tuple(_history_entry(turn) for turn in sent.get("history", ()))
        continue_ids = tuple(sent.get("continue_ids") or ())
        kv_cache = KVCacheSettings(**(sent.get("kv_cache") or {}))
        tools = _tools_of(sent.get("tools"))
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a provenance record of mlx_magic ({error})") from error
    problem = sampling_problem(sampling)
    if problem is not None:
        name, value, expected = problem
        raise ValueError(f"the record's {name} must be {expected}, not {value!r}")
    prompt, system = _text(sent.get("prompt"), "prompt"), sent.get("system")
    if system is not None:
        system = _text(system, "system prompt")
    checks = [
        (all(is_whole(i, 0) for i in continue_ids), "continue_ids must be token ids"),
        (is_whole(sent.get("num_draft_tokens", 3), 1, 65), "num_draft_tokens must be 1 to 64"),
        (sent.get("think") in (None, True, False), "think must be true, false or null"),
        (
            sent.get("think_budget") is None or is_whole(sent["think_budget"], 1),
            "think_budget must be 1 or more",
        ),
        (isinstance(sent.get("images", 0), int), "images must be a count"),
        (
            kv_cache.max_size is None or is_whole(kv_cache.max_size, 16),
            "kv_cache max_size must be 16 or more",
        ),
        (kv_cache.bits in (None, *KV_BITS), "kv_cache bits must be 4, 8 or null"),
        (kv_cache.bits is None or kv_cache.max_size is None, "kv_cache has bits and max_size"),
        (
            draft is None or not draft.same_model(spec),
            "its draft is the model itself",
        ),
        (draft is None or spec.kind == "text", "a draft goes with a text model"),
        (not images or spec.kind == "vision", "images go with a vision model"),
    ]
    for ok, why in checks:
        if not ok:
            raise ValueError(f"the record is not one mlx_magic could have made: {why}")
    if sent.get("images") and len(images) != sent["images"]:
        raise ValueError(
            f"the answer was about {sent['images']} image(s), which a saved notebook does not "
            "hold: replay it in the session that made it (%mlx replay on _mlx or --out)"
        )
    schema_json = sent.get("schema_json")
    return GenerationRequest(
        model=spec,
        prompt=prompt,
        system=system,
        raw=bool(sent.get("raw")),
        history=history,
        sampling=sampling,
        images=tuple(images),
        image_keys=tuple(str(key) for key in record.get("images_sha256", ())),
        schema_json=_text(schema_json, "schema") if schema_json is not None else None,
        draft=draft,
        num_draft_tokens=sent.get("num_draft_tokens", 3),
        think=sent.get("think"),
        think_budget=sent.get("think_budget"),
        continue_ids=continue_ids,
        kv_cache=kv_cache,
        tools=tools,
    )


def _tools_of(sent: Any) -> Optional[ToolUse]:
    """A record's ``--tools`` part: JSON objects, checked to be such."""
    if sent is None:
        return None
    schemas, turns = sent["schemas"], sent["turns"]
    if not all(isinstance(item, dict) for item in [*schemas, *turns]):
        raise ValueError("the record's tools must be JSON objects")
    return ToolUse(tuple(schemas), tuple(turns))


def _history_entry(turn: Any) -> tuple:
    """A record's earlier turn: its question and answer, and the tool turns between."""
    user, assistant, *between = turn
    entry: tuple = (_text(user, "history"), _text(assistant, "history"))
    if not between:
        return entry
    if len(between) > 1 or not all(isinstance(message, dict) for message in between[0]):
        raise ValueError("the record's history holds a turn that is not one")
    return (*entry, tuple(between[0]))


def _spec_of(fields: Any, what: str) -> ModelSpec:
    # Never the record's word on running a folder's code: the session's setting decides.
    spec = dataclasses.replace(ModelSpec(**fields), trust_remote_code=False)
    for name in ("name", "key", "path"):
        _text(getattr(spec, name), f"{what} {name}")
    if spec.kind not in get_args(ModelKind) or spec.source not in get_args(ModelSource):
        raise ValueError(f"the record's {what} is of no kind mlx_magic knows ({spec.kind!r})")
    if spec.gguf is not None:
        _text(spec.gguf, f"{what} gguf")
    return spec


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"the record's {what} is not text")
    return value


def comparison(original: dict, again: list[int], again_text: str) -> str:
    """One line saying whether ``again`` repeats the ``original`` answer (a
    record's ``answer``) token for token, or where the two answers part (with
    a little of each around that place). A saved record has the token ids'
    hash, not the ids: it is compared by the hash, and parted by the text."""
    original_text = original.get("text", "")
    if "token_ids" not in original:
        count = original.get("tokens", 0)
        if original.get("token_ids_sha256") == token_ids_sha256(again):
            return f"Reproduced token for token ({count} tokens)."
        return _parted_text(original_text, again_text, f"{count} vs {len(again)} tokens")
    ids = list(original["token_ids"])
    if ids == again:
        return f"Reproduced token for token ({len(ids)} tokens)."
    shared = 0
    for a, b in zip(ids, again):
        if a != b:
            break
        shared += 1
    if shared == min(len(ids), len(again)):
        longer = "the original" if len(ids) > len(again) else "the replay"
        return (
            f"The same first {shared} tokens, then {longer} goes on "
            f"({len(ids)} vs {len(again)} tokens)."
        )
    return _parted_text(original_text, again_text, f"token {shared + 1} of {len(ids)}")


def _parted_text(original_text: str, again_text: str, where: str) -> str:
    at = 0
    for old_char, new_char in zip(original_text, again_text):
        if old_char != new_char:
            break
        at += 1
    before = original_text[max(0, at - 30) : at]
    return (
        f"Parted at {where}: after …{before!r} the original "
        f"goes on {original_text[at : at + 30]!r}, the replay {again_text[at : at + 30]!r}."
    )


def saved_record(path: str, cell: int) -> dict:
    """The record in a saved notebook's cell (its outputs' ``mlx_magic`` metadata).

    Raises:
        ValueError: no such cell, or it holds no record.
    """
    nbformat = import_extra("nbformat", "notebook", "%mlx replay of a saved notebook")
    try:
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        if not 0 <= cell < len(code):
            raise ValueError(f"{path} has {len(code)} code cells; there is no cell {cell}")
        outputs = code[cell].get("outputs", [])
        for output in outputs:
            record = output.get("metadata", {}).get("mlx_magic", {}).get("provenance")
            if record:
                answer = dict(record.get("answer") or {})
                # The saved record keeps the answer's hashes; its text is the cell's.
                answer.setdefault("text", _answer_text(outputs))
                return {**record, "answer": answer}
    except (ValueError, OSError):
        raise
    except Exception as error:  # a hand-edited or hostile file: any shape at all
        raise ValueError(
            f"{path} is not a notebook mlx_magic can read ({type(error).__name__}: "
            f"{one_line(error, 120)})"
        ) from error
    raise ValueError(f"code cell {cell} of {path} holds no mlx_magic answer")


def _answer_text(outputs: list) -> str:
    """The answer as a saved cell shows it: its streamed text, or its rendered
    blocks' plain copies (close enough to say where a replay parts from it)."""
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            parts.append(output.get("text", ""))
        elif "mlx_magic" not in output.get("metadata", {}):
            data = output.get("data", {})
            if "text/markdown" in data:
                parts.append(data.get("text/plain") or data["text/markdown"])
    return "\n\n".join(part.strip("\n") for part in parts if part.strip())


def record_of(value: Any) -> Optional[dict]:
    """The provenance of a result (or of a --map table's first row)."""
    record = getattr(value, "provenance", None)
    if record:
        return record
    return None
