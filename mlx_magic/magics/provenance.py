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
from typing import Any, Optional

from mlx_magic.runtime.provenance import RECORD_VERSION, provenance_record, request_record
from mlx_magic.runtime.values import GenerationRequest, ModelSpec, SamplingParams

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


def request_from_record(record: dict, images: tuple = ()) -> GenerationRequest:
    """The :class:`GenerationRequest` a record describes (its images given apart).

    Raises:
        ValueError: the record is not one, or names images that are not given.
    """
    try:
        sent = record["request"]
        spec = ModelSpec(**sent["model"])
        sampling = SamplingParams(**sent["sampling"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a provenance record of mlx_magic ({error})") from error
    if sent.get("images") and len(images) != sent["images"]:
        raise ValueError(
            f"the answer was about {sent['images']} image(s), which a saved notebook does not "
            "hold: replay it in the session that made it (%mlx replay on _mlx or --out)"
        )
    return GenerationRequest(
        model=spec,
        prompt=sent["prompt"],
        system=sent.get("system"),
        raw=bool(sent.get("raw")),
        history=tuple(tuple(turn) for turn in sent.get("history", ())),
        sampling=sampling,
        images=tuple(images),
        image_keys=tuple(record.get("images_sha256", ())),
        schema_json=sent.get("schema_json"),
    )


def comparison(original: list[int], again: list[int], original_text: str, again_text: str) -> str:
    """One line saying whether ``again`` repeats ``original`` token for token, or
    where the two answers part (with a little of each around that place)."""
    if original == again:
        return f"Reproduced token for token ({len(original)} tokens)."
    shared = 0
    for a, b in zip(original, again):
        if a != b:
            break
        shared += 1
    if shared == min(len(original), len(again)):
        longer = "the original" if len(original) > len(again) else "the replay"
        return (
            f"The same first {shared} tokens, then {longer} goes on "
            f"({len(original)} vs {len(again)} tokens)."
        )
    at = 0
    for old_char, new_char in zip(original_text, again_text):
        if old_char != new_char:
            break
        at += 1
    before = original_text[max(0, at - 30) : at]
    return (
        f"Parted at token {shared + 1} of {len(original)}: after …{before!r} the original "
        f"goes on {original_text[at : at + 30]!r}, the replay {again_text[at : at + 30]!r}."
    )


def saved_record(path: str, cell: int) -> dict:
    """The record in a saved notebook's cell (its outputs' ``mlx_magic`` metadata).

    Raises:
        ValueError: no such cell, or it holds no record.
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if not 0 <= cell < len(code):
        raise ValueError(f"{path} has {len(code)} code cells; there is no cell {cell}")
    for output in code[cell].get("outputs", []):
        record = output.get("metadata", {}).get("mlx_magic", {}).get("provenance")
        if record:
            return record
    raise ValueError(f"code cell {cell} of {path} holds no mlx_magic answer")


def record_of(value: Any) -> Optional[dict]:
    """The provenance of a result (or of a --map table's first row)."""
    record = getattr(value, "provenance", None)
    if record:
        return record
    return None
