"""A runtime that sends generations to OpenAI-compatible servers.

:class:`RemoteRuntime` serves the :class:`~mlx_magic.runtime.thread.Runtime`
interface with one or more HTTP servers that speak the OpenAI chat
completions API: ``mlx_lm.server``, ``mlx_vlm.server``, vLLM, the llama.cpp
server. Only the standard library is used (``http.client``); MLX is never
imported.

Requests
    ``POST {url}/v1/chat/completions`` with ``"stream": true`` and
    ``"stream_options": {"include_usage": true}``: the system prompt, the
    conversation's turns and the cell as messages; images as content parts
    ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}``
    after the text of the turn that sent them. A ``--raw`` request goes to ``POST {url}/v1/completions``
    with the text as ``prompt`` (system prompt and turns before it,
    separated by blank lines, as thread mode does without a template).
    Sampling: ``max_tokens``, ``temperature``, ``top_p`` and ``seed`` always;
    ``top_k``, ``min_p`` and ``repetition_penalty`` (understood by mlx-lm,
    vLLM and llama.cpp) only when set. (The bodies and the reading of the
    answers are in :mod:`mlx_magic.runtime.remote.openai_wire`.)

The model name sent
    The spec's ``key`` (a Hub id, a folder path, or the name itself for a
    spec made for a server), except for the embedded default model, which a
    server does not have: then the server's own model is used — the one
    model ``GET /v1/models`` lists, or, when it lists none or several (or
    cannot say), no ``model`` field at all, which these servers answer with
    the model they were started with.

Streaming
    Server-sent events are read line by line; every ``data:`` payload with
    text becomes a :class:`~mlx_magic.runtime.values.TokenChunk` (without token
    ids: the API does not give them), ``data: [DONE]`` ends the answer.
    Stats: ``prompt_tokens``, ``generation_tokens`` and
    ``cached_prompt_tokens`` from the ``usage`` object (or llama.cpp's
    ``timings``; failing both, the number of chunks); ``ttft_s``, tokens per
    second and prompt tokens per second are measured here (they include the
    network). ``remote_url`` and ``server_model`` say who answered.

Several URLs: the least busy healthy one
    A dispatcher thread hands each queued job to the healthy URL with the
    fewest requests in flight (ties: round robin), at most ``max_in_flight``
    at a time per URL (default 1: a Mac answers one request at a time
    best; raise it for servers that batch). Jobs wait in the order they were
    submitted; one URL's jobs never wait for another's. Each job's request
    runs on a thread of its own. :meth:`RemoteRuntime.generate_together`
    queues its jobs at once, so they spread over the URLs and advance
    together; with fewer free URLs than jobs, the rest wait their turn.

Failures before the first token: another URL
    A URL that cannot be reached, answers 5xx/429/408, closes the connection
    or sends no text within ``first_token_timeout_s`` is marked unhealthy
    and the job goes back to the head of the queue for another healthy URL
    that it has not tried (with a one-line :class:`Notice`). Other 4xx
    answers and errors the server reports are not retried (every server
    would refuse the same request). A job that has tried every URL fails
    with one line naming each URL (without credentials) and its cause.

Health
    An unhealthy URL gets no requests. It is probed in the background with
    ``GET /v1/models`` after ``probe_after_s`` seconds, then after twice as
    long for each failure in a row, at most ``max_probe_after_s``; an answer
    (any HTTP status) makes it healthy again, a successful generation resets
    its backoff. When every URL a queued job could use is unhealthy they are
    probed at once, in parallel, and so are, before a retry, the URLs that
    have not answered anything for ``max_probe_after_s``: with every server
    down a job fails within about one ``connect_timeout_s`` (two on the
    first request, whose first URL is tried before the others are probed;
    a refused connection takes milliseconds).

Timeouts
    ``connect_timeout_s`` to open a connection; ``first_token_timeout_s``
    from sending the request to the first text (a server may be loading a
    model or reading a long prompt: keep-alive comments do not stop this
    clock); ``idle_timeout_s`` between any two lines of an answer that has
    begun. A watch thread per request enforces them (and cancellation) by
    shutting the socket down.

A stream cut in the middle
    When the connection breaks, the server stops sending for
    ``idle_timeout_s`` or reports an error after text has streamed, the
    answer is not retried (it would repeat itself): the job emits a
    :class:`Notice` ("The stream from URL was cut after N tokens: cause …")
    and ends with ``Finished(finish_reason="cut")``, so the partial text
    stays in the result. A broken connection also marks the URL unhealthy.

API keys
    Read at each request from the environment variable *named* by
    ``api_key_env`` (never given as a value, never stored on the object) and
    sent as ``Authorization: Bearer …``. The key — and any password in a URL
    — is replaced by ``***`` in every message, notice, exception, repr and
    status this module makes.

Errors (connection refused, HTTP 4xx/5xx, timeouts) end the job with
``Failed(user_error=True)``: one line naming the URL (without credentials)
and the cause. Cancelling a job closes its HTTP connection within ~20 ms.
:meth:`RemoteRuntime.endpoint_stats` tells, per URL, its health, its load
and how its requests ended.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Optional, Sequence

from mlx_magic.errors import Cancelled, Refused, RemoteServerError, Unreachable, one_line
from mlx_magic.runtime.remote import openai_wire as wire
from mlx_magic.runtime.thread import Runtime
from mlx_magic.runtime.values import (
    Failed,
    Finished,
    GenerationRequest,
    Job,
    ModelInfo,
    ModelReady,
    ModelSpec,
    Notice,
    RuntimeStatus,
)

THREAD_NAME = "mlx_magic-remote"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# How often the dispatcher looks at queued jobs' cancellation, and how often
# a request's watch looks at its deadlines and its job.
_POLL_S = 0.1
_WATCH_S = 0.02
_STOPPED = "the mlx_magic runtime was stopped"


@dataclass
class _Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str
    shown: str  # the URL as shown to the user: no credentials, no query
    index: int = 0
    server_models: Optional[list] = None
    # Health: an unhealthy URL gets no requests until a probe answers.
    healthy: bool = True
    failures_in_a_row: int = 0
    next_probe_at: float = 0.0
    probing: bool = False
    last_error: Optional[str] = None
    last_answer_at: Optional[float] = None  # monotonic time of its last HTTP answer
    # Load and outcomes.
    in_flight: int = 0
    streaming: int = 0
    requests: int = 0
    completed: int = 0
    failed: int = 0
    cut: int = 0

    def __repr__(self) -> str:
        return f"<endpoint {self.shown}>"


class _Pending:
    """A job waiting for a URL, with the URLs that already failed it."""

    def __init__(self, job: Job):
        self.job = job
        self.failures: dict[int, str] = {}  # endpoint index -> one line, in order
        self.awaiting: set[int] = set()  # probes this job waits for


class _Attempt:
    """One request of a job to one URL."""

    def __init__(self, pending: _Pending, endpoint: _Endpoint):
        self.pending = pending
        self.endpoint = endpoint
        self.streamed = False
        self.connection_broke = False  # a cut stream whose connection failed


def parse_url(url: str) -> tuple[_Endpoint, Optional[str]]:
    """An endpoint from a server URL, and the ``user:password`` in it if any.

    ``http://host:port``, ``http://host:port/v1`` and ``host:port`` are
    accepted; the API paths are added to what is left after ``/v1``.

    Raises:
        ValueError: not an http(s) URL (the message shows no credentials).
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise ValueError(f"{shown} is not an http(s) server URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{parts.scheme}://{parts.hostname} has a bad port") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    host = parts.hostname
    host_shown = f"[{host}]" if ":" in host else host
    shown = f"{parts.scheme}://{host_shown}:{port}{path}"
    credentials = None
    if parts.username is not None:
        credentials = (
            urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(parts.password or "")
        )
    return _Endpoint(parts.scheme, host, port, path, shown), credentials


class RemoteRuntime(Runtime):
    """Generations on OpenAI-compatible servers (see the module docstring).

    Args:
        urls: one or more server URLs.
        api_key_env: the NAME of the environment variable holding the API
            key, or ``None`` for servers without one.
        connect_timeout_s: to open a connection (and, with every server
            down, about how long a job takes to fail).
        first_token_timeout_s: from sending a request to its first text (a
            server may load a model or read a long prompt first).
        idle_timeout_s: the longest silence once an answer has begun.
        max_in_flight: requests at a time per URL.
        probe_after_s: how long after a failure a URL is probed again; the
            wait doubles with each failure in a row, up to
            ``max_probe_after_s``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        api_key_env: Optional[str] = None,
        connect_timeout_s: float = 5.0,
        first_token_timeout_s: float = 300.0,
        idle_timeout_s: float = 60.0,
        max_in_flight: int = 1,
        probe_after_s: float = 1.0,
        max_probe_after_s: float = 30.0,
    ):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("RemoteRuntime needs at least one server URL")
        if api_key_env is not None and not _ENV_NAME.match(api_key_env):
            # Never echo it: it may be the key itself, pasted by mistake.
            raise ValueError(
                "api_key_env takes the NAME of an environment variable (letters, digits, _), "
                "not the key itself"
            )
        for name, value in [
            ("connect_timeout_s", connect_timeout_s),
            ("first_token_timeout_s", first_token_timeout_s),
            ("idle_timeout_s", idle_timeout_s),
            ("max_in_flight", max_in_flight),
            ("probe_after_s", probe_after_s),
            ("max_probe_after_s", max_probe_after_s),
        ]:
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        self.api_key_env = api_key_env
        self.connect_timeout_s = float(connect_timeout_s)
        self.first_token_timeout_s = float(first_token_timeout_s)
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_in_flight = int(max_in_flight)
        self.probe_after_s = float(probe_after_s)
        self.max_probe_after_s = max(float(max_probe_after_s), self.probe_after_s)
        self._endpoints: list[_Endpoint] = []
        self._credentials: dict[int, str] = {}
        for url in urls:
            endpoint, credentials = parse_url(url)
            endpoint.index = len(self._endpoints)
            if credentials is not None:
                self._credentials[endpoint.index] = credentials
            self._endpoints.append(endpoint)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending: "collections.deque[_Pending]" = collections.deque()
        self._running: dict[Job, _Endpoint] = {}
        self._workers: set[threading.Thread] = set()
        self._next_turn = 0  # round robin among equally busy URLs
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._generations = 0
        self._budget = 0

    def __repr__(self) -> str:
        key = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return f"<RemoteRuntime {self.urls}{key}>"

    @property
    def urls(self) -> list[str]:
        """The servers, as shown (without credentials)."""
        return [endpoint.shown for endpoint in self._endpoints]

    @property
    def _list_timeout_s(self) -> float:
        # GET /v1/models answers at once, even from a busy server.
        return max(self.connect_timeout_s, 10.0)

    # ---- the Runtime interface ---------------------------------------------------

    def generate(self, request: GenerationRequest) -> Job:
        return self._submit([request])[0]

    def generate_together(self, requests: list[GenerationRequest]) -> list[Job]:
        """Queue the jobs at once: each goes to the least busy URL, so they
        spread over the URLs and stream side by side."""
        return self._submit(list(requests))

    def load(self, spec: ModelSpec) -> ModelInfo:
        """Check that a server answers and name the model it will use.

        Raises:
            RemoteServerError: no server answered ``GET /v1/models``.
        """
        started = time.perf_counter()
        failures = []
        for endpoint in self._in_order():
            served = self._list_models(endpoint, failures)
            if served is None:
                continue
            name = self._model_name(spec, served) or "the server's default model"
            return ModelInfo(
                name=name,
                key=spec.key,
                kind=spec.kind,
                memory_bytes=0,
                load_s=time.perf_counter() - started,
            )
        raise RemoteServerError(self._redact(_all_failed(failures)))

    def unload(self, key: Optional[str] = None) -> list[str]:
        return []  # the servers manage their own memory

    def models(self) -> list[ModelInfo]:
        """The models the first answering server lists (``GET /v1/models``)."""
        for endpoint in self._in_order():
            served = self._list_models(endpoint, [])
            if served is None:
                continue
            return [
                ModelInfo(
                    name=name,
                    key=f"{endpoint.shown} {name}",
                    kind="remote",
                    memory_bytes=0,
                    load_s=0.0,
                )
                for name in served
            ]
        return []

    def status(self) -> RuntimeStatus:
        with self._lock:
            shown = ", ".join(
                e.shown + ("" if e.healthy else " (failing)") for e in self._endpoints
            )
            running = list(self._running)
            queued = len(self._pending)
        return RuntimeStatus(
            kind=self._redact(f"remote OpenAI-compatible server: {shown}"),
            running=self._thread is not None and self._thread.is_alive(),
            busy=bool(running),
            queued=queued,
            current=running[0].request.model.name if running else None,
            lock_held=False,
            memory_budget_bytes=self._budget,
            generations=self._generations,
        )

    def endpoint_stats(self) -> list[dict]:
        """Per URL, in the given order: ``url`` (without credentials),
        ``healthy``, ``in_flight`` (of which ``streaming`` have sent text),
        ``requests`` sent, and how they ended: ``completed``, ``failed``
        before the first token (the job went on to another URL or failed),
        ``cut`` mid-stream; ``last_error`` and ``next_probe_in_s`` while
        unhealthy."""
        now = time.monotonic()
        with self._lock:
            rows = [
                dict(
                    url=e.shown,
                    healthy=e.healthy,
                    in_flight=e.in_flight,
                    streaming=e.streaming,
                    requests=e.requests,
                    completed=e.completed,
                    failed=e.failed,
                    cut=e.cut,
                    last_error=e.last_error,
                    next_probe_in_s=None
                    if e.healthy or e.probing
                    else max(0.0, e.next_probe_at - now),
                )
                for e in self._endpoints
            ]
        for row in rows:
            if row["last_error"]:
                row["last_error"] = self._redact(row["last_error"])
        return rows

    def clear_caches(self) -> int:
        return 0

    def set_memory_budget(self, budget_bytes: int) -> None:
        self._budget = int(budget_bytes)  # shown in status; servers keep their own

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel the running jobs, fail the queued ones, and wait for the threads."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        with self._changed:
            self._stopping = True
            pending = list(self._pending)
            self._pending.clear()
            running = list(self._running)
            workers = list(self._workers)
            self._changed.notify_all()
        for job in running:
            job.cancel()
        for entry in pending:
            entry.job.emit(Failed(_STOPPED, user_error=True))
        thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            self._stopping = False
        self._thread = None

    # ---- the dispatcher ------------------------------------------------------------------

    def _submit(self, requests: list[GenerationRequest]) -> list[Job]:
        jobs = [Job(request) for request in requests]
        for job in jobs:
            if job.request.top_logprobs:
                job.emit(
                    Notice(
                        "Token probabilities (--probs) do not come back from a remote "
                        "server: the answer streams without them"
                    )
                )
        self._ensure_started()
        with self._changed:
            self._pending.extend(_Pending(job) for job in jobs)
            self._changed.notify_all()
        return jobs

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._dispatch, name=THREAD_NAME, daemon=True
                )
                self._thread.start()

    def _dispatch(self) -> None:
        with self._changed:
            while not self._stopping:
                self._schedule()
                self._changed.wait(self._next_wake())

    def _next_wake(self) -> Optional[float]:
        """Seconds until the dispatcher must look again (lock held)."""
        waits = [_POLL_S] if self._pending else []
        now = time.monotonic()
        waits += [
            max(0.0, e.next_probe_at - now) + 0.001
            for e in self._endpoints
            if not e.healthy and not e.probing
        ]
        return min(waits) if waits else None

    def _schedule(self) -> None:
        """Start the probes that are due and every queued job that has a
        free URL, in the order they were submitted (lock held)."""
        now = time.monotonic()
        for endpoint in self._endpoints:
            if not endpoint.healthy and not endpoint.probing and endpoint.next_probe_at <= now:
                self._start_probe(endpoint)
        for entry in list(self._pending):
            job = entry.job
            if job.cancelled:
                self._pending.remove(entry)
                job.emit(Finished("cancelled", {"generation_tokens": 0}))
                continue
            untried = [e for e in self._endpoints if e.index not in entry.failures]
            if not untried:
                self._pending.remove(entry)
                message = self._redact(_all_failed(list(entry.failures.values())))
                job.emit(Failed(message, user_error=True, error=RemoteServerError(message)))
                continue
            healthy = [e for e in untried if e.healthy]
            if entry.failures:
                # A retry: the URLs not heard from lately are asked all at
                # once first, so that with every server down the job does
                # not wait for each one's connect timeout in turn.
                stale = [
                    e
                    for e in healthy
                    if e.last_answer_at is None or now - e.last_answer_at > self.max_probe_after_s
                ]
                for endpoint in stale:
                    entry.awaiting.add(endpoint.index)
                    if not endpoint.probing:
                        self._start_probe(endpoint)
                healthy = [e for e in healthy if e not in stale]
                if stale and not healthy:
                    continue
            free = [e for e in healthy if e.in_flight < self.max_in_flight]
            if free:
                self._pending.remove(entry)
                self._start_attempt(_Attempt(entry, self._least_busy(free)))
            elif not healthy:
                # Every URL it could use is failing: ask them all now.
                for endpoint in untried:
                    entry.awaiting.add(endpoint.index)
                    if not endpoint.probing:
                        self._start_probe(endpoint)

    def _least_busy(self, free: list[_Endpoint]) -> _Endpoint:
        fewest = min(e.in_flight for e in free)
        count = len(self._endpoints)
        chosen = min(
            (e for e in free if e.in_flight == fewest),
            key=lambda e: (e.index - self._next_turn) % count,
        )
        self._next_turn = (chosen.index + 1) % count
        return chosen

    def _start_attempt(self, attempt: _Attempt) -> None:
        endpoint = attempt.endpoint
        endpoint.in_flight += 1
        endpoint.requests += 1
        self._running[attempt.pending.job] = endpoint
        worker = threading.Thread(
            target=self._run_attempt, args=(attempt,), name=f"{THREAD_NAME}-request", daemon=True
        )
        self._workers.add(worker)
        worker.start()

    def _start_probe(self, endpoint: _Endpoint) -> None:
        endpoint.probing = True
        threading.Thread(
            target=self._probe, args=(endpoint,), name=f"{THREAD_NAME}-probe", daemon=True
        ).start()

    def _probe(self, endpoint: _Endpoint) -> None:
        error = None
        try:
            self._server_models(endpoint, refresh=True)
        except Unreachable as failure:
            error = self._redact(str(failure))
        except Refused:
            # It answered (or cannot be asked: no API key): count it as up;
            # what it refuses, a request will say.
            endpoint.last_answer_at = time.monotonic()
        except Exception as failure:  # never leave the URL marked as probing
            error = self._redact(f"{endpoint.shown}: {type(failure).__name__}: {failure}")
        with self._changed:
            endpoint.probing = False
            if error is None:
                endpoint.healthy = True
                endpoint.last_error = None
            else:
                self._mark_unhealthy(endpoint, error)
            for entry in self._pending:
                if endpoint.index in entry.awaiting:
                    entry.awaiting.discard(endpoint.index)
                    if error is not None:
                        entry.failures[endpoint.index] = error
            self._changed.notify_all()

    def _mark_unhealthy(self, endpoint: _Endpoint, error: str) -> None:
        """(lock held) No requests until a probe after the backoff answers."""
        endpoint.healthy = False
        endpoint.failures_in_a_row += 1
        endpoint.last_error = error
        backoff = self.probe_after_s * 2 ** min(endpoint.failures_in_a_row - 1, 16)
        endpoint.next_probe_at = time.monotonic() + min(backoff, self.max_probe_after_s)

    def _run_attempt(self, attempt: _Attempt) -> None:
        """One request on its own thread; then the job ends or is queued again."""
        job, endpoint = attempt.pending.job, attempt.endpoint
        outcome = None
        failure = None
        try:
            key, problem = self._api_key()
            if problem:
                raise Refused(problem)
            outcome = self._stream(attempt, key)
        except Cancelled:
            outcome = Finished("cancelled", {"generation_tokens": 0})
        except Unreachable as error:
            failure = self._redact(str(error))
            if job.cancelled:
                outcome = Finished("cancelled", {"generation_tokens": 0})
        except Refused as error:
            message = self._redact(str(error))
            outcome = Failed(message, user_error=True, error=RemoteServerError(message))
        except Exception as error:  # a bug: never leave a caller waiting
            message = self._redact(f"{type(error).__name__}: {error}")
            outcome = Failed(message, user_error=False, error=RuntimeError(message))
        with self._changed:
            endpoint.in_flight -= 1
            if attempt.streamed:
                endpoint.streaming -= 1
            self._running.pop(job, None)
            self._workers.discard(threading.current_thread())
            if failure is not None:
                endpoint.failed += 1
                self._mark_unhealthy(endpoint, failure)
                if outcome is None:
                    attempt.pending.failures[endpoint.index] = failure
                    if self._stopping:
                        outcome = Failed(_STOPPED, user_error=True)
                    else:
                        if len(attempt.pending.failures) < len(self._endpoints):
                            job.emit(Notice(f"{failure}; trying another server"))
                        self._pending.appendleft(attempt.pending)
            elif isinstance(outcome, Finished) and outcome.finish_reason == "cut":
                endpoint.cut += 1
                if attempt.connection_broke:
                    self._mark_unhealthy(endpoint, outcome.stats.get("cut_cause", "cut"))
            elif isinstance(outcome, Finished) and outcome.finish_reason != "cancelled":
                endpoint.completed += 1
                endpoint.failures_in_a_row = 0
                endpoint.last_answer_at = time.monotonic()
                self._generations += 1
            self._changed.notify_all()
        if outcome is not None:
            job.emit(outcome)

    # ---- one request ------------------------------------------------------------------------

    def _stream(self, attempt: _Attempt, key: Optional[str]) -> Finished:
        """Stream one answer from one URL.

        Raises:
            Unreachable: no text came (the job may go to another URL).
            Refused: the server refused the request or reported an error.
            Cancelled: the job was cancelled before the answer began.
        """
        job, endpoint = attempt.pending.job, attempt.endpoint
        request = job.request
        try:
            served = self._server_models(endpoint) if request.model.source == "embedded" else None
        except Refused:
            served = []  # the server cannot list its models: let it pick
        model = self._model_name(request.model, served)
        raw = request.raw and not request.images
        path = "/v1/completions" if raw else "/v1/chat/completions"
        body = wire.request_body(request, model, raw)
        started = time.perf_counter()
        watch = _Watch(job, self.first_token_timeout_s, self.idle_timeout_s)
        connection, response = self._open(endpoint, "POST", path, key, body, watch)
        reader = wire.StreamReader(job, started, raw)
        job.emit(ModelReady(model=model or request.model.name, warm=True, load_s=0.0))
        broken: Optional[BaseException] = None
        reported = None
        try:
            for data in wire.sse_data(response, watch.heard):
                if data == "[DONE]":
                    reader.done = True
                    break
                had_text = reader.chunks > 0
                reported = reader.take(data)
                if reported:
                    break
                if reader.chunks and not had_text:
                    watch.streaming = True
                    with self._lock:
                        attempt.streamed = True
                        endpoint.streaming += 1
        except (OSError, http.client.HTTPException) as error:
            broken = error
        finally:
            watch.stop()
            connection.close()

        def finished(reason: str, **extra) -> Finished:
            stats = reader.stats()
            stats.update(remote_url=endpoint.shown, server_model=reader.model or model, **extra)
            return Finished(finish_reason=reason, stats=stats)

        if job.cancelled or watch.reason == "cancelled":
            return finished("cancelled")
        if reported:
            if not reader.chunks:
                raise Refused(f"{endpoint.shown} reported an error: {one_line(reported, 200)}")
            cause = f"the server reported an error: {one_line(reported, 200)}"
        elif reader.finish_reason is not None or reader.done:
            # Complete, even if the connection then broke before [DONE].
            return finished(wire.finish_reason(reader.finish_reason or "stop"))
        else:
            attempt.connection_broke = True
            cause = self._why(watch, broken, "the server closed the connection")
            if not reader.chunks:
                if broken is None:
                    cause += " before the first token"
                raise Unreachable(f"{endpoint.shown}: {cause}")
        notice = (
            f"The stream from {endpoint.shown} was cut after {reader.chunks} tokens: "
            f"{cause}; the partial answer is kept (not retried)"
        )
        job.emit(Notice(self._redact(notice)))
        return finished(
            "cut",
            cut_after_tokens=reader.chunks,
            cut_cause=self._redact(f"{endpoint.shown}: {cause}"),
        )

    def _why(
        self, watch: Optional["_Watch"], error: Optional[BaseException], otherwise: str
    ) -> str:
        """Why a request that had connected ended early."""
        if watch is not None and watch.reason == "first token":
            return f"no first token within {self.first_token_timeout_s:g} s"
        if watch is not None and watch.reason == "idle":
            return f"nothing came for {self.idle_timeout_s:g} s"
        if error is None:
            return otherwise
        timeout = (
            self._list_timeout_s
            if watch is None
            else max(self.first_token_timeout_s, self.idle_timeout_s)
        )
        return _cause(error, timeout)

    def _open(
        self,
        endpoint: _Endpoint,
        method: str,
        path: str,
        key: Optional[str],
        body: Optional[dict] = None,
        watch: Optional["_Watch"] = None,
    ):
        """Send a request; the connection and its 200 response.

        With a ``watch``, from the moment the connection is open the watch
        shuts its socket down when the job is cancelled or a deadline
        passes; the caller stops the watch when done. Without one (model
        lists), the socket times out after ``_list_timeout_s``.

        Raises:
            Unreachable: no connection, a timeout, or 5xx/429/408.
            Refused: another 4xx answer.
            Cancelled: the watch's job was cancelled before the answer began.
        """
        if endpoint.scheme == "https":
            connection = http.client.HTTPSConnection(
                endpoint.host,
                endpoint.port,
                timeout=self.connect_timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(
                endpoint.host, endpoint.port, timeout=self.connect_timeout_s
            )
        headers = {
            "Accept": "text/event-stream" if body and body.get("stream") else "application/json"
        }
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif endpoint.index in self._credentials:
            token = base64.b64encode(self._credentials[endpoint.index].encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        connected = False
        try:
            connection.connect()
            connected = True
            if watch is None:
                connection.sock.settimeout(self._list_timeout_s)
            else:
                # A backstop: the watch ends the request at its deadlines.
                connection.sock.settimeout(
                    max(self.first_token_timeout_s, self.idle_timeout_s) + 5.0
                )
                watch.start(connection.sock)
            connection.request(method, endpoint.base_path + path, body=payload, headers=headers)
            response = connection.getresponse()
            endpoint.last_answer_at = time.monotonic()
        except (OSError, http.client.HTTPException) as error:
            if watch is not None:
                watch.stop()
            connection.close()
            if watch is not None and (watch.reason == "cancelled" or watch.job.cancelled):
                raise Cancelled from None
            if not connected:
                if isinstance(error, (TimeoutError, socket.timeout)):
                    cause = f"could not connect within {self.connect_timeout_s:g} s"
                else:
                    cause = _cause(error, self.connect_timeout_s)
            else:
                cause = self._why(watch, error, "the server closed the connection")
            raise Unreachable(f"{endpoint.shown}: {cause}") from None
        if response.status != 200:
            detail = wire.error_detail(response)
            if watch is not None:
                watch.stop()
            connection.close()
            text = f"{endpoint.shown} answered HTTP {response.status} {response.reason}".rstrip()
            if detail:
                text += f": {detail}"
            if response.status >= 500 or response.status in (408, 429):
                raise Unreachable(text)
            raise Refused(text)
        return connection, response

    def _server_models(self, endpoint: _Endpoint, refresh: bool = False) -> list:
        """The model ids ``GET /v1/models`` lists (cached per URL)."""
        if endpoint.server_models is not None and not refresh:
            return endpoint.server_models
        key, problem = self._api_key()
        if problem:
            raise Refused(problem)
        connection, response = self._open(endpoint, "GET", "/v1/models", key)
        try:
            data = json.loads(response.read(4 << 20) or b"{}")
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise Refused(
                f"{endpoint.shown} sent a model list that cannot be read: {type(error).__name__}"
            ) from None
        finally:
            connection.close()
        entries = data.get("data") if isinstance(data, dict) else None
        ids = [str(e["id"]) for e in entries or [] if isinstance(e, dict) and "id" in e]
        endpoint.server_models = ids
        return ids

    def _list_models(self, endpoint: _Endpoint, failures: list) -> Optional[list]:
        """The URL's model list, or ``None`` (its failure appended, its health noted)."""
        try:
            served = self._server_models(endpoint, refresh=True)
        except Unreachable as error:
            failures.append(self._redact(str(error)))
            with self._changed:
                self._mark_unhealthy(endpoint, failures[-1])
            return None
        except Refused as error:
            failures.append(self._redact(str(error)))
            return None
        with self._changed:
            if not endpoint.healthy:
                endpoint.healthy = True
                endpoint.last_error = None
                self._changed.notify_all()
        return served

    @staticmethod
    def _model_name(spec: ModelSpec, served: Optional[list]) -> Optional[str]:
        if spec.source != "embedded":
            return spec.key
        if served is not None and len(served) == 1:
            return served[0]
        return None

    # ---- helpers ------------------------------------------------------------------------------

    def _in_order(self) -> list[_Endpoint]:
        """The URLs to ask for a model list: healthy ones in the given order, then the others."""
        with self._lock:
            return [e for e in self._endpoints if e.healthy] + [
                e for e in self._endpoints if not e.healthy
            ]

    def _api_key(self) -> tuple[Optional[str], Optional[str]]:
        if self.api_key_env is None:
            return None, None
        key = os.environ.get(self.api_key_env)
        if not key:
            return None, (
                f"The API key variable {self.api_key_env} is not set: set it in the "
                "kernel's environment (not in the notebook's text)"
            )
        return key, None

    def _redact(self, text: str) -> str:
        secrets = []
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                secrets.append(key)
        for credentials in self._credentials.values():
            user, _, password = credentials.partition(":")
            secrets += [credentials, password]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            if len(secret) >= 3:
                text = text.replace(secret, "***")
        return text


class _Watch:
    """Shuts a request's socket down when its job is cancelled, when no text
    came within the first-token timeout, or when an answer that has begun
    is silent for the idle timeout (checked every 20 ms); ``reason`` says
    which."""

    def __init__(self, job: Job, first_token_s: float, idle_s: float):
        self.job = job
        self.first_token_s = first_token_s
        self.idle_s = idle_s
        self.reason: Optional[str] = None  # "cancelled", "first token" or "idle"
        self.streaming = False  # set by the reader at the first text
        self.started = self.last_heard = time.monotonic()
        self.done = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def start(self, sock) -> None:
        self.started = self.last_heard = time.monotonic()
        self.thread = threading.Thread(
            target=self._watch, args=(sock,), name=f"{THREAD_NAME}-watch", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(1.0)

    def _watch(self, sock) -> None:
        while not self.done.wait(_WATCH_S):
            now = time.monotonic()
            if self.job.cancelled:
                self.reason = "cancelled"
            elif not self.streaming and now - self.started > self.first_token_s:
                self.reason = "first token"
            elif self.streaming and now - self.last_heard > self.idle_s:
                self.reason = "idle"
            else:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return


def _cause(error: BaseException, timeout: float) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({one_line(error.reason or str(error), 80)})"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return one_line(f"{type(error).__name__}: {error}", 120)


def _all_failed(failures: list) -> str:
    """One line for a request every URL failed."""
    if not failures:
        return "No server answered"
    if len(failures) == 1:
        return one_line(failures[0], 400)
    return one_line("No server answered: " + "; ".join(failures), 800)
