"""``%mlx replay [NAME | NOTEBOOK.ipynb:CELL]``: make an answer again and compare.

The answer's provenance record (``_mlx.provenance``, an ``--out`` variable's,
or a saved notebook's cell output metadata) says everything the request was:
model, prompt, system prompt, history, sampler and seed. It is sent again,
streamed into this cell, and one line says whether the new answer repeats
the old one token for token, or where the two part.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mlx_magic.display.streaming import stream_job
from mlx_magic.display.views import view_for
from mlx_magic.errors import GenerationFailed, GenerationInterrupted, UserError, one_line
from mlx_magic.magics.provenance import comparison, request_from_record, saved_record
from mlx_magic.vocabulary.values import GenerationRequest

if TYPE_CHECKING:
    from mlx_magic.magics.session import MagicsHost, Session


def command_replay(magics: MagicsHost, names: list[str]) -> None:
    session = magics.session
    namespace = session.shell.user_ns
    if len(names) > 1:
        raise UserError("Usage: %mlx replay [NAME | notebook.ipynb:CELL]")
    target = names[0] if names else "_mlx"
    images: tuple = ()
    if ".ipynb:" in target:
        path, _, cell = target.rpartition(":")
        try:
            record = saved_record(path, int(cell))
        except (ValueError, OSError) as error:
            raise UserError(f"%mlx replay {target}: {one_line(error, 300)}") from error
    else:
        value = namespace.get(target)
        kept = getattr(value, "provenance", None)
        if not kept:
            raise UserError(
                f"%mlx replay: {target} holds no answer with a provenance record; run a "
                "%%mlx cell first (or name its --out variable, or notebook.ipynb:CELL)"
            )
        record = kept
        request = getattr(value, "request", None)
        images = tuple(getattr(request, "images", ()) or ())
    try:
        request = request_from_record(record, images)
    except ValueError as error:
        raise UserError(f"%mlx replay {target}: {one_line(error, 300)}") from error
    request = _as_this_session_runs_it(session, request, target)
    (job,) = session.start(request)
    try:
        outcome = stream_job(job, view_for(session.shell), interval_s=session.stream_interval_s)
    except GenerationFailed as failed:
        raise UserError(f"%mlx replay: {failed.failure.message}") from failed
    again = outcome.result
    try:
        namespace["_mlx_replay"] = again
        if outcome.interrupted:
            # A stopped replay is no answer to compare with the original.
            raise GenerationInterrupted(
                f"replay stopped after {again.stats.generation_tokens} tokens; nothing was "
                "compared (the partial answer is in _mlx_replay)"
            )
        print(
            comparison(record.get("answer", {}), [token.id for token in again.tokens], again.text)
        )
    finally:
        outcome.shield.release()


def _as_this_session_runs_it(
    session: Session, request: GenerationRequest, target: str
) -> GenerationRequest:
    """The record's request with this session's say on what its word cannot
    decide: whether a folder's code may run, and what kind of model the
    recorded one is (a record can say a text model is a vision model)."""
    trust = bool(session.settings.trust_remote_code)
    model = dataclasses.replace(request.model, trust_remote_code=trust)
    draft = request.draft and dataclasses.replace(request.draft, trust_remote_code=trust)
    if session.settings.runtime != "remote":
        found = session.resolve(model.key)
        if found.kind != model.kind:
            raise UserError(
                f"%mlx replay {target}: the record says {model.name} is a {model.kind} model, "
                f"but it is a {found.kind} model: the record was edited, or the folder changed"
            )
    return dataclasses.replace(request, model=model, draft=draft)
