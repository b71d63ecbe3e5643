"""The worker process of :class:`~mlx_magic.runtime.process.runtime.ProcessRuntime`.

Run as ``python -m mlx_magic.worker [--memory-budget-bytes N]
[--batch-interval-s S]``. It serves the runtime interface as JSON-RPC 2.0
over its stdin and stdout, with the framing of :mod:`mlx_magic.runtime.process.rpc`, and
does the work with a :class:`~mlx_magic.runtime.thread.ThreadRuntime` (the MLX
owner thread lives in here, so behaviour matches thread mode).

Before anything else is imported (:mod:`mlx_magic.worker`), the protocol moves to private duplicates
of file descriptors 0 and 1; fd 0 then reads ``/dev/null`` and fd 1 (so
``print``, warnings written to stdout, and C libraries) goes to stderr, which
the kernel forwards to its own stderr. Nothing but the protocol can reach the
pipe.

Methods (requests, answered with a result or a JSON-RPC error):

* ``ping`` → ``{"pid"}``; ``status`` → RuntimeStatus; ``models`` → [ModelInfo]
* ``load {spec}`` → ModelInfo (error code -32001 for a ModelLoadError)
* ``inspect {asked}`` → a LensGrid, AttentionMap, Segmentation or Embeddings (for a
  Lens-, Attention-, Segment- or EmbedRequest)
* ``unload {key|null}`` → [keys]; ``clear_caches`` → int;
  ``set_memory_budget {bytes}`` → null
* ``generate {job, request}`` → ``{"job"}`` at once; the job's events follow
  as ``events`` notifications ``{job, events: [...]}``
* ``generate_together {jobs: [{job, request}, ...]}`` → ``{"jobs"}``: the
  jobs advance together, token by token (models side by side)
* ``cancel {job}`` → bool (also accepted as a notification)
* ``end_thinking {job}`` → bool: "Answer now" (also accepted as a notification)
* ``shutdown {timeout}`` → null, then the process exits

Notifications sent by the worker: ``ready {pid, python}`` once at start, and
``events``. Token chunks are batched per job (mlx_magic.vocabulary.token_buffer.TokenBuffer:
4–512 tokens depending on the rate, and never held longer than the batch
interval; the first text of a job goes out at once), so a fast model sends a
few messages per second instead of one per token. The kernel re-emits every
chunk as its own TokenChunk, so the events are the same as in thread mode.

Test hooks (environment variable ``MLX_MAGIC_WORKER_TEST_HOOKS``, a comma
list): ``garbage`` writes junk to stdout with ``print`` and ``os.write(1, …)``
and raw junk onto the protocol pipe with every message of tokens;
``debug`` enables the ``debug.*`` methods (``debug.hang``, ``debug.exit
{code}``, ``debug.signal {signal}``, ``debug.echo {value}``).
"""

import argparse
import io
import os
import signal
import sys
import threading
import time
from typing import IO, Any, Callable, Iterable, Literal, NoReturn, Optional, TypeVar, overload

from mlx_magic.errors import ParamsError
from mlx_magic.runtime.interface import INSPECTIONS
from mlx_magic.runtime.process import rpc
from mlx_magic.units import gib_to_bytes
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.machine import default_memory_budget_gb
from mlx_magic.vocabulary.token_buffer import TokenBuffer
from mlx_magic.vocabulary.values import Failed, Finished, GenerationRequest, ModelSpec, TokenChunk

HOOKS_VARIABLE = "MLX_MAGIC_WORKER_TEST_HOOKS"
DEFAULT_BATCH_INTERVAL_S = 0.2

# Requests that may wait for the MLX owner thread run on their own thread,
# so that pings and cancels are answered meanwhile.
_BLOCKING = {"load", "inspect", "unload", "clear_caches", "set_memory_budget"}


_T = TypeVar("_T")


@overload
def _param(params: Any, name: str, kinds: type[_T], *, optional: Literal[False] = ...) -> _T: ...


@overload
def _param(params: Any, name: str, kinds: type[_T], *, optional: bool) -> Optional[_T]: ...


def _param(params: Any, name: str, kinds: type[_T], *, optional: bool = False) -> Optional[_T]:
    if not isinstance(params, dict) or (name not in params and not optional):
        raise ParamsError(f"missing parameter {name!r}")
    value = params.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kinds):
        raise ParamsError(f"parameter {name!r} has the wrong type")
    return value


def _request_of(params: Any) -> GenerationRequest:
    try:
        request = rpc.decode(_param(params, "request", dict))
    except (ValueError, KeyError, TypeError) as error:
        raise ParamsError(f"not a generation request: {error}") from None
    if not isinstance(request, GenerationRequest):
        raise ParamsError("not a generation request")
    return request


class WorkerServer:
    """Answers the kernel's requests with a ThreadRuntime.

    Args:
        reader_stream: binary stream the kernel's frames come from.
        writer_stream: binary stream frames go to.
        memory_budget_bytes: the warm-model budget.
        batch_interval_s: the longest a token waits in the worker before it is sent.
        hooks: test hooks (see the module docstring).
    """

    def __init__(
        self,
        reader_stream: IO[bytes],
        writer_stream: IO[bytes],
        *,
        memory_budget_bytes: int,
        batch_interval_s: float = DEFAULT_BATCH_INTERVAL_S,
        hooks: Iterable[str] = frozenset(),
    ) -> None:
        from mlx_magic.runtime.thread import ThreadRuntime

        self.reader = rpc.FrameReader(reader_stream, on_garbage=self._log_garbage)
        self.writer = rpc.FrameWriter(writer_stream)
        self.runtime = ThreadRuntime(memory_budget_bytes)
        self.batch_interval_s = batch_interval_s
        self.hooks = frozenset(hooks)
        self.jobs: dict[str, Job] = {}
        self.pumps: dict[str, threading.Thread] = {}
        self.lock = threading.Lock()
        self.shutting_down = False
        self.handlers: dict[str, Callable[[Any], Any]] = {
            "ping": self._ping,
            "status": lambda params: rpc.encode(self.runtime.status()),
            "models": lambda params: rpc.encode(self.runtime.models()),
            "generate": self._generate,
            "generate_together": self._generate_together,
            "cancel": self._cancel,
            "end_thinking": self._end_thinking,
            "load": self._load,
            "inspect": self._inspect,
            "unload": self._unload,
            "clear_caches": lambda params: self.runtime.clear_caches(),
            "set_memory_budget": self._set_memory_budget,
            "shutdown": self._shutdown,
        }
        if "debug" in self.hooks:
            self.handlers.update(
                {
                    "debug.hang": self._debug_hang,
                    "debug.exit": lambda params: os._exit(_param(params, "code", int)),
                    "debug.signal": self._debug_signal,
                    "debug.echo": lambda params: rpc.encode(rpc.decode(params.get("value"))),
                }
            )

    # ---- main loop --------------------------------------------------------

    def serve(self) -> int:
        """Answer requests until ``shutdown`` or the end of the input; the exit code."""
        self.send(
            rpc.notification(
                "ready",
                {
                    "pid": os.getpid(),
                    "python": sys.version.split()[0],
                },
            )
        )
        while not self.shutting_down:
            message = self.reader.read()
            if message is None:
                # The kernel is gone: nobody will read the answers.
                self.runtime.stop(timeout=5.0)
                return 0
            self.dispatch(message)
        return 0

    def send(self, message: dict) -> None:
        try:
            self.writer.send(message)
        except (OSError, ValueError):
            # The kernel closed the pipe; the main loop sees the end of input.
            pass

    def dispatch(self, message: dict) -> None:
        kind = rpc.kind_of(message)
        has_id = "id" in message
        if kind == "response":
            return  # the worker sends no requests
        if kind == "invalid":
            if has_id:
                self.send(
                    rpc.error(message.get("id"), rpc.INVALID_REQUEST, "not a JSON-RPC 2.0 request")
                )
            else:
                self._log(f"ignored an invalid message: {str(message)[:80]}")
            return
        method = message["method"]
        handler = self.handlers.get(method)
        if handler is None:
            if has_id:
                self.send(rpc.error(message["id"], rpc.METHOD_NOT_FOUND, f"no method {method!r}"))
            return
        args = (handler, message.get("id"), message.get("params"), has_id)
        if method in _BLOCKING:
            threading.Thread(
                target=self._answer, args=args, name=f"worker-{method}", daemon=True
            ).start()
        else:
            self._answer(*args)

    def _answer(self, handler: Callable[[Any], Any], id_: Any, params: Any, has_id: bool) -> None:
        try:
            value = handler(params)
        except ParamsError as error:
            reply = rpc.error(id_, rpc.INVALID_PARAMS, str(error))
        except Exception as error:  # handed back to the kernel as a value
            reply = rpc.error_for_exception(id_, error)
        else:
            reply = rpc.result(id_, value)
        if has_id:
            self.send(reply)

    # ---- methods ----------------------------------------------------------

    def _ping(self, params: Any) -> dict[str, int]:
        return {"pid": os.getpid()}

    def _generate(self, params: Any) -> dict[str, str]:
        job_id = _param(params, "job", str)
        job = self.runtime.generate(_request_of(params))
        self._follow(job_id, job)
        return {"job": job_id}

    def _generate_together(self, params: Any) -> dict[str, list[str]]:
        entries = _param(params, "jobs", list)
        if not entries:
            raise ParamsError("no jobs")
        ids = [_param(entry, "job", str) for entry in entries]
        jobs = self.runtime.generate_together([_request_of(entry) for entry in entries])
        for job_id, job in zip(ids, jobs):
            self._follow(job_id, job)
        return {"jobs": ids}

    def _follow(self, job_id: str, job: Job) -> None:
        pump = threading.Thread(
            target=self._pump, args=(job_id, job), name=f"worker-pump-{job_id}", daemon=True
        )
        with self.lock:
            self.jobs[job_id] = job
            self.pumps[job_id] = pump
        pump.start()

    def _cancel(self, params: Any) -> bool:
        with self.lock:
            job = self.jobs.get(_param(params, "job", str))
        if job is None:
            return False
        job.cancel()
        return True

    def _end_thinking(self, params: Any) -> bool:
        """ "Answer now" for a job: its thinking block is closed."""
        with self.lock:
            job = self.jobs.get(_param(params, "job", str))
        if job is None:
            return False
        job.end_thinking()
        return True

    def _load(self, params: Any) -> Any:
        spec = rpc.decode(_param(params, "spec", dict))
        if not isinstance(spec, ModelSpec):
            raise ParamsError("not a model spec")
        return rpc.encode(self.runtime.load(spec))

    def _inspect(self, params: Any) -> Any:
        asked = rpc.decode(_param(params, "asked", dict))
        if not isinstance(asked, INSPECTIONS):
            raise ParamsError("not a lens, attention, segment or embed request")
        return rpc.encode(self.runtime.inspect(asked))

    def _unload(self, params: Any) -> list[str]:
        return self.runtime.unload(_param(params, "key", str, optional=True))

    def _set_memory_budget(self, params: Any) -> None:
        self.runtime.set_memory_budget(_param(params, "bytes", int))
        return None

    def _shutdown(self, params: Any) -> None:
        timeout = 10.0
        if isinstance(params, dict) and isinstance(params.get("timeout"), (int, float)):
            timeout = float(params["timeout"])
        started = time.monotonic()
        self.runtime.stop(timeout=timeout)
        # Let every job's last events out before the answer.
        with self.lock:
            pumps = list(self.pumps.values())
        for pump in pumps:
            pump.join(max(0.1, timeout - (time.monotonic() - started)))
        self.shutting_down = True
        return None

    def _debug_hang(self, params: Any) -> NoReturn:
        while True:  # the main loop stops reading: pings go unanswered
            time.sleep(3600)

    def _debug_signal(self, params: Any) -> None:
        name = _param(params, "signal", str)
        os.kill(os.getpid(), getattr(signal, name))
        time.sleep(5)
        return None

    # ---- streaming a job's events -------------------------------------------

    def _pump(self, job_id: str, job: Job) -> None:
        """Forward ``job``'s events, batching token chunks."""
        buffer = TokenBuffer(self.batch_interval_s, min_tokens=4)
        held: list = []
        text_sent = False
        try:
            while True:
                wait = buffer.seconds_until_due()
                event = job.next_event(1.0 if wait is None else wait)
                if event is None:
                    if buffer.due() is not None:
                        self._send_events(job_id, held)
                        held = []
                    continue
                held.append(event)
                if isinstance(event, TokenChunk):
                    batch_done = buffer.add(event.text, max(1, len(event.token_ids))) is not None
                    if batch_done or (event.text and not text_sent):
                        buffer.flush()
                        text_sent = text_sent or any(chunk.text for chunk in held)
                        self._send_events(job_id, held)
                        held = []
                        if text_sent:
                            job.first_text_shown.set()
                    continue
                buffer.flush()
                self._send_events(job_id, held)
                held = []
                if isinstance(event, (Finished, Failed)):
                    return
        except Exception as error:  # never leave the kernel waiting
            self._send_events(
                job_id,
                held
                + [
                    Failed(
                        f"The worker could not send this job's events: {type(error).__name__}: {error}",
                        user_error=False,
                        error=error,
                    )
                ],
            )
        finally:
            with self.lock:
                self.jobs.pop(job_id, None)
                self.pumps.pop(job_id, None)

    def _send_events(self, job_id: str, events: list) -> None:
        if not events:
            return
        encoded = []
        for event in events:
            try:
                encoded.append(rpc.encode(event))
            except TypeError as error:  # e.g. an exception that cannot be sent
                encoded.append(
                    rpc.encode(
                        Failed(
                            getattr(event, "message", str(event)),
                            user_error=False,
                            error=RuntimeError(str(error)),
                        )
                    )
                )
        if "garbage" in self.hooks and any(isinstance(e, TokenChunk) for e in events):
            print("garbage", flush=True)
            os.write(1, b"junk")
            self._send_raw(b"junk without a newline, then a frame: ")
        self.send(rpc.notification("events", {"job": job_id, "events": encoded}))

    def _send_raw(self, data: bytes) -> None:
        """Test hook: raw bytes onto the protocol pipe, between frames."""
        writer = self.writer
        with writer._lock:
            writer._stream.write(data)
            writer._stream.flush()

    # ---- logging ------------------------------------------------------------

    def _log_garbage(self, what: str) -> None:
        self._log(f"skipped input that is not a frame: {what}")

    @staticmethod
    def _log(text: str) -> None:
        try:
            sys.stderr.write(f"[mlx_magic worker {os.getpid()}] {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def main(fds: tuple[int, int], argv: Optional[list] = None) -> int:
    """Serve requests over the protocol's file descriptors ``fds`` (claimed by
    :func:`mlx_magic.worker.claim_stdio` before anything else was imported)."""
    parser = argparse.ArgumentParser(prog="python -m mlx_magic.worker")
    parser.add_argument(
        "--memory-budget-bytes", type=int, default=gib_to_bytes(default_memory_budget_gb())
    )
    parser.add_argument("--batch-interval-s", type=float, default=DEFAULT_BATCH_INTERVAL_S)
    args = parser.parse_args(argv)
    protocol_in, protocol_out = fds

    import faulthandler

    faulthandler.enable()  # a crash leaves a Python traceback on stderr
    # The kernel's interrupt is for the kernel; a terminal's Ctrl-C reaches
    # the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Only a text stream over a buffer can change its buffering (a stand-in
    # set by a test, say, keeps its own).
    if isinstance(sys.stdout, io.TextIOWrapper):
        try:
            sys.stdout.reconfigure(line_buffering=True)
        except ValueError:
            pass
    hooks = {h.strip() for h in os.environ.get(HOOKS_VARIABLE, "").split(",") if h.strip()}
    server = WorkerServer(
        os.fdopen(protocol_in, "rb"),
        os.fdopen(protocol_out, "wb"),
        memory_budget_bytes=args.memory_budget_bytes,
        batch_interval_s=args.batch_interval_s,
        hooks=hooks,
    )
    code = server.serve()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # Skip interpreter teardown: MLX's threads and caches need none, and a
    # quick, certain exit is what the kernel waits for.
    os._exit(code)
