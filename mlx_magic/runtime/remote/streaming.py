"""One attempt: a request to one URL, its answer's server-sent events, and how it ended.

Streaming
    The answer (``text/event-stream``) is split into events by httpx-sse's
    :class:`~httpx_sse.EventSource`; every ``data`` payload goes to
    :class:`~mlx_magic.runtime.remote.openai_wire.StreamReader`, which emits
    the text, and ``data: [DONE]`` ends the answer. A complete answer to a
    ``--tools`` request then announces its calls
    (:class:`~mlx_magic.vocabulary.tools.ToolCallsFound`) before it finishes. Comments (keep-alives)
    are skipped; the bytes they bring still count for the idle timeout.
    ``server`` and ``server_model`` in the stats
    (:class:`~mlx_magic.runtime.remote.openai_wire.RemoteGenerationStats`)
    say who answered.

Before the first text
    A connection that cannot be opened, a 5xx/429/408 answer, a closed
    connection or no text within ``first_token_timeout_s`` raise
    :class:`~mlx_magic.errors.Unreachable` (the job may go to another URL);
    an error the server reports, or another 4xx, raise
    :class:`~mlx_magic.errors.Refused`.

A stream cut in the middle
    When the connection breaks, the server stops sending for
    ``idle_timeout_s`` or reports an error after text has streamed, the
    answer is not retried (it would repeat itself): the job emits a
    :class:`~mlx_magic.vocabulary.values.Notice` ("The stream from URL was cut
    after N tokens: cause …") and ends with ``Finished(finish_reason="cut")``,
    so the partial text stays in the result. A broken connection sets
    ``attempt.connection_broke`` (the runtime then marks the URL unhealthy).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

import httpx
from httpx_sse import EventSource, SSEError

from mlx_magic.errors import Refused, Unreachable, one_line
from mlx_magic.runtime.remote import openai_wire as wire
from mlx_magic.runtime.remote.client import ServerClient, closed_by_server
from mlx_magic.runtime.remote.endpoints import Attempt
from mlx_magic.runtime.remote.watch import Watch
from mlx_magic.vocabulary.values import Finished, FinishReason, ModelReady, Notice

#: Text events read past ``-n`` before a stream is closed by the client.
_OVERFLOW_EVENTS = 8


def stream_answer(
    client: ServerClient,
    attempt: Attempt,
    key: Optional[str],
    model: Optional[str],
    began_streaming: Callable[[], None],
    watch_name: str,
) -> Finished:
    """Stream one answer from one URL into the attempt's job.

    Args:
        client: the runtime's HTTP client.
        attempt: the job and the URL.
        key: the API key, if one is used.
        model: the ``model`` to send (``None``: the server's own).
        began_streaming: called once, when the first text came (it sets
            ``attempt.streamed``).
        watch_name: the name of the request's watch thread.

    Raises:
        Unreachable: no text came (the job may go to another URL).
        Refused: the server refused the request or reported an error.
        Cancelled: the job was cancelled before the answer began.
    """
    job, endpoint = attempt.pending.job, attempt.endpoint
    request = job.request
    raw = request.raw and not request.images
    path = "/v1/completions" if raw else "/v1/chat/completions"
    body = wire.request_body(request, model, raw)
    started = time.perf_counter()
    watch = Watch(job, client.first_token_timeout_s, client.idle_timeout_s, watch_name)
    reader = wire.StreamReader(job, started, raw, client.secrets())
    broken: Optional[BaseException] = None
    not_events: Optional[str] = None
    reported = None
    try:
        with client.open(endpoint, "POST", path, key, body, watch) as response:
            watch.attach(response)
            job.emit(ModelReady(model=model or request.model.name, warm=True, load_s=0.0))
            try:
                for event in EventSource(response).iter_sse():
                    if not event.data:
                        continue
                    if event.data == "[DONE]":
                        reader.done = True
                        break
                    had_text = reader.began
                    reported = reader.take(event.data)
                    if reported or job.cancelled:
                        break
                    if reader.overflow > _OVERFLOW_EVENTS and reader.finish_reason is None:
                        # A server that ignores max_tokens is stopped here (-n is
                        # the user's); one that honours it sends its finish and
                        # usage at once, so those few events past the limit are
                        # still read.
                        reader.finish_reason = "length"
                        break
                    if reader.began and not had_text:
                        watch.began_streaming()
                        began_streaming()
            except SSEError:
                content_type = response.headers.get("content-type", "")
                not_events = f"answered {content_type!r}, not a stream of server-sent events"
            except (httpx.HTTPError, OSError) as error:
                if not closed_by_server(error):
                    broken = error
    finally:
        watch.stop()
        reader.flush()

    def finished(reason: FinishReason, **extra: Any) -> Finished:
        stats = dataclasses.replace(
            reader.stats(), server=endpoint.shown, server_model=reader.model or model, **extra
        )
        return Finished(finish_reason=reason, stats=stats)

    if job.cancelled or watch.reason == "cancelled":
        return finished("cancelled")
    if not_events is not None:
        raise Unreachable(f"{endpoint.shown} {not_events}")
    if reported:
        if not reader.began:
            raise Refused(f"{endpoint.shown} reported an error: {one_line(reported, 200)}")
        cause = f"the server reported an error: {one_line(reported, 200)}"
    elif reader.finish_reason is not None or reader.done:
        # Complete, even if the connection then broke before [DONE].
        found = reader.tool_calls()
        if found is not None:  # announced before Finished, as the engine does
            job.emit(found)
        return finished(wire.finish_reason(reader.finish_reason or "stop"))
    else:
        attempt.connection_broke = True
        cause = client.why(watch, broken, "the server closed the connection")
        if not reader.began:
            if broken is None and watch.reason is None:
                cause += " before the first token"
            raise Unreachable(f"{endpoint.shown}: {cause}")
    notice = (
        f"The stream from {endpoint.shown} was cut after {reader.chunks} tokens: "
        f"{cause}; the partial answer is kept (not retried)"
    )
    job.emit(Notice(client.redact(notice)))
    attempt.cut_cause = client.redact(f"{endpoint.shown}: {cause}")
    return finished("cut", cut_after_tokens=reader.chunks, cut_cause=attempt.cut_cause)
