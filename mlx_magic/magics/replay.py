"""``%mlx replay [NAME | NOTEBOOK.ipynb:CELL]``: make an answer again and compare.

The answer's provenance record (``_mlx.provenance``, an ``--out`` variable's,
or a saved notebook's cell output metadata) says everything the request was:
model, prompt, system prompt, history, sampler and seed. It is sent again,
streamed into this cell, and one line says whether the new answer repeats
the old one token for token, or where the two part.
"""

from __future__ import annotations

from mlx_magic.display.streaming import stream_job
from mlx_magic.display.views import view_for
from mlx_magic.errors import GenerationFailed, UserError
from mlx_magic.magics.provenance import comparison, request_from_record, saved_record


def command_replay(magics, names):
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
            raise UserError(f"%mlx replay {target}: {error}") from error
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
        raise UserError(f"%mlx replay {target}: {error}") from error
    job = session.runtime.generate(request)
    try:
        outcome = stream_job(job, view_for(session.shell), interval_s=session.stream_interval_s)
    except GenerationFailed as failed:
        raise UserError(f"%mlx replay: {failed.failure.message}") from failed
    again = outcome.result
    print(comparison(record.get("answer", {}), [token.id for token in again.tokens], again.text))
    outcome.shield.release()
    namespace["_mlx_replay"] = again
