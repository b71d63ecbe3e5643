"""A runtime that sends generations to OpenAI-compatible servers.

:class:`RemoteRuntime` serves the :class:`~mlx_magic.runtime.Runtime`
interface with one or more HTTP servers that speak the OpenAI chat
completions API: ``mlx_lm.server``, ``mlx_vlm.server``, vLLM, the llama.cpp
server. Only the standard library is used (``http.client``); MLX is never
imported.

Requests
    ``POST {url}/v1/chat/completions`` with ``"stream": true`` and
    ``"stream_options": {"include_usage": true}``: the system prompt, the
    conversation's turns and the cell as messages; images as content parts
    ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}``
    after the text. A ``--raw`` request goes to ``POST {url}/v1/completions``
    with the text as ``prompt`` (system prompt and turns before it,
    separated by blank lines, as thread mode does without a template).
    Sampling: ``max_tokens``, ``temperature``, ``top_p`` and ``seed`` always;
    ``top_k``, ``min_p`` and ``repetition_penalty`` (understood by mlx-lm,
    vLLM and llama.cpp) only when set.

The model name sent
    The spec's ``key`` (a Hub id, a folder path, or the name itself for a
    spec made for a server), except for the embedded default model, which a
    server does not have: then the server's own model is used — the one
    model ``GET /v1/models`` lists, or, when it lists none or several (or
    cannot say), no ``model`` field at all, which these servers answer with
    the model they were started with.

Streaming
    Server-sent events are read line by line; every ``data:`` payload with
    text becomes a :class:`~mlx_magic.protocol.TokenChunk` (without token
    ids: the API does not give them), ``data: [DONE]`` ends the answer.
    Stats: ``prompt_tokens``, ``generation_tokens`` and
    ``cached_prompt_tokens`` from the ``usage`` object (or llama.cpp's
    ``timings``; failing both, the number of chunks); ``ttft_s``, tokens per
    second and prompt tokens per second are measured here (they include the
    network). ``remote_url`` and ``server_model`` say who answered.

Several URLs: first healthy
    Every request goes to the first URL in the given order that has not
    failed recently. A URL that cannot be reached, times out or answers
    5xx/429 before streaming is marked unhealthy for ``retry_after_s`` and
    the next one is tried; once text has streamed there is no retry (it
    would repeat the answer). Other 4xx answers are not retried.

API keys
    Read at each request from the environment variable *named* by
    ``api_key_env`` (never given as a value, never stored on the object) and
    sent as ``Authorization: Bearer …``. The key — and any password in a URL
    — is replaced by ``***`` in every message, notice, exception, repr and
    status this module makes.

Errors (connection refused, HTTP 4xx/5xx, timeouts) end the job with
``Failed(user_error=True)``: one line naming the URL (without credentials)
and the cause. Cancelling a job closes its HTTP connection within ~20 ms.
Jobs run one at a time, in the order they were submitted, as in thread mode.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import queue
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .protocol import (
    Failed,
    Finished,
    GenerationRequest,
    Job,
    ModelInfo,
    ModelLoadError,
    ModelReady,
    ModelSpec,
    Notice,
    RuntimeStatus,
    TokenChunk,
)
from .runtime import Runtime

THREAD_NAME = "mlx_magic-remote"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_ERROR_BODY = 64 * 1024
_STOP = object()


class RemoteServerError(ModelLoadError):
    """A server could not be reached or refused a request (one line, no secrets)."""


class _Unreachable(Exception):
    """The request never started streaming; another URL may be tried."""


class _Refused(Exception):
    """The server refused the request; another URL would refuse it too."""


class _Cancelled(Exception):
    """The job was cancelled before its answer started."""


@dataclass
class _Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str
    shown: str  # the URL as shown to the user: no credentials, no query
    unhealthy_until: float = 0.0
    server_models: Optional[list] = None

    def __repr__(self) -> str:
        return f"<endpoint {self.shown}>"


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
        credentials = urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(
            parts.password or "")
    return _Endpoint(parts.scheme, host, port, path, shown), credentials


class RemoteRuntime(Runtime):
    """Generations on OpenAI-compatible servers (see the module docstring).

    Args:
        urls: one or more server URLs, tried first-healthy in this order.
        api_key_env: the NAME of the environment variable holding the API
            key, or ``None`` for servers without one.
        connect_timeout_s: to open a connection.
        read_timeout_s: the longest wait for the next bytes of an answer
            (a server may load a model before its first token).
        retry_after_s: how long a failed URL is skipped.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        api_key_env: Optional[str] = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
        retry_after_s: float = 30.0,
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
        self.api_key_env = api_key_env
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry_after_s = retry_after_s
        self._endpoints: list[_Endpoint] = []
        self._credentials: dict[int, str] = {}
        for url in urls:
            endpoint, credentials = parse_url(url)
            if credentials is not None:
                self._credentials[len(self._endpoints)] = credentials
            self._endpoints.append(endpoint)
        self._inbox: "queue.Queue[Any]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._current: Optional[Job] = None
        self._generations = 0
        self._budget = 0

    def __repr__(self) -> str:
        key = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return f"<RemoteRuntime {self.urls}{key}>"

    @property
    def urls(self) -> list[str]:
        """The servers, as shown (without credentials)."""
        return [endpoint.shown for endpoint in self._endpoints]

    # ---- the Runtime interface ---------------------------------------------------

    def generate(self, request: GenerationRequest) -> Job:
        job = Job(request)
        self._ensure_started()
        self._inbox.put(job)
        return job

    def load(self, spec: ModelSpec) -> ModelInfo:
        """Check that a server answers and name the model it will use.

        Raises:
            RemoteServerError: no server answered ``GET /v1/models``.
        """
        started = time.perf_counter()
        failures = []
        for index, endpoint in self._in_order():
            try:
                served = self._server_models(index, endpoint, refresh=True)
            except (_Unreachable, _Refused) as error:
                failures.append(str(error))
                self._mark_unhealthy(endpoint)
                continue
            name = self._model_name(spec, served) or "the server's default model"
            return ModelInfo(name=name, key=spec.key, kind=spec.kind, memory_bytes=0,
                             load_s=time.perf_counter() - started)
        raise RemoteServerError(self._redact(_summary(failures)))

    def unload(self, key: Optional[str] = None) -> list[str]:
        return []  # the servers manage their own memory

    def models(self) -> list[ModelInfo]:
        """The models the first answering server lists (``GET /v1/models``)."""
        for index, endpoint in self._in_order():
            try:
                served = self._server_models(index, endpoint, refresh=True)
            except (_Unreachable, _Refused):
                self._mark_unhealthy(endpoint)
                continue
            return [ModelInfo(name=name, key=f"{endpoint.shown} {name}", kind="remote",
                              memory_bytes=0, load_s=0.0) for name in served]
        return []

    def status(self) -> RuntimeStatus:
        now = time.monotonic()
        shown = ", ".join(
            e.shown + (" (failing)" if e.unhealthy_until > now else "") for e in self._endpoints
        )
        with self._state_lock:
            current = self._current
        return RuntimeStatus(
            kind=self._redact(f"remote OpenAI-compatible server: {shown}"),
            running=self._thread is not None and self._thread.is_alive(),
            busy=current is not None,
            queued=self._inbox.qsize(),
            current=current.request.model.name if current else None,
            lock_held=False,
            memory_budget_bytes=self._budget,
            generations=self._generations,
        )

    def clear_caches(self) -> int:
        return 0

    def set_memory_budget(self, budget_bytes: int) -> None:
        self._budget = int(budget_bytes)  # shown in status; servers keep their own

    def stop(self, timeout: float = 30.0) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._state_lock:
            if self._current is not None:
                self._current.cancel()
        self._inbox.put(_STOP)
        thread.join(timeout)
        self._thread = None

    # ---- the dispatcher thread ---------------------------------------------------------

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                break
            with self._state_lock:
                self._current = item
            try:
                self._run_job(item)
            except Exception as error:  # never leave a caller waiting
                message = self._redact(f"{type(error).__name__}: {error}")
                item.emit(Failed(message, user_error=False, error=RuntimeError(message)))
            finally:
                with self._state_lock:
                    self._current = None
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Job):
                item.emit(Failed("the mlx_magic runtime was stopped", user_error=True))

    def _run_job(self, job: Job) -> None:
        if job.cancelled:
            job.emit(Finished("cancelled", {"generation_tokens": 0}))
            return
        key, problem = self._api_key()
        if problem:
            job.emit(Failed(problem, user_error=True, error=RemoteServerError(problem)))
            return
        if job.request.top_logprobs:
            job.emit(Notice("Token probabilities (--probs) do not come back from a remote "
                            "server: the answer streams without them"))
        failures = []
        for index, endpoint in self._in_order():
            try:
                finished = self._stream(index, endpoint, job, key)
            except _Cancelled:
                job.emit(Finished("cancelled", {"generation_tokens": 0}))
                return
            except _Unreachable as error:
                failures.append(str(error))
                self._mark_unhealthy(endpoint)
                continue
            except _Refused as error:
                failures.append(str(error))
                break
            endpoint.unhealthy_until = 0.0
            if finished.finish_reason != "cancelled":
                self._generations += 1
            job.emit(finished)
            return
        message = self._redact(_summary(failures))
        job.emit(Failed(message, user_error=True, error=RemoteServerError(message)))

    # ---- one request ------------------------------------------------------------------------

    def _stream(self, index: int, endpoint: _Endpoint, job: Job, key: Optional[str]) -> Finished:
        request = job.request
        try:
            served = self._server_models(index, endpoint) if request.model.source == "embedded" \
                else None
        except _Refused:
            served = []  # the server cannot list its models: let it pick
        model = self._model_name(request.model, served)
        raw = request.raw and not request.images
        path = "/v1/completions" if raw else "/v1/chat/completions"
        body = _request_body(request, model, raw)
        started = time.perf_counter()
        connection, response, watch = self._open(index, endpoint, "POST", path, key, body, job)
        reader = _StreamReader(job, started, raw)
        job.emit(ModelReady(model=model or request.model.name, warm=True, load_s=0.0))
        try:
            try:
                for data in _sse_data(response):
                    if data == "[DONE]":
                        reader.done = True
                        break
                    error = reader.take(data)
                    if error:
                        raise _Refused(f"{endpoint.shown} reported an error: {error}")
            except (OSError, http.client.HTTPException) as error:
                if not job.cancelled:
                    if reader.chunks:
                        raise _Refused(f"{endpoint.shown} broke off the answer: "
                                       f"{_cause(error, self.read_timeout_s)}") from None
                    raise _Unreachable(f"{endpoint.shown}: {_cause(error, self.read_timeout_s)}") \
                        from None
        finally:
            watch.stop()
            connection.close()
        if job.cancelled:
            reason = "cancelled"
        elif reader.finish_reason is not None or reader.done:
            reason = reader.finish_reason or "stop"
        else:
            raise _Refused(f"{endpoint.shown} ended the answer early (no finish reason, "
                           "no [DONE])")
        stats = reader.stats()
        stats.update(remote_url=endpoint.shown, server_model=reader.model or model)
        return Finished(finish_reason=_finish_reason(reason), stats=stats)

    def _open(self, index: int, endpoint: _Endpoint, method: str, path: str,
              key: Optional[str], body: Optional[dict] = None, job: Optional[Job] = None):
        """Send a request; the connection, a 200 response, and the cancel watch.

        From the moment the connection is open, cancelling ``job`` shuts its
        socket down (the watch); the caller stops the watch when done.

        Raises:
            _Unreachable: no connection, a timeout, or 5xx/429/408.
            _Refused: another 4xx answer.
            _Cancelled: ``job`` was cancelled before the answer began.
        """
        if endpoint.scheme == "https":
            connection = http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=self.connect_timeout_s,
                context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(
                endpoint.host, endpoint.port, timeout=self.connect_timeout_s)
        headers = {"Accept": "text/event-stream" if body and body.get("stream")
                   else "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif index in self._credentials:
            token = base64.b64encode(self._credentials[index].encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        watch = _CancelWatch(job)
        connected = False
        try:
            connection.connect()
            connected = True
            connection.sock.settimeout(self.read_timeout_s)
            watch.start(connection.sock)
            connection.request(method, endpoint.base_path + path, body=payload, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            watch.stop()
            connection.close()
            if job is not None and job.cancelled:
                raise _Cancelled from None
            timeout = self.read_timeout_s if connected else self.connect_timeout_s
            raise _Unreachable(f"{endpoint.shown}: {_cause(error, timeout)}") from None
        if response.status != 200:
            detail = _error_detail(response)
            watch.stop()
            connection.close()
            text = f"{endpoint.shown} answered HTTP {response.status} {response.reason}".rstrip()
            if detail:
                text += f": {detail}"
            if response.status >= 500 or response.status in (408, 429):
                raise _Unreachable(text)
            raise _Refused(text)
        return connection, response, watch

    def _server_models(self, index: int, endpoint: _Endpoint, refresh: bool = False) -> list:
        """The model ids ``GET /v1/models`` lists (cached per URL)."""
        if endpoint.server_models is not None and not refresh:
            return endpoint.server_models
        key, problem = self._api_key()
        if problem:
            raise _Refused(problem)
        connection, response, _ = self._open(index, endpoint, "GET", "/v1/models", key)
        try:
            data = json.loads(response.read(4 << 20) or b"{}")
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise _Refused(f"{endpoint.shown} sent a model list that cannot be read: "
                           f"{type(error).__name__}") from None
        finally:
            connection.close()
        entries = data.get("data") if isinstance(data, dict) else None
        ids = [str(e["id"]) for e in entries or [] if isinstance(e, dict) and "id" in e]
        endpoint.server_models = ids
        return ids

    @staticmethod
    def _model_name(spec: ModelSpec, served: Optional[list]) -> Optional[str]:
        if spec.source != "embedded":
            return spec.key
        if served is not None and len(served) == 1:
            return served[0]
        return None

    # ---- helpers ------------------------------------------------------------------------------

    def _in_order(self):
        """The URLs to try: healthy ones in the given order, then the failing ones."""
        now = time.monotonic()
        indexed = list(enumerate(self._endpoints))
        healthy = [(i, e) for i, e in indexed if e.unhealthy_until <= now]
        failing = [(i, e) for i, e in indexed if e.unhealthy_until > now]
        return healthy + failing

    def _mark_unhealthy(self, endpoint: _Endpoint) -> None:
        endpoint.unhealthy_until = time.monotonic() + self.retry_after_s

    def _api_key(self) -> tuple[Optional[str], Optional[str]]:
        if self.api_key_env is None:
            return None, None
        key = os.environ.get(self.api_key_env)
        if not key:
            return None, (f"The API key variable {self.api_key_env} is not set: set it in the "
                          "kernel's environment (not in the notebook's text)")
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


class _StreamReader:
    """Turns the ``data:`` payloads of one answer into events and stats."""

    def __init__(self, job: Job, started: float, raw: bool):
        self.job = job
        self.started = started
        self.raw = raw
        self.chunks = 0
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None
        self.finish_reason: Optional[str] = None
        self.usage: dict = {}
        self.timings: dict = {}
        self.model: Optional[str] = None
        self.done = False

    def take(self, data: str) -> Optional[str]:
        """Handle one payload; returns the server's error message, if it is one."""
        try:
            payload = json.loads(data)
        except ValueError:
            return None  # not JSON: a keep-alive or an extension; skip it
        if not isinstance(payload, dict):
            return None
        if payload.get("error"):
            return _message_of(payload["error"])
        if isinstance(payload.get("model"), str):
            self.model = payload["model"]
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if isinstance(payload.get("timings"), dict):
            self.timings = payload["timings"]
        choices = payload.get("choices") or []
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0),
                      None)
        if choice is None:
            return None
        if self.raw:
            text = choice.get("text")
        else:
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            now = time.perf_counter()
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
            self.chunks += 1
            self.job.emit(TokenChunk(text=text))
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        return None

    def stats(self) -> dict:
        usage, timings = self.usage, self.timings
        details = usage.get("prompt_tokens_details") or {}
        prompt = _int(usage.get("prompt_tokens"), timings.get("prompt_n"))
        generated = _int(usage.get("completion_tokens"), timings.get("predicted_n"))
        if generated is None:
            generated = self.chunks
        cached = _int(details.get("cached_tokens") if isinstance(details, dict) else None,
                      timings.get("cache_n")) or 0
        ttft = self.first_at - self.started if self.first_at is not None else None
        generation_tps = 0.0
        if generated > 1 and self.first_at is not None and self.last_at > self.first_at:
            generation_tps = (generated - 1) / (self.last_at - self.first_at)
        return {
            "prompt_tokens": prompt or 0,
            "cached_prompt_tokens": cached,
            "prompt_tps": (prompt / ttft) if prompt and ttft else 0.0,
            "generation_tokens": generated,
            "generation_tps": generation_tps,
            "ttft_s": ttft,
            "peak_memory_gb": 0.0,  # the server's memory is not reported
            "load_s": 0.0,
            "warm": True,
        }


def _request_body(request: GenerationRequest, model: Optional[str], raw: bool) -> dict:
    sampling = request.sampling
    body: dict = {}
    if model is not None:
        body["model"] = model
    if raw:
        parts = [request.system] if request.system else []
        for user, assistant in request.history:
            parts += [user, assistant]
        body["prompt"] = "\n\n".join(parts + [request.prompt])
    else:
        body["messages"] = _messages(request)
    body.update(
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
    )
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.top_k:
        body["top_k"] = sampling.top_k
    if sampling.min_p:
        body["min_p"] = sampling.min_p
    if sampling.repetition_penalty is not None:
        body["repetition_penalty"] = sampling.repetition_penalty
    return body


def _messages(request: GenerationRequest) -> list:
    messages = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for user, assistant in request.history:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    if request.images:
        content = [{"type": "text", "text": request.prompt}]
        for image in request.images:
            content.append({"type": "image_url", "image_url": {"url": image_data_uri(image)}})
        messages.append({"role": "user", "content": content})
    else:
        messages.append({"role": "user", "content": request.prompt})
    return messages


def image_data_uri(image) -> str:
    """A PIL image as a ``data:image/png;base64,…`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _sse_data(response):
    """The ``data`` of each server-sent event (text/event-stream), as strings."""
    lines: list[str] = []
    while True:
        raw = response.readline(1 << 24)
        if not raw:
            break
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        # Not closed by a blank line: servers that skip it still meant it.
        yield "\n".join(lines)


class _CancelWatch:
    """Shuts a job's socket down when the job is cancelled (checked every 20 ms)."""

    def __init__(self, job: Optional[Job]):
        self.job = job
        self.done = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def start(self, sock) -> None:
        if self.job is None:
            return
        self.thread = threading.Thread(target=self._watch, args=(sock,),
                                       name=f"{THREAD_NAME}-cancel", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(1.0)

    def _watch(self, sock) -> None:
        while not self.done.wait(0.02):
            if self.job.cancelled:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return


def _error_detail(response) -> str:
    try:
        body = response.read(_MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        return ""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text)
    if isinstance(data, dict):
        for name in ("error", "detail", "message"):
            if data.get(name):
                return _one_line(_message_of(data[name]))
    return _one_line(text)


def _message_of(error) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cause(error: BaseException, timeout: float) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({_one_line(error.reason or str(error), 80)})"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return _one_line(f"{type(error).__name__}: {error}", 120)


def _summary(failures: list) -> str:
    if not failures:
        return "No server answered"
    text = failures[-1]
    if len(failures) > 1:
        text += f" (and {len(failures) - 1} other URL(s) failed: {'; '.join(failures[:-1])})"
    return _one_line(text, 400)


def _finish_reason(reason: str) -> str:
    # mlx_magic knows stop, length and cancelled; tool calls and content
    # filters end the answer too.
    return reason if reason in ("stop", "length", "cancelled") else "stop"


def _int(*values) -> Optional[int]:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None
