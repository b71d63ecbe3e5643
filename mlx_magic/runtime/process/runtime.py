"""The runtime in a child process: MLX never enters the kernel.

:class:`ProcessRuntime` serves the :class:`~mlx_magic.runtime.thread.Runtime`
interface by talking JSON-RPC 2.0 (framing: :mod:`mlx_magic.runtime.process.rpc`) to
``python -m mlx_magic.runtime.process.server`` over the child's stdin and stdout. The worker
runs a :class:`~mlx_magic.runtime.thread.ThreadRuntime`, so generations behave as in
thread mode; a crash in MLX (a segfault, an abort, the out-of-memory killer)
takes down the worker, not the kernel.

Threads on the kernel side, per worker: a writer (frames go out in order and
a kernel interrupt can never cut one in half), a reader (answers and events;
a job's batched token chunks are re-emitted one TokenChunk each), a stderr
forwarder (the worker's stderr and stray prints go to the kernel process's
fd 2 — the terminal or the Jupyter server's log — and the last lines are kept
in :attr:`ProcessRuntime.last_stderr`), and a watchdog that every 20 ms

* forwards ``Job.cancel()`` of local jobs to the worker,
* notices a worker that exited (crash, kill, OOM): its jobs get a
  one-line ``Failed(user_error=True)`` naming the exit code or signal,
* pings the worker when it has been quiet for ``ping_interval_s`` and kills
  it if the ping stays unanswered (``idle_ping_timeout_s`` when idle,
  ``busy_ping_timeout_s`` while it works), or if a job or call has seen no
  progress for ``stall_timeout_s`` (long: loading a big model is silent).

A dead or killed worker is replaced on the next request. Restarts are
bounded: after ``max_restarts`` crashes within ``restart_window_s`` with no
successful generation or load in between, requests fail with a clear error
until :meth:`ProcessRuntime.restart` (``%mlx restart``); crashes in a row
wait 0.5, 1, 2, … s (at most 4 s) before the next start.

Nothing here imports MLX, mlx-lm or mlx-vlm.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

from mlx_magic.errors import ModelLoadError, WorkerError
from mlx_magic.runtime.process import rpc
from mlx_magic.runtime.thread import Runtime
from mlx_magic.runtime.values import (
    Failed,
    Finished,
    GenerationRequest,
    Job,
    ModelInfo,
    ModelSpec,
    RuntimeStatus,
    TokenChunk,
)

WORKER_MODULE = "mlx_magic.worker"
_WATCH_S = 0.02


def describe_exit(returncode: Optional[int]) -> str:
    """How a process ended, for a one-line message ("crashed with SIGSEGV …")."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"was ended by signal {number}"
        if number == signal.SIGKILL:
            return "was killed with SIGKILL (out of memory, or killed by hand)"
        if number == signal.SIGSEGV:
            return "crashed with SIGSEGV (segmentation fault)"
        if number == signal.SIGABRT:
            return "aborted (SIGABRT)"
        if number == signal.SIGBUS:
            return "crashed with SIGBUS (bus error)"
        description = signal.strsignal(number) or name
        return f"was ended by {name} ({description.lower()})"
    if returncode == 0:
        return "exited unexpectedly (exit code 0)"
    return f"exited with code {returncode}"


class _Pending:
    """A request sent to the worker, waiting for its answer."""

    def __init__(self, method: str, on_done: Optional[Callable[["_Pending"], None]] = None):
        self.method = method
        self.on_done = on_done
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None

    def settle(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        if self.done.is_set():
            return
        self.value, self.error = value, error
        self.done.set()
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:
                pass


class _Worker:
    """One worker process and the kernel-side threads that talk to it."""

    def __init__(self, owner: "ProcessRuntime"):
        self.owner = owner
        argv = [
            owner.python,
            "-m",
            WORKER_MODULE,
            "--memory-budget-bytes",
            str(owner._budget),
            "--batch-interval-s",
            repr(owner.batch_interval_s),
        ]
        env = dict(os.environ if owner.env is None else owner.env)
        # The worker's stderr is forwarded line by line; keep it unbuffered.
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
            # Out of the terminal's process group: Ctrl-C is for the kernel.
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.started_at = time.monotonic()
        self.ready = threading.Event()
        self.gone = threading.Event()
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.pending: dict[int, _Pending] = {}
        self.jobs: dict[str, Job] = {}
        self.cancel_sent: set[str] = set()
        self.outbox: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.writer = rpc.FrameWriter(self.proc.stdin)
        self.reader = rpc.FrameReader(self.proc.stdout, on_garbage=self._garbage)
        now = time.monotonic()
        self.last_frame_at = now
        self.last_progress_at = now
        self.ping: Optional[tuple[int, float]] = None
        # Set before an intended end (stop, restart) or a kill by the watchdog.
        self.expected_exit: Optional[str] = None
        self.forced_cause: Optional[str] = None
        self.cause: Optional[str] = None
        self.returncode: Optional[int] = None
        self.event_messages = 0
        self.events = 0
        self.token_chunks = 0
        self.threads = [
            threading.Thread(
                target=self._write_loop, name=f"mlx_magic-worker-{self.pid}-writer", daemon=True
            ),
            threading.Thread(
                target=self._read_loop, name=f"mlx_magic-worker-{self.pid}-reader", daemon=True
            ),
            threading.Thread(
                target=self._stderr_loop, name=f"mlx_magic-worker-{self.pid}-stderr", daemon=True
            ),
            threading.Thread(
                target=self._watch_loop, name=f"mlx_magic-worker-{self.pid}-watchdog", daemon=True
            ),
        ]
        for thread in self.threads:
            thread.start()

    # ---- sending ------------------------------------------------------------

    def send(self, message: dict) -> None:
        self.outbox.put(message)

    def request(
        self, method: str, params: Any = None, on_done: Optional[Callable[[_Pending], None]] = None
    ) -> _Pending:
        pending = _Pending(method, on_done)
        with self.lock:
            if self.gone.is_set():
                gone = True
            else:
                gone = False
                id_ = next(self.ids)
                # New work restarts the stall clock (an idle time before it
                # is no stall).
                self.last_progress_at = time.monotonic()
                self.pending[id_] = pending
        if gone:
            pending.settle(error=WorkerError(self.owner._gone_message(self, None)))
        else:
            self.send(rpc.request(id_, method, params))
        return pending

    def add_job(self, job_id: str, job: Job) -> bool:
        with self.lock:
            if self.gone.is_set():
                return False
            self.last_progress_at = time.monotonic()
            self.jobs[job_id] = job
            return True

    def finish_job(self, job_id: str, event) -> None:
        with self.lock:
            job = self.jobs.pop(job_id, None)
        if job is not None:
            job.emit(event)

    def busy(self) -> bool:
        with self.lock:
            return bool(self.jobs) or any(p.method != "ping" for p in self.pending.values())

    # ---- threads --------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            message = self.outbox.get()
            if message is None:
                break
            try:
                self.writer.send(message)
            except (OSError, ValueError):
                break  # the worker is gone; the reader or the watchdog reports it
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass

    def _read_loop(self) -> None:
        try:
            while True:
                message = self.reader.read()
                if message is None:
                    break
                self.last_frame_at = time.monotonic()
                self._handle(message)
        except (OSError, ValueError):
            pass
        self.owner._worker_gone(self)

    def _handle(self, message: dict) -> None:
        kind = rpc.kind_of(message)
        if kind == "response":
            id_ = message.get("id")
            with self.lock:
                pending = self.pending.pop(id_, None)
                if self.ping is not None and self.ping[0] == id_:
                    self.ping = None
            if pending is None:
                return
            if pending.method != "ping":
                self.last_progress_at = time.monotonic()
            if "error" in message:
                body = message["error"] if isinstance(message["error"], dict) else {}
                pending.settle(error=rpc.exception_from_error(body))
            else:
                pending.settle(value=message.get("result"))
        elif kind == "notification":
            method = message["method"]
            params = message.get("params") or {}
            if method == "events":
                self._events(params)
            elif method == "ready":
                self.ready.set()

    def _events(self, params: dict) -> None:
        self.last_progress_at = time.monotonic()
        self.event_messages += 1
        job_id = str(params.get("job"))
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            return
        for data in params.get("events") or ():
            try:
                event = rpc.decode(data)
            except (ValueError, KeyError, TypeError) as error:
                event = Failed(
                    f"The worker sent an event that cannot be read: {error}",
                    user_error=False,
                    error=error,
                )
            self.events += 1
            if isinstance(event, TokenChunk):
                self.token_chunks += 1
            if isinstance(event, (Finished, Failed)):
                with self.lock:
                    self.jobs.pop(job_id, None)
                    self.cancel_sent.discard(job_id)
                self.owner._job_ended(event)
                job.emit(event)
                return
            job.emit(event)

    def _stderr_loop(self) -> None:
        stream = self.proc.stderr
        try:
            for line in iter(stream.readline, b""):
                self.owner.last_stderr.append(line.decode("utf-8", "replace").rstrip("\n"))
                if self.owner.forward_stderr:
                    try:
                        os.write(2, line)
                    except OSError:
                        pass
        except (OSError, ValueError):
            pass

    def _watch_loop(self) -> None:
        owner = self.owner
        while not self.gone.wait(_WATCH_S):
            if self.proc.poll() is not None:
                owner._worker_gone(self)
                return
            self._forward_cancels()
            self._check_liveness(time.monotonic())

    def _forward_cancels(self) -> None:
        with self.lock:
            to_cancel = [
                job_id
                for job_id, job in self.jobs.items()
                if job.cancelled and job_id not in self.cancel_sent
            ]
            self.cancel_sent.update(to_cancel)
        for job_id in to_cancel:
            self.send(rpc.notification("cancel", {"job": job_id}))

    def _check_liveness(self, now: float) -> None:
        owner = self.owner
        if not self.ready.is_set():
            if now - self.started_at > owner.start_timeout_s:
                self.kill(f"did not start within {owner.start_timeout_s:.0f} s and was ended")
            return
        busy = self.busy()
        if busy and now - self.last_progress_at > owner.stall_timeout_s:
            self.kill(f"made no progress for {owner.stall_timeout_s:.0f} s and was ended")
            return
        with self.lock:
            ping = self.ping
        if ping is None:
            if now - self.last_frame_at >= owner.ping_interval_s:
                id_ = next(self.ids)
                with self.lock:
                    self.pending[id_] = _Pending("ping")
                    self.ping = (id_, now)
                self.send(rpc.request(id_, "ping"))
            return
        limit = owner.busy_ping_timeout_s if busy else owner.idle_ping_timeout_s
        if now - ping[1] > limit:
            self.kill(f"stopped answering (no reply to a ping in {limit:.0f} s) and was ended")

    def kill(self, cause: str) -> None:
        """End a hung worker; its jobs fail with ``cause``."""
        if self.forced_cause is None and self.expected_exit is None:
            self.forced_cause = cause
        try:
            self.proc.kill()
        except OSError:
            pass

    def _garbage(self, what: str) -> None:
        if self.owner.forward_stderr:
            try:
                os.write(2, f"[mlx_magic] skipped stray worker output: {what}\n".encode())
            except OSError:
                pass


class ProcessRuntime(Runtime):
    """Serves the runtime interface from a child process (``python -m mlx_magic.runtime.process.server``).

    The worker starts with the first request (or :meth:`restart`) and is
    replaced after it dies. See the module docstring for the threads, the
    watchdog and the restart policy.

    Args:
        memory_budget_bytes: the warm-model budget (kept across restarts).
        python: the interpreter to run the worker with.
        env: the worker's environment (default: this process's).
        batch_interval_s: the longest a token waits in the worker before it
            is sent (tokens are sent 4–32 at a time depending on the rate).
        ping_interval_s: ping the worker after this long without a message.
        idle_ping_timeout_s, busy_ping_timeout_s: a ping unanswered this long
            means the worker hangs (idle / while it generates or loads).
        stall_timeout_s: no event or answer this long while a job or call is
            outstanding means the worker hangs.
        start_timeout_s: the worker must say it is ready within this.
        max_restarts, restart_window_s: at most this many crashes within the
            window (with no success in between) before giving up.
        exit_on_unload_all: ``unload(None)`` ends an idle worker, so that the
            system gets all of its memory back; the next request starts a
            new one.
        forward_stderr: copy the worker's stderr to this process's fd 2.
    """

    def __init__(
        self,
        memory_budget_bytes: int,
        *,
        python: Optional[str] = None,
        env: Optional[dict] = None,
        batch_interval_s: float = 0.2,
        ping_interval_s: float = 5.0,
        idle_ping_timeout_s: float = 20.0,
        busy_ping_timeout_s: float = 120.0,
        stall_timeout_s: float = 900.0,
        start_timeout_s: float = 60.0,
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
        exit_on_unload_all: bool = True,
        forward_stderr: bool = True,
    ):
        self.python = python or sys.executable
        self.env = env
        self.batch_interval_s = batch_interval_s
        self.ping_interval_s = ping_interval_s
        self.idle_ping_timeout_s = idle_ping_timeout_s
        self.busy_ping_timeout_s = busy_ping_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.exit_on_unload_all = exit_on_unload_all
        self.forward_stderr = forward_stderr
        #: The worker's last stderr lines (tracebacks of crashes end up here).
        self.last_stderr: "collections.deque[str]" = collections.deque(maxlen=50)
        self._budget = int(memory_budget_bytes)
        self._worker: Optional[_Worker] = None
        self._start_lock = threading.Lock()
        self._job_ids = itertools.count(1)
        self._crashes: "collections.deque[float]" = collections.deque()
        self._last_crash: Optional[str] = None
        self._generations = 0
        self._workers_started = 0
        self._totals = collections.Counter()

    def __repr__(self) -> str:
        worker = self._live_worker()
        state = f"pid {worker.pid}" if worker else "no worker running"
        return f"<ProcessRuntime ({state})>"

    # ---- the Runtime interface -------------------------------------------------

    def generate(self, request: GenerationRequest) -> Job:
        return self._submit([request], together=False)[0]

    def generate_together(self, requests: list[GenerationRequest]) -> list[Job]:
        """Jobs that the worker advances together, token by token."""
        return self._submit(list(requests), together=True)

    def _submit(self, requests: list, together: bool) -> list[Job]:
        jobs = [Job(request) for request in requests]
        try:
            payloads = [rpc.encode(request) for request in requests]
        except (TypeError, ValueError, OSError) as error:
            for job in jobs:
                job.emit(
                    Failed(
                        f"This request cannot be sent to the worker process: {error}",
                        user_error=False,
                        error=error,
                    )
                )
            return jobs
        try:
            worker = self._ensure_worker()
        except WorkerError as error:
            for job in jobs:
                job.emit(Failed(str(error), user_error=True, error=error))
            return jobs
        ids = [str(next(self._job_ids)) for _ in jobs]
        for job_id, job in zip(ids, jobs):
            if not worker.add_job(job_id, job):
                message = self._gone_message(worker, job)
                job.emit(Failed(message, user_error=True, error=WorkerError(message)))
        if worker.gone.is_set():
            return jobs

        def answered(pending: _Pending) -> None:
            if pending.error is not None:
                error = pending.error
                user_error = isinstance(error, ModelLoadError)
                for job_id in ids:
                    worker.finish_job(
                        job_id,
                        Failed(
                            str(error)
                            if user_error
                            else f"The worker refused the request: {error}",
                            user_error=user_error,
                            error=error,
                        ),
                    )

        entries = [{"job": job_id, "request": payload} for job_id, payload in zip(ids, payloads)]
        if together:
            worker.request("generate_together", {"jobs": entries}, on_done=answered)
        else:
            worker.request("generate", entries[0], on_done=answered)
        return jobs

    def load(self, spec: ModelSpec) -> ModelInfo:
        info = rpc.decode(self._call("load", {"spec": rpc.encode(spec)}))
        self._crashes.clear()
        return info

    def unload(self, key: Optional[str] = None) -> list[str]:
        worker = self._live_worker()
        if worker is None:
            return []
        removed = list(self._call("unload", {"key": key}, worker=worker))
        if key is None and self.exit_on_unload_all and not worker.busy():
            # All of the worker's memory goes back to the system; the next
            # request starts a fresh worker.
            self._shutdown_worker(worker, timeout=10.0, reason="ended by %mlx unload all")
        return removed

    def models(self) -> list[ModelInfo]:
        worker = self._live_worker()
        if worker is None:
            return []
        return list(rpc.decode(self._call("models", worker=worker, timeout=10.0)))

    def status(self) -> RuntimeStatus:
        worker = self._live_worker()
        if worker is None:
            kind = "worker process (not running; the next request starts one)"
            if self._crash_limit_reached():
                kind = f"worker process (stopped after {len(self._crashes)} crashes; %mlx restart)"
            return RuntimeStatus(
                kind=kind,
                running=False,
                busy=False,
                queued=0,
                current=None,
                lock_held=False,
                memory_budget_bytes=self._budget,
                generations=self._generations,
            )
        kind = f"worker process (pid {worker.pid})"
        try:
            remote = rpc.decode(self._call("status", worker=worker, timeout=10.0))
        except WorkerError:
            return RuntimeStatus(
                kind=kind + ", not answering",
                running=True,
                busy=worker.busy(),
                queued=0,
                current=None,
                lock_held=False,
                memory_budget_bytes=self._budget,
                generations=self._generations,
            )
        return RuntimeStatus(
            kind=kind,
            running=True,
            busy=remote.busy,
            queued=remote.queued,
            current=remote.current,
            lock_held=remote.lock_held,
            models=remote.models,
            memory_budget_bytes=remote.memory_budget_bytes,
            active_memory_bytes=remote.active_memory_bytes,
            cache_memory_bytes=remote.cache_memory_bytes,
            peak_memory_bytes=remote.peak_memory_bytes,
            generations=self._generations,
        )

    def clear_caches(self) -> int:
        worker = self._live_worker()
        if worker is None:
            return 0
        return int(self._call("clear_caches", worker=worker))

    def set_memory_budget(self, budget_bytes: int) -> None:
        self._budget = int(budget_bytes)
        worker = self._live_worker()
        if worker is not None:
            self._call("set_memory_budget", {"bytes": self._budget}, worker=worker)

    def stop(self, timeout: float = 30.0) -> None:
        worker = self._worker
        if worker is not None:
            self._shutdown_worker(worker, timeout=timeout, reason="stopped")

    # ---- process mode only -------------------------------------------------------

    def restart(self, timeout: float = 30.0) -> int:
        """End the worker (cleanly if it answers) and start a new one; returns its pid.

        Also forgets earlier crashes, so a runtime that gave up restarting
        starts again. Jobs still running fail with a one-line message.
        """
        worker = self._worker
        if worker is not None:
            self._shutdown_worker(worker, timeout=timeout, reason="restarted")
        self._crashes.clear()
        worker = self._ensure_worker()
        if not worker.ready.wait(self.start_timeout_s):
            worker.kill(f"did not start within {self.start_timeout_s:.0f} s")
            raise WorkerError(
                f"The mlx_magic worker process did not start within {self.start_timeout_s:.0f} s"
            )
        return worker.pid

    @property
    def pid(self) -> Optional[int]:
        """The running worker's process id, if one runs."""
        worker = self._live_worker()
        return worker.pid if worker else None

    def pipe_stats(self) -> dict:
        """Counts of what crossed the pipes, over every worker so far."""
        totals = collections.Counter(self._totals)
        worker = self._worker
        if worker is not None:
            totals.update(_counts_of(worker))
        totals["workers_started"] = self._workers_started
        return dict(totals)

    # ---- internals -------------------------------------------------------------------

    def _live_worker(self) -> Optional[_Worker]:
        worker = self._worker
        return worker if worker is not None and not worker.gone.is_set() else None

    def _recent_crashes(self) -> int:
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > self.restart_window_s:
            self._crashes.popleft()
        return len(self._crashes)

    def _crash_limit_reached(self) -> bool:
        return self._recent_crashes() >= self.max_restarts

    def _ensure_worker(self) -> _Worker:
        with self._start_lock:
            worker = self._live_worker()
            if worker is not None:
                return worker
            crashes = self._recent_crashes()
            if crashes >= self.max_restarts:
                raise WorkerError(
                    f"The mlx_magic worker process crashed {crashes} times in "
                    f"{self.restart_window_s:.0f} s (last: {self._last_crash}); not starting it "
                    "again: check the model and the free memory, then run %mlx restart"
                )
            if crashes >= 2:
                time.sleep(min(4.0, 0.5 * 2 ** (crashes - 2)))
            try:
                worker = _Worker(self)
            except OSError as error:
                raise WorkerError(
                    f"Could not start the mlx_magic worker process with {self.python}: {error}"
                ) from error
            self._worker = worker
            self._workers_started += 1
            return worker

    def _call(
        self,
        method: str,
        params: Any = None,
        *,
        worker: Optional[_Worker] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        worker = worker or self._ensure_worker()
        pending = worker.request(method, params)
        deadline = None if timeout is None else time.monotonic() + timeout
        # Short waits keep the kernel's interrupt responsive.
        while not pending.done.wait(0.1):
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerError(
                    f"The mlx_magic worker process (pid {worker.pid}) did not "
                    f"answer '{method}' within {timeout:.0f} s"
                )
        if pending.error is not None:
            raise pending.error
        return pending.value

    def _job_ended(self, event) -> None:
        if isinstance(event, Finished):
            self._generations += 1
            # The worker works: earlier crashes are not a crash loop.
            self._crashes.clear()

    def _gone_message(self, worker: _Worker, job: Optional[Job]) -> str:
        if worker.expected_exit is not None:
            return f"The mlx_magic worker process was {worker.expected_exit} before this finished"
        cause = worker.cause or describe_exit(worker.returncode)
        during = " during this generation" if job is not None else ""
        return (
            f"The mlx_magic worker process (pid {worker.pid}) {cause}{during}; "
            "the next cell restarts it"
        )

    def _worker_gone(self, worker: _Worker) -> None:
        """The worker's process ended (or is being killed): fail what waits on it."""
        with worker.lock:
            if worker.gone.is_set():
                return
            worker.gone.set()
        try:
            worker.returncode = worker.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            # Its stdout closed but it lives on: it is of no use any more.
            worker.proc.kill()
            worker.returncode = worker.proc.wait()
        worker.cause = worker.forced_cause or describe_exit(worker.returncode)
        if worker.expected_exit is None:
            self._crashes.append(time.monotonic())
            self._last_crash = worker.cause
        with worker.lock:
            jobs = list(worker.jobs.values())
            worker.jobs.clear()
            pending = list(worker.pending.values())
            worker.pending.clear()
        for job in jobs:
            message = self._gone_message(worker, job)
            job.emit(Failed(message, user_error=True, error=WorkerError(message)))
        for call in pending:
            call.settle(error=WorkerError(self._gone_message(worker, None)))
        worker.outbox.put(None)
        with self._start_lock:
            if self._worker is worker:
                self._totals.update(_counts_of(worker))
                self._worker = None

    def _shutdown_worker(self, worker: _Worker, *, timeout: float, reason: str) -> None:
        """Ask the worker to stop; terminate, then kill it if it does not."""
        started = time.monotonic()
        if worker.expected_exit is None:
            worker.expected_exit = reason
        if not worker.gone.is_set():
            # A worker that answers stops within a token step; one that does
            # not is terminated after at most 10 s.
            grace = min(timeout * 0.8, 10.0)
            pending = worker.request("shutdown", {"timeout": max(1.0, grace * 0.75)})
            pending.done.wait(grace)
        for ask, wait in (
            (None, timeout - (time.monotonic() - started)),
            (worker.proc.terminate, 3.0),
            (worker.proc.kill, 5.0),
        ):
            if ask is not None:
                try:
                    ask()
                except OSError:
                    pass
            try:
                worker.proc.wait(max(0.1, wait))
                break
            except subprocess.TimeoutExpired:
                continue
        self._worker_gone(worker)
        for thread in worker.threads:
            if thread is not threading.current_thread():
                thread.join(2.0)


def _counts_of(worker: _Worker) -> dict:
    return {
        "frames_in": worker.reader.frames,
        "bytes_in": worker.reader.bytes,
        "garbage_in": worker.reader.garbage,
        "frames_out": worker.writer.frames,
        "bytes_out": worker.writer.bytes,
        "event_messages": worker.event_messages,
        "events": worker.events,
        "token_chunks": worker.token_chunks,
    }
