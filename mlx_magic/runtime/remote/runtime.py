"""A runtime that sends generations to OpenAI-compatible servers.

:class:`RemoteRuntime` serves the :class:`~mlx_magic.runtime.interface.Runtime`
interface with one or more HTTP servers that speak the OpenAI chat
completions API: ``mlx_lm.server``, ``mlx_vlm.server``, vLLM, the llama.cpp
server. HTTP goes through httpx, the events of a streamed answer through
httpx-sse; MLX is never imported.

The parts, one module each:

* :mod:`~mlx_magic.runtime.remote.endpoints`: the URLs, their health (probes
  with backoff) and their load (the least busy healthy one).
* :mod:`~mlx_magic.runtime.remote.client`: the httpx client, auth, timeouts,
  errors in one line and the redaction of secrets.
* :mod:`~mlx_magic.runtime.remote.watch`: a request's first-token and idle
  deadlines, and cancellation.
* :mod:`~mlx_magic.runtime.remote.streaming`: one attempt's answer, complete,
  cut or failed before its first text.
* :mod:`~mlx_magic.runtime.remote.openai_wire`: the request bodies and the
  reading of the answers.
* :mod:`~mlx_magic.runtime.remote.dispatcher`: the queue, the dispatcher
  thread, one thread per request, the retries and the probes.
* this module: the Runtime interface over them.

Requests
    ``POST {url}/v1/chat/completions`` with ``"stream": true`` (or ``POST
    {url}/v1/completions`` for ``--raw``); the body is described in
    :mod:`~mlx_magic.runtime.remote.openai_wire`.

The model name sent
    The spec's ``key``; for the embedded default model, which a server does
    not have, the server's own (see
    :func:`~mlx_magic.runtime.remote.openai_wire.model_name`).

Several URLs, retries and health
    Each job goes to the least busy healthy URL; a URL that fails a job
    before its first token is marked unhealthy and the job goes to another
    (see :mod:`~mlx_magic.runtime.remote.dispatcher`); unhealthy URLs are
    probed with backoff (see :mod:`~mlx_magic.runtime.remote.endpoints`).

Timeouts, cut streams and API keys
    See :mod:`~mlx_magic.runtime.remote.watch`,
    :mod:`~mlx_magic.runtime.remote.streaming` and
    :mod:`~mlx_magic.runtime.remote.client`.

Errors (connection refused, HTTP 4xx/5xx, timeouts) end the job with
``Failed(user_error=True)``: one line naming the URL (without credentials)
and the cause. Cancelling a job closes its HTTP connection within ~20 ms.
:meth:`RemoteRuntime.endpoint_stats` tells, per URL, its health, its load
and how its requests ended.
"""

from __future__ import annotations

import re
import time
from typing import Optional, Sequence

from mlx_magic.errors import RemoteServerError, UserError
from mlx_magic.runtime.interface import Inspection, Runtime
from mlx_magic.runtime.remote import openai_wire as wire
from mlx_magic.runtime.remote.client import ServerClient
from mlx_magic.runtime.remote.dispatcher import Dispatcher
from mlx_magic.runtime.remote.endpoints import Endpoint, Endpoints, all_failed, parse_url
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import (
    GenerationRequest,
    ModelInfo,
    ModelSpec,
    Notice,
    RuntimeStatus,
)

__all__ = ["RemoteRuntime", "RemoteServerError", "parse_url"]

THREAD_NAME = "mlx_magic-remote"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        self._endpoints = Endpoints(urls, self.probe_after_s, self.max_probe_after_s)
        self._client = ServerClient(
            api_key_env=api_key_env,
            credentials=self._endpoints.credentials,
            connect_timeout_s=self.connect_timeout_s,
            first_token_timeout_s=self.first_token_timeout_s,
            idle_timeout_s=self.idle_timeout_s,
        )
        self._dispatcher = Dispatcher(
            self._endpoints, self._client, self.max_in_flight, THREAD_NAME
        )
        self._budget = 0

    def __repr__(self) -> str:
        key = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return f"<RemoteRuntime {self.urls}{key}>"

    @property
    def urls(self) -> list[str]:
        """The servers, as shown (without credentials)."""
        return self._endpoints.shown

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
        failures: list[str] = []
        for endpoint in self._in_order():
            served = self._dispatcher.list_models(endpoint, failures)
            if served is None:
                continue
            name = wire.model_name(spec, served) or "the server's default model"
            return ModelInfo(
                name=name,
                key=spec.key,
                kind=spec.kind,
                memory_bytes=0,
                load_s=time.perf_counter() - started,
            )
        raise RemoteServerError(self._client.redact(all_failed(failures)))

    def inspect(self, asked: Inspection) -> object:
        raise UserError(asked.needs_local)  # a server sends tokens, not its layers

    def unload(self, key: Optional[str] = None) -> list[str]:
        return []  # the servers manage their own memory

    def models(self) -> list[ModelInfo]:
        """The models the first answering server lists (``GET /v1/models``)."""
        for endpoint in self._in_order():
            served = self._dispatcher.list_models(endpoint, [])
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

    def probe(self) -> list[str]:
        """The models listed by the first URL that answers ``GET /v1/models``.

        Raises:
            RemoteServerError: no URL answered; one line naming each failure
                (no credentials).
        """
        failures: list = []
        for endpoint in self._in_order():
            served = self._dispatcher.list_models(endpoint, failures)
            if served is not None:
                return list(served)
        raise RemoteServerError("not reachable: " + "; ".join(failures or ["no URL answered"]))

    def status(self) -> RuntimeStatus:
        dispatcher = self._dispatcher
        with dispatcher.lock:
            shown = self._endpoints.status_line()
            running = list(dispatcher.running)
            queued = len(dispatcher.pending)
        return RuntimeStatus(
            kind=self._client.redact(f"remote OpenAI-compatible server: {shown}"),
            running=dispatcher.alive,
            busy=bool(running),
            queued=queued,
            current=running[0].request.model.name if running else None,
            lock_held=False,
            memory_budget_bytes=self._budget,
            generations=dispatcher.generations,
        )

    def endpoint_stats(self) -> list[dict]:
        """Per URL, in the given order: ``url`` (without credentials),
        ``healthy``, ``in_flight`` (of which ``streaming`` have sent text),
        ``requests`` sent, and how they ended: ``completed``, ``failed``
        before the first token (the job went on to another URL or failed),
        ``cut`` mid-stream; ``last_error`` and ``next_probe_in_s`` while
        unhealthy."""
        with self._dispatcher.lock:
            rows = self._endpoints.rows(time.monotonic())
        for row in rows:
            if row["last_error"]:
                row["last_error"] = self._client.redact(row["last_error"])
        return rows

    def clear_caches(self) -> int:
        return 0

    def set_memory_budget(self, budget_bytes: int) -> None:
        self._budget = int(budget_bytes)  # shown in status; servers keep their own

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel the running jobs, fail the queued ones, and wait for the threads."""
        self._dispatcher.stop(timeout)

    # ---- helpers ---------------------------------------------------------------------------

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
        self._dispatcher.submit(jobs)
        return jobs

    def _in_order(self) -> list[Endpoint]:
        """The URLs to ask for a model list: healthy ones in the given order, then the others."""
        with self._dispatcher.lock:
            return self._endpoints.in_order()
