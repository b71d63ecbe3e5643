"""One worker process and the kernel-side threads that talk to it.

:class:`WorkerProcess` starts the worker (``python -m mlx_magic.worker``) and talks
JSON-RPC 2.0 to it (framing: :mod:`mlx_magic.runtime.process.rpc`) over the
child's stdin and stdout; :class:`~mlx_magic.runtime.process.runtime.ProcessRuntime`
owns it and replaces it when it dies. How its process ends (and the words
for that) is :mod:`mlx_magic.runtime.process.exits`.

Threads on the kernel side, per worker: a writer (frames go out in order and
a kernel interrupt can never cut one in half), a reader (answers and events;
a job's batched token chunks are re-emitted one TokenChunk each), a stderr
forwarder (the worker's stderr and stray prints go to the kernel process's
fd 2 — the terminal or the Jupyter server's log — and the last lines are kept
in :attr:`ProcessRuntime.last_stderr`), and a watchdog that every 20 ms

* forwards what callers ask of local jobs (a cancel, "Answer now") to the worker,
* notices a worker that exited (crash, kill, OOM): its jobs get a
  one-line ``Failed(user_error=True)`` naming the exit code or signal,
* pings the worker when it has been quiet for ``ping_interval_s`` and kills
  it if the ping stays unanswered (``idle_ping_timeout_s`` when idle,
  ``busy_ping_timeout_s`` while it works), or if a job or call has seen no
  progress for ``stall_timeout_s`` (long: loading a big model is silent).
Nothing here imports MLX, mlx-lm or mlx-vlm.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import subprocess
import threading
import time
from typing import IO, Any, Callable, Optional, Protocol

from mlx_magic.errors import WorkerError
from mlx_magic.runtime.process import rpc
from mlx_magic.runtime.process.exits import collect_exit, describe_exit, end_process
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import Event, Failed, Finished, TokenChunk

_WATCH_S = 0.02


class WorkerSettings(Protocol):
    """What a worker reads from its owner (a ProcessRuntime) whenever it needs it."""

    ping_interval_s: float
    idle_ping_timeout_s: float
    busy_ping_timeout_s: float
    stall_timeout_s: float
    start_timeout_s: float
    forward_stderr: bool
    last_stderr: collections.deque[str]


class PendingCall:
    """A request sent to the worker, waiting for its answer."""

    def __init__(self, method: str, on_done: Optional[Callable[[PendingCall], None]] = None):
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


class WorkerProcess:
    """One worker process and the kernel-side threads that talk to it.

    Args:
        argv: the worker's command line (``python -m mlx_magic.worker …``).
        env: its environment (default: this process's).
        settings: the owner's timeouts and stderr handling, read when needed.
        on_gone: called (from one of the worker's threads) once the process
            has ended or is being killed.
        on_job_end: called with a job's last event (Finished or Failed) as
            it arrives, before the job sees it.
    """

    def __init__(
        self,
        argv: list[str],
        env: Optional[dict],
        settings: WorkerSettings,
        *,
        on_gone: Callable[[WorkerProcess], None],
        on_job_end: Callable[[Event], None],
    ):
        self.settings = settings
        self.on_gone = on_gone
        self.on_job_end = on_job_end
        env = dict(os.environ if env is None else env)
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
        self.stdin: IO[bytes] = _piped(self.proc.stdin)
        self.stdout: IO[bytes] = _piped(self.proc.stdout)
        self.stderr: IO[bytes] = _piped(self.proc.stderr)
        self.pid = self.proc.pid
        self.started_at = time.monotonic()
        self.ready = threading.Event()
        self.gone = threading.Event()
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.pending: dict[int, PendingCall] = {}
        self.jobs: dict[str, Job] = {}
        self.cancel_sent: set[str] = set()  # job ids whose cancel / "Answer now" went
        self.answer_now_sent: set[str] = set()
        self.outbox: queue.Queue[Optional[dict]] = queue.Queue()
        self.writer = rpc.FrameWriter(self.stdin)
        self.reader = rpc.FrameReader(self.stdout, on_garbage=self._garbage)
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
        self,
        method: str,
        params: Any = None,
        on_done: Optional[Callable[[PendingCall], None]] = None,
    ) -> PendingCall:
        pending = PendingCall(method, on_done)
        with self.lock:
            if self.gone.is_set():
                id_ = None
            else:
                id_ = next(self.ids)
                # New work restarts the stall clock (an idle time before it
                # is no stall).
                self.last_progress_at = time.monotonic()
                self.pending[id_] = pending
        if id_ is None:
            pending.settle(error=WorkerError(self.gone_message()))
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

    def finish_job(self, job_id: str, event: Event) -> None:
        with self.lock:
            job = self.jobs.pop(job_id, None)
        if job is not None:
            job.emit(event)

    def busy(self) -> bool:
        with self.lock:
            return bool(self.jobs) or any(p.method != "ping" for p in self.pending.values())

    # ---- the end --------------------------------------------------------------

    def gone_message(self, *, during_job: bool = False) -> str:
        """The one-line error for what waited on this worker when it ended."""
        if self.expected_exit is not None:
            return f"The mlx_magic worker process was {self.expected_exit} before this finished"
        cause = self.cause or describe_exit(self.returncode)
        during = " during this generation" if during_job else ""
        return (
            f"The mlx_magic worker process (pid {self.pid}) {cause}{during}; "
            "the next cell restarts it"
        )

    def reap(self) -> bool:
        """Mark the worker gone and collect its exit; False if it already was gone."""
        with self.lock:
            if self.gone.is_set():
                return False
            self.gone.set()
        self.returncode = collect_exit(self.proc)
        self.cause = self.forced_cause or describe_exit(self.returncode)
        return True

    def fail_outstanding(self) -> None:
        """Fail the jobs and calls still waiting on a gone worker; stop the writer."""
        with self.lock:
            jobs = list(self.jobs.values())
            self.jobs.clear()
            pending = list(self.pending.values())
            self.pending.clear()
        for job in jobs:
            message = self.gone_message(during_job=True)
            job.emit(Failed(message, user_error=True, error=WorkerError(message)))
        for call in pending:
            call.settle(error=WorkerError(self.gone_message()))
        self.outbox.put(None)

    def kill(self, cause: str) -> None:
        """End a hung worker; its jobs fail with ``cause``."""
        if self.forced_cause is None and self.expected_exit is None:
            self.forced_cause = cause
        try:
            self.proc.kill()
        except OSError:
            pass

    def stop(self, *, timeout: float, reason: str) -> None:
        """Ask the worker to stop; terminate, then kill it if it does not.

        ``reason`` ("stopped", "restarted", …) goes into the message of what
        still waits on it. Returns once the process has ended (or was killed).
        """
        started = time.monotonic()
        if self.expected_exit is None:
            self.expected_exit = reason
        if not self.gone.is_set():
            # A worker that answers stops within a token step; one that does
            # not is terminated after at most 10 s.
            grace = min(timeout * 0.8, 10.0)
            pending = self.request("shutdown", {"timeout": max(1.0, grace * 0.75)})
            pending.done.wait(grace)
        end_process(self.proc, timeout - (time.monotonic() - started))

    def join_threads(self, timeout: float = 2.0) -> None:
        """Wait a little for the worker's threads (not the calling one) to end."""
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def counts(self) -> dict[str, int]:
        """What crossed this worker's pipes so far."""
        return {
            "frames_in": self.reader.frames,
            "bytes_in": self.reader.bytes,
            "garbage_in": self.reader.garbage,
            "frames_out": self.writer.frames,
            "bytes_out": self.writer.bytes,
            "event_messages": self.event_messages,
            "events": self.events,
            "token_chunks": self.token_chunks,
        }

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
            self.stdin.close()
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
        self.on_gone(self)

    def _handle(self, message: dict) -> None:
        kind = rpc.kind_of(message)
        if kind == "response":
            id_ = message.get("id")
            if not isinstance(id_, int):
                return  # no answer to a request of ours (their ids are ints)
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
                    self.answer_now_sent.discard(job_id)
                self.on_job_end(event)
                job.emit(event)
                return
            job.emit(event)

    def _stderr_loop(self) -> None:
        stream = self.stderr
        try:
            for line in iter(stream.readline, b""):
                self.settings.last_stderr.append(line.decode("utf-8", "replace").rstrip("\n"))
                if self.settings.forward_stderr:
                    try:
                        os.write(2, line)
                    except OSError:
                        pass
        except (OSError, ValueError):
            pass

    def _watch_loop(self) -> None:
        while not self.gone.wait(_WATCH_S):
            if self.proc.poll() is not None:
                self.on_gone(self)
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
            to_answer = [
                job_id
                for job_id, job in self.jobs.items()
                if job.thinking_end_requested and job_id not in self.answer_now_sent
            ]
            self.answer_now_sent.update(to_answer)
        for job_id in to_cancel:
            self.send(rpc.notification("cancel", {"job": job_id}))
        for job_id in to_answer:
            self.send(rpc.notification("end_thinking", {"job": job_id}))

    def _check_liveness(self, now: float) -> None:
        settings = self.settings
        if not self.ready.is_set():
            if now - self.started_at > settings.start_timeout_s:
                self.kill(f"did not start within {settings.start_timeout_s:.0f} s and was ended")
            return
        busy = self.busy()
        if busy and now - self.last_progress_at > settings.stall_timeout_s:
            self.kill(f"made no progress for {settings.stall_timeout_s:.0f} s and was ended")
            return
        with self.lock:
            ping = self.ping
        if ping is None:
            if now - self.last_frame_at >= settings.ping_interval_s:
                id_ = next(self.ids)
                with self.lock:
                    self.pending[id_] = PendingCall("ping")
                    self.ping = (id_, now)
                self.send(rpc.request(id_, "ping"))
            return
        limit = settings.busy_ping_timeout_s if busy else settings.idle_ping_timeout_s
        if now - ping[1] > limit:
            self.kill(f"stopped answering (no reply to a ping in {limit:.0f} s) and was ended")

    def _garbage(self, what: str) -> None:
        if self.settings.forward_stderr:
            try:
                os.write(2, f"[mlx_magic] skipped stray worker output: {what}\n".encode())
            except OSError:
                pass


def _piped(stream: Optional[IO[bytes]]) -> IO[bytes]:
    """A pipe of a child started with ``subprocess.PIPE`` (never ``None`` then)."""
    assert stream is not None
    return stream
