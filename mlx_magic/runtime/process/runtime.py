"""The runtime in a child process: MLX never enters the kernel.

:class:`ProcessRuntime` serves the :class:`~mlx_magic.runtime.interface.Runtime`
interface by talking JSON-RPC 2.0 (framing: :mod:`mlx_magic.runtime.process.rpc`) to
``python -m mlx_magic.worker`` (whose server is :mod:`mlx_magic.runtime.process.server`)
over the child's stdin and stdout. The worker
runs a :class:`~mlx_magic.runtime.thread.ThreadRuntime`, so generations behave as in
thread mode; a crash in MLX (a segfault, an abort, the out-of-memory killer)
takes down the worker, not the kernel.

The child process, the kernel-side threads that talk to it and its watchdog
(pings, stalls, cancels) are :class:`~mlx_magic.runtime.process.worker_process.WorkerProcess`;
this module starts workers, routes requests and jobs to the current one and
keeps the crash and restart accounting.

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
import sys
import threading
import time
from typing import Any, Optional

from mlx_magic.errors import ModelLoadError, WorkerError
from mlx_magic.runtime.interface import Inspection, Runtime
from mlx_magic.runtime.process import rpc
from mlx_magic.runtime.process.exits import describe_exit
from mlx_magic.runtime.process.worker_process import PendingCall, WorkerProcess
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import (
    Event,
    Failed,
    Finished,
    GenerationRequest,
    ModelInfo,
    ModelSpec,
    RuntimeStatus,
)

__all__ = ["WORKER_MODULE", "ProcessRuntime", "describe_exit"]

WORKER_MODULE = "mlx_magic.worker"


class ProcessRuntime(Runtime):
    """Serves the runtime interface from a child process (``python -m mlx_magic.runtime.process.server``).

    The worker starts with the first request (or :meth:`restart`) and is
    replaced after it dies. See the module docstring for the restart policy,
    and :mod:`mlx_magic.runtime.process.worker_process` for the threads and
    the watchdog.

    Args:
        memory_budget_bytes: the warm-model budget (kept across restarts).
        python: the interpreter to run the worker with.
        env: the worker's environment (default: this process's).
        batch_interval_s: the longest a token waits in the worker before it
            is sent (tokens are sent 4–512 at a time depending on the rate:
            :mod:`mlx_magic.vocabulary.token_buffer`).
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
        self._worker: Optional[WorkerProcess] = None
        self._start_lock = threading.Lock()
        self._job_ids = itertools.count(1)
        self._crashes: "collections.deque[float]" = collections.deque()
        self._last_crash: Optional[str] = None
        self._generations = 0
        self._workers_started = 0
        self._totals: collections.Counter[str] = collections.Counter()

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
                message = worker.gone_message(during_job=True)
                job.emit(Failed(message, user_error=True, error=WorkerError(message)))
        if worker.gone.is_set():
            return jobs

        def answered(pending: PendingCall) -> None:
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

    def inspect(self, asked: Inspection) -> object:
        # The worker's one line (a family it cannot read, a changed prompt)
        # comes back as the same UserError.
        return rpc.decode(self._call("inspect", {"asked": rpc.encode(asked)}))

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
            memory_log=remote.memory_log,
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
            totals.update(worker.counts())
        totals["workers_started"] = self._workers_started
        return dict(totals)

    # ---- internals -------------------------------------------------------------------

    def _live_worker(self) -> Optional[WorkerProcess]:
        worker = self._worker
        return worker if worker is not None and not worker.gone.is_set() else None

    def _recent_crashes(self) -> int:
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > self.restart_window_s:
            self._crashes.popleft()
        return len(self._crashes)

    def _crash_limit_reached(self) -> bool:
        return self._recent_crashes() >= self.max_restarts

    def _ensure_worker(self) -> WorkerProcess:
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
                worker = WorkerProcess(
                    self._worker_command(),
                    self.env,
                    self,
                    on_gone=self._worker_gone,
                    on_job_end=self._job_ended,
                )
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
        worker: Optional[WorkerProcess] = None,
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

    def _worker_command(self) -> list[str]:
        """The command line of a new worker (``python -m mlx_magic.worker …``)."""
        return [
            self.python,
            "-m",
            WORKER_MODULE,
            "--memory-budget-bytes",
            str(self._budget),
            "--batch-interval-s",
            repr(self.batch_interval_s),
        ]

    def _job_ended(self, event: Event) -> None:
        if isinstance(event, Finished):
            self._generations += 1
            # The worker works: earlier crashes are not a crash loop.
            self._crashes.clear()

    def _worker_gone(self, worker: WorkerProcess) -> None:
        """The worker's process ended (or is being killed): fail what waits on it."""
        if not worker.reap():
            return
        if worker.expected_exit is None:
            self._crashes.append(time.monotonic())
            self._last_crash = worker.cause
        worker.fail_outstanding()
        with self._start_lock:
            if self._worker is worker:
                self._totals.update(worker.counts())
                self._worker = None

    def _shutdown_worker(self, worker: WorkerProcess, *, timeout: float, reason: str) -> None:
        """Ask the worker to stop; terminate, then kill it if it does not."""
        worker.stop(timeout=timeout, reason=reason)
        self._worker_gone(worker)
        worker.join_threads()
