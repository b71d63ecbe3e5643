"""The remote runtime's queue: which job goes to which URL, when, and what
happens when a URL fails it.

Several URLs: the least busy healthy one
    A dispatcher thread hands each queued job to the healthy URL with the
    fewest requests in flight (ties: round robin), at most ``max_in_flight``
    at a time per URL (default 1: a Mac answers one request at a time
    best; raise it for servers that batch). Jobs wait in the order they were
    submitted; one URL's jobs never wait for another's. Each job's request
    runs on a thread of its own. Jobs queued at once spread over the URLs
    and advance together; with fewer free URLs than jobs, the rest wait
    their turn.

Failures before the first token: another URL
    A URL that cannot be reached, answers 5xx/429/408, closes the connection
    or sends no text within ``first_token_timeout_s`` is marked unhealthy
    and the job goes back to the head of the queue for another healthy URL
    that it has not tried (with a one-line :class:`Notice`). Other 4xx
    answers and errors the server reports are not retried (every server
    would refuse the same request). A job that has tried every URL fails
    with one line naming each URL (without credentials) and its cause.

Probes
    Unhealthy URLs are probed in the background with backoff (see
    :mod:`~mlx_magic.runtime.remote.endpoints`). When every URL a queued job
    could use is unhealthy they are probed at once, in parallel, and so
    are, before a retry, the URLs that have not answered anything for
    ``max_probe_after_s``: with every server down a job fails within about
    one ``connect_timeout_s`` (two on the first request, whose first URL is
    tried before the others are probed; a refused connection takes
    milliseconds).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Optional

from mlx_magic.errors import Cancelled, Refused, RemoteServerError, Unreachable
from mlx_magic.runtime.remote import openai_wire as wire
from mlx_magic.runtime.remote.client import ServerClient
from mlx_magic.runtime.remote.endpoints import Attempt, Endpoint, Endpoints, Pending, all_failed
from mlx_magic.runtime.remote.streaming import stream_answer
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import Failed, Finished, GenerationStats, Notice

# How often the dispatcher looks at queued jobs' cancellation.
_POLL_S = 0.1
_STOPPED = "the mlx_magic runtime was stopped"


class Dispatcher:
    """The queue of jobs, the dispatcher thread and one thread per request.

    Args:
        endpoints: the URLs.
        client: their HTTP client.
        max_in_flight: requests at a time per URL.
        thread_name: the dispatcher thread's name; the request, probe and
            watch threads add ``-request``, ``-probe`` and ``-watch``.
    """

    def __init__(
        self, endpoints: Endpoints, client: ServerClient, max_in_flight: int, thread_name: str
    ):
        self.endpoints = endpoints
        self.client = client
        self.max_in_flight = max_in_flight
        self.thread_name = thread_name
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.pending: "collections.deque[Pending]" = collections.deque()
        self.running: dict[Job, Endpoint] = {}
        self.generations = 0  # answers that ended well
        self._workers: set[threading.Thread] = set()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, jobs: list[Job]) -> None:
        """Queue the jobs, in order (the dispatcher thread starts if need be)."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._dispatch, name=self.thread_name, daemon=True
                )
                self._thread.start()
        with self.changed:
            self.pending.extend(Pending(job) for job in jobs)
            self.changed.notify_all()

    def stop(self, timeout: float) -> None:
        """Cancel the running jobs, fail the queued ones, and wait for the threads."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        with self.changed:
            self._stopping = True
            pending = list(self.pending)
            self.pending.clear()
            running = list(self.running)
            workers = list(self._workers)
            self.changed.notify_all()
        for job in running:
            job.cancel()
        for entry in pending:
            entry.job.emit(Failed(_STOPPED, user_error=True))
        thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self.changed:
            self._stopping = False
        self._thread = None

    # ---- model lists -------------------------------------------------------------------

    def server_models(self, endpoint: Endpoint, refresh: bool = False) -> list:
        """The model ids ``GET /v1/models`` lists (cached per URL)."""
        if endpoint.server_models is not None and not refresh:
            return endpoint.server_models
        key, problem = self.client.api_key()
        if problem:
            raise Refused(problem)
        endpoint.server_models = self.client.list_models(endpoint, key)
        return endpoint.server_models

    def list_models(self, endpoint: Endpoint, failures: list) -> Optional[list]:
        """The URL's model list, or ``None`` (its failure appended, its health noted)."""
        try:
            served = self.server_models(endpoint, refresh=True)
        except Unreachable as error:
            failures.append(self.client.redact(str(error)))
            with self.changed:
                self.endpoints.mark_unhealthy(endpoint, failures[-1], time.monotonic())
            return None
        except Refused as error:
            failures.append(self.client.redact(str(error)))
            return None
        with self.changed:
            if not endpoint.healthy:
                self.endpoints.mark_healthy(endpoint)
                self.changed.notify_all()
        return served

    # ---- the dispatcher thread -------------------------------------------------------------

    def _dispatch(self) -> None:
        with self.changed:
            while not self._stopping:
                self._schedule()
                self.changed.wait(self._next_wake())

    def _next_wake(self) -> Optional[float]:
        """Seconds until the dispatcher must look again (lock held)."""
        waits = [_POLL_S] if self.pending else []
        waits += self.endpoints.probe_waits(time.monotonic())
        return min(waits) if waits else None

    def _schedule(self) -> None:
        """Start the probes that are due and every queued job that has a
        free URL, in the order they were submitted (lock held)."""
        now = time.monotonic()
        for endpoint in self.endpoints.due_for_probe(now):
            self._start_probe(endpoint)
        for entry in list(self.pending):
            job = entry.job
            if job.cancelled:
                self.pending.remove(entry)
                job.emit(Finished("cancelled", GenerationStats()))
                continue
            untried = [e for e in self.endpoints if e.index not in entry.failures]
            if not untried:
                self.pending.remove(entry)
                message = self.client.redact(all_failed(list(entry.failures.values())))
                job.emit(Failed(message, user_error=True, error=RemoteServerError(message)))
                continue
            healthy = [e for e in untried if e.healthy]
            if entry.failures:
                # A retry: the URLs not heard from lately are asked all at
                # once first, so that with every server down the job does
                # not wait for each one's connect timeout in turn.
                stale = self.endpoints.not_heard_lately(healthy, now)
                for endpoint in stale:
                    entry.awaiting.add(endpoint.index)
                    if not endpoint.probing:
                        self._start_probe(endpoint)
                healthy = [e for e in healthy if e not in stale]
                if stale and not healthy:
                    continue
            free = [e for e in healthy if e.in_flight < self.max_in_flight]
            if free:
                self.pending.remove(entry)
                self._start_attempt(Attempt(entry, self.endpoints.least_busy(free)))
            elif not healthy:
                # Every URL it could use is failing: ask them all now.
                for endpoint in untried:
                    entry.awaiting.add(endpoint.index)
                    if not endpoint.probing:
                        self._start_probe(endpoint)

    def _start_attempt(self, attempt: Attempt) -> None:
        endpoint = attempt.endpoint
        endpoint.in_flight += 1
        endpoint.requests += 1
        self.running[attempt.pending.job] = endpoint
        worker = threading.Thread(
            target=self._run_attempt,
            args=(attempt,),
            name=f"{self.thread_name}-request",
            daemon=True,
        )
        self._workers.add(worker)
        worker.start()

    def _start_probe(self, endpoint: Endpoint) -> None:
        endpoint.probing = True
        threading.Thread(
            target=self._probe, args=(endpoint,), name=f"{self.thread_name}-probe", daemon=True
        ).start()

    def _probe(self, endpoint: Endpoint) -> None:
        error = None
        try:
            self.server_models(endpoint, refresh=True)
        except Unreachable as failure:
            error = self.client.redact(str(failure))
        except Refused:
            # It answered (or cannot be asked: no API key): count it as up;
            # what it refuses, a request will say.
            endpoint.last_answer_at = time.monotonic()
        except Exception as failure:  # never leave the URL marked as probing
            error = self.client.redact(f"{endpoint.shown}: {type(failure).__name__}: {failure}")
        with self.changed:
            endpoint.probing = False
            if error is None:
                self.endpoints.mark_healthy(endpoint)
            else:
                self.endpoints.mark_unhealthy(endpoint, error, time.monotonic())
            for entry in self.pending:
                if endpoint.index in entry.awaiting:
                    entry.awaiting.discard(endpoint.index)
                    if error is not None:
                        entry.failures[endpoint.index] = error
            self.changed.notify_all()

    # ---- one request -----------------------------------------------------------------------

    def _run_attempt(self, attempt: Attempt) -> None:
        """One request on its own thread; then the job ends or is queued again."""
        job, endpoint = attempt.pending.job, attempt.endpoint
        outcome: Optional[Finished | Failed] = None
        failure = None
        redact = self.client.redact
        try:
            key, problem = self.client.api_key()
            if problem:
                raise Refused(problem)
            outcome = self._stream(attempt, key)
        except Cancelled:
            outcome = Finished("cancelled", GenerationStats())
        except Unreachable as error:
            failure = redact(str(error))
            if job.cancelled:
                outcome = Finished("cancelled", GenerationStats())
        except Refused as error:
            message = redact(str(error))
            outcome = Failed(message, user_error=True, error=RemoteServerError(message))
        except Exception as error:  # a bug: never leave a caller waiting
            message = redact(f"{type(error).__name__}: {error}")
            outcome = Failed(message, user_error=False, error=RuntimeError(message))
        with self.changed:
            endpoint.in_flight -= 1
            if attempt.streamed:
                endpoint.streaming -= 1
            self.running.pop(job, None)
            self._workers.discard(threading.current_thread())
            if failure is not None:
                endpoint.failed += 1
                self.endpoints.mark_unhealthy(endpoint, failure, time.monotonic())
                if outcome is None:
                    attempt.pending.failures[endpoint.index] = failure
                    if self._stopping:
                        outcome = Failed(_STOPPED, user_error=True)
                    else:
                        if len(attempt.pending.failures) < len(self.endpoints):
                            job.emit(Notice(f"{failure}; trying another server"))
                        self.pending.appendleft(attempt.pending)
            elif isinstance(outcome, Finished) and outcome.finish_reason == "cut":
                endpoint.cut += 1
                if attempt.connection_broke:
                    cause = attempt.cut_cause or f"{endpoint.shown}: cut"
                    self.endpoints.mark_unhealthy(endpoint, cause, time.monotonic())
            elif isinstance(outcome, Finished) and outcome.finish_reason != "cancelled":
                self.endpoints.mark_completed(endpoint, time.monotonic())
                self.generations += 1
            self.changed.notify_all()
        if outcome is not None:
            job.emit(outcome)

    def _stream(self, attempt: Attempt, key: Optional[str]) -> Finished:
        """Stream one answer from one URL (see :func:`stream_answer`)."""
        request = attempt.pending.job.request
        try:
            embedded = request.model.source == "embedded"
            served = self.server_models(attempt.endpoint) if embedded else None
        except Refused:
            served = []  # the server cannot list its models: let it pick
        model = wire.model_name(request.model, served)

        def began_streaming() -> None:
            with self.lock:
                attempt.streamed = True
                attempt.endpoint.streaming += 1

        return stream_answer(
            self.client, attempt, key, model, began_streaming, f"{self.thread_name}-watch"
        )
