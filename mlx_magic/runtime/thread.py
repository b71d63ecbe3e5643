"""The runtime: one owner thread that does all MLX work for the magics.

MLX streams are thread-local, so models are loaded, used and freed on the
same thread. Requests arrive through a queue; every generation answers with
a :class:`~mlx_magic.vocabulary.job.Job` whose events (tokens, results and
exceptions, all as values) the caller reads on its own thread.

:class:`ThreadRuntime` serves :class:`~mlx_magic.runtime.interface.Runtime`
in the kernel process.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from mlx_magic.engine.model_cache import WarmModel, WarmModelCache
from mlx_magic.errors import GenerationInterrupted, ModelLoadError, UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.runtime.inbox import STOP, Call, Together, refuse
from mlx_magic.runtime.interface import Runtime
from mlx_magic.runtime.owner_threads import Serving, serve_on_an_owner_thread
from mlx_magic.runtime.runs import Run
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import (
    Failed,
    GenerationRequest,
    ModelInfo,
    ModelLoading,
    ModelReady,
    ModelSpec,
    Progress,
    RuntimeStatus,
)

if TYPE_CHECKING:
    from mlx_magic.runtime.interface import Inspection
    from mlx_magic.vocabulary.values import Finished, GenerationStats

THREAD_NAME = "mlx_magic-runtime"
#: How many generations ``%mlx memory`` remembers (a sample is ~100 bytes).
MEMORY_LOG_LENGTH = 1000


class ThreadRuntime(Runtime):
    """Serves the runtime interface from one background thread in this process.

    The thread (:mod:`~mlx_magic.runtime.owner_threads`) is taken on the first
    request and given back, parked, by :meth:`stop`, so the next runtime (after
    ``%reload_ext``) reuses it and its memory. It is a daemon, so a kernel that
    exits without unloading the extension is not held up by it.
    """

    def __init__(self, memory_budget_bytes: int):
        from mlx_magic.engine.loading import release_warm_model

        self._inbox: "queue.Queue[Any]" = queue.Queue()
        self._serving: Optional[Serving] = None
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._cache = WarmModelCache(memory_budget_bytes, release=release_warm_model)
        #: Every job being generated now (a batch has many; the first is what
        #: status shows): stop() cancels them all.
        self._running: list[Job] = []
        self._stopping = threading.Event()
        self._generations = 0
        self._memory = {"active": 0, "cache": 0, "peak": 0}
        self._memory_log: collections.deque = collections.deque(maxlen=MEMORY_LOG_LENGTH)
        self._model_infos: tuple = ()

    # ---- interface, called from the kernel thread ----------------------

    def generate(self, request: GenerationRequest) -> Job:
        job = Job(request)
        self._say_what_it_waits_for([job])
        self._submit(job)
        return job

    def generate_together(self, requests: list[GenerationRequest]) -> list[Job]:
        jobs = [Job(request) for request in requests]
        self._say_what_it_waits_for(jobs)
        self._submit(Together(jobs))
        return jobs

    def _say_what_it_waits_for(self, jobs: list[Job]) -> None:
        # Jobs run one at a time: a cell behind a busy runtime says so
        # instead of waiting in silence.
        with self._state_lock:
            current = self._running[0] if self._running else None
        # A job that has sent its last event is done, even before the owner
        # thread has cleared it.
        busy = current is not None and not current.ended.is_set()
        ahead = self._inbox.qsize() + (1 if busy else 0)
        if ahead:
            message = "Waiting for the runtime: it is answering another cell" + (
                f" ({ahead} generations ahead)" if ahead > 1 else ""
            )
            for job in jobs:
                job.emit(Progress(message))

    def load(self, spec: ModelSpec) -> ModelInfo:
        def load_now() -> ModelInfo:
            entry, _ = self._warm(spec)
            return entry.info()

        return self._call(load_now)

    def inspect(self, asked: Inspection) -> object:
        from mlx_magic.engine.answer_attention import read_answer

        return self._call(lambda: read_answer(self._warm(asked.model)[0], asked))

    def unload(self, key: Optional[str] = None) -> list[str]:
        if self._serving is None:
            return []

        def unload_now() -> list[str]:
            if key is None:
                removed = self._cache.clear()
            else:
                removed = [key] if self._cache.remove(key) else []
            self._after_change()
            return removed

        return self._call(unload_now)

    def models(self) -> list[ModelInfo]:
        with self._state_lock:
            return list(self._model_infos)

    def status(self) -> RuntimeStatus:
        running = self._serving is not None and self._serving.running
        # Probe the lock without waiting: a held lock means MLX work is
        # running right now (ours or user code's).
        lock_free = gpu_lock.acquire(blocking=False)
        if lock_free:
            gpu_lock.release()
        with self._state_lock:
            current = self._running[0] if self._running else None
            return RuntimeStatus(
                kind="thread in the kernel",
                running=running,
                busy=current is not None,
                queued=self._inbox.qsize(),
                current=current.request.model.name if current else None,
                lock_held=not lock_free,
                models=self._model_infos,
                memory_budget_bytes=self._cache.budget_bytes,
                active_memory_bytes=self._memory["active"],
                cache_memory_bytes=self._memory["cache"],
                peak_memory_bytes=self._memory["peak"],
                generations=self._generations,
                memory_log=tuple(self._memory_log),
            )

    def clear_caches(self) -> int:
        if self._serving is None:
            return 0

        def clear_now() -> int:
            from mlx_magic.engine.memory import release_cached_buffers

            dropped = 0
            for entry in self._cache:
                for cache in entry.caches.present():
                    dropped += len(cache)
                    cache.clear()
            release_cached_buffers()
            self._after_change()
            return dropped

        return self._call(clear_now)

    def set_memory_budget(self, budget_bytes: int) -> None:
        if self._serving is None:
            self._cache.budget_bytes = budget_bytes
            return

        def shrink() -> list[str]:
            self._cache.budget_bytes = budget_bytes
            evicted = self._cache.shrink_to_budget()
            self._after_change()
            return evicted

        self._call(shrink)

    def stop(self, timeout: float = 30.0) -> None:
        serving = self._serving
        if serving is None:
            return
        # Everything queued ahead of the stop is refused rather than run, and
        # everything running is cancelled: a --map run's batches must not go on.
        with self._start_lock:  # no request slips in behind the stop
            self._stopping.set()
            self._inbox.put(STOP)
        with self._state_lock:
            for job in self._running:
                job.cancel()
        # The owner thread frees the models, then parks for the next runtime.
        serving.done.wait(timeout)
        self._serving = None

    # ---- owner thread ----------------------------------------------------

    def _submit(self, item: Any) -> None:
        """Queue ``item`` for the owner thread, starting it on first use; a
        stopped runtime refuses it (a background run that outlived its
        extension must not start an owner thread no one will stop)."""
        with self._start_lock:
            if self._stopping.is_set():
                refuse(item)
                return
            if self._serving is None or not self._serving.running:
                self._serving = serve_on_an_owner_thread(self._serve, THREAD_NAME)
            self._inbox.put(item)

    def _call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the owner thread, after what is ahead of it.

        Raises:
            GenerationInterrupted: the caller was interrupted while waiting;
                the call is withdrawn unless it had begun (the message says which).
        """
        call = Call(function)
        self._submit(call)
        try:
            ok, value = call.reply.get()
        except KeyboardInterrupt as interrupt:
            if call.withdraw():
                raise GenerationInterrupted(
                    "stopped waiting for the runtime; the command was not run"
                ) from interrupt
            raise GenerationInterrupted(
                "stopped waiting for the runtime; the command had begun and finishes there"
            ) from interrupt
        if ok:
            return value
        raise value

    def _serve(self) -> None:
        stopping = False
        while True:
            # Not kept while waiting for the next one: a --map run's Together
            # held every job of the run (10,000 items: ~100 MB) until then.
            item = None
            item = self._inbox.get()
            if item is STOP:
                stopping = True
                break
            if self._stopping.is_set():
                refuse(item)
                continue
            if isinstance(item, Call):
                if not item.begin():
                    continue  # its caller stopped waiting for it
                try:
                    item.reply.put((True, item.function()))
                except BaseException as error:  # handed back to the caller
                    item.reply.put((False, error))
            elif isinstance(item, Together):
                self._run_together(item.jobs)
            else:
                self._run_together([item])
        if stopping:
            self._drain_after_stop()
            self._cache.clear()
            self._after_change()

    def _drain_after_stop(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            refuse(item)

    def _run_together(self, jobs: list[Job]) -> None:
        """Start the jobs, then step them until all have ended: one batch run
        for jobs of one model that can share forward passes (continuous
        batching, :mod:`~mlx_magic.engine.batching`), else one run per job,
        taking turns token by token. The one scheduler loop of the runtime."""
        with self._state_lock:
            self._running = list(jobs)
        try:
            self._step_until_done(self._start_runs(jobs))
        finally:
            with self._state_lock:
                self._running = []
            self._after_change()

    def _start_runs(self, jobs: list[Job]) -> list[Run]:
        """What to step for ``jobs``: a job that cannot start has its last event already."""
        from mlx_magic.engine.batching import can_batch

        if can_batch(jobs):
            batch = self._start_batch(jobs)
            return [batch] if batch is not None else []
        runs = []
        in_use = frozenset(job.request.model.key for job in jobs)
        for job in jobs:
            run = self._start(job, together=len(jobs) > 1, keep=in_use)
            if run is not None:
                runs.append(run)
        return runs

    def _step_until_done(self, runs: list[Run]) -> None:
        while runs:
            for run in list(runs):
                try:
                    if run.step():
                        continue
                except Exception as error:  # a bug or a crash in MLX: handed back
                    for job in run.jobs:
                        if not job.ended.is_set():
                            job.emit(
                                Failed(
                                    f"{type(error).__name__}: {error}",
                                    user_error=False,
                                    error=error,
                                )
                            )
                runs.remove(run)
                run.done()

    def _finished(self, run: Run) -> None:
        """Count a run's finished generations and sample MLX's memory after
        them (after a batch, once: it has no one answer to measure)."""
        self._generations += len(run.finished)
        stats = run.finished[0].stats if len(run.jobs) == 1 and run.finished else None
        self._log_memory(run.ready.model, stats)

    def _start_batch(self, jobs: list[Job]) -> Optional[Run]:
        """The batch run for ``jobs`` (mlx-lm's or mlx-vlm's BatchGenerator);
        ``None`` when none is left to run (each has had its last event)."""
        from mlx_magic.engine.batching import start_batch

        live = [job for job in jobs if not job.cancelled]
        for job in jobs:
            if job.cancelled:
                job.emit(_cancelled_before_start())
        if not live:
            return None
        try:
            entry, warm = self._warm(live[0].request.model, live[0])
        except UserError as error:
            for job in live:
                job.emit(Failed(str(error), user_error=True, error=error))
            return None
        ready = ModelReady(model=entry.name, warm=warm, load_s=0.0 if warm else entry.load_s)
        for job in live:
            job.emit(ready)
        try:
            batch = start_batch(entry, live, budget_bytes=self._cache.budget_bytes)
        except Exception as error:  # a bug or a crash in MLX: handed back to every job
            for job in live:
                job.emit(Failed(f"{type(error).__name__}: {error}", user_error=False, error=error))
            return None
        return Run(live, batch.steps(), ready, done=self._finished)

    def _start(self, job: Job, together: bool, keep: frozenset = frozenset()) -> Optional[Run]:
        """Load the job's model and prepare its generation; ``None`` if it
        already ended (cancelled or failed, with its last event emitted)."""
        from mlx_magic.engine.text_generation import start_text
        from mlx_magic.engine.vision_generation import start_vision

        try:
            if job.cancelled:
                job.emit(_cancelled_before_start())
                return None
            entry, warm = self._warm(job.request.model, job, keep)
            ready = ModelReady(model=entry.name, warm=warm, load_s=0.0 if warm else entry.load_s)
            job.emit(ready)
            if job.request.images and entry.kind != "vision":
                raise ModelLoadError(
                    f"'{entry.name}' is a text model and cannot see images: pass a vision "
                    "model with --model or set MLXMagics.default_vision_model"
                )
            if entry.kind == "vision":
                pending = start_vision(
                    entry, job, started=time.perf_counter(), per_step_seed=together
                )
            else:
                draft = None
                if job.request.draft is not None:  # --draft: both stay warm together
                    pair = keep | {job.request.model.key, job.request.draft.key}
                    draft, _ = self._warm(job.request.draft, job, frozenset(pair))
                pending = start_text(
                    entry,
                    job,
                    # A long prompt's progress, shown while it is read.
                    report=job.emit,
                    started=time.perf_counter(),
                    per_step_seed=together,
                    draft=draft,
                )
            return Run(
                [job], pending.steps(), ready, done=self._finished, pause_after_first_text=True
            )
        except UserError as error:
            job.emit(Failed(str(error), user_error=True, error=error))
        except Exception as error:  # a bug or a crash in MLX: handed back
            job.emit(Failed(f"{type(error).__name__}: {error}", user_error=False, error=error))
        return None

    def _warm(
        self, spec: ModelSpec, job: Optional[Job] = None, keep: frozenset = frozenset()
    ) -> tuple[WarmModel, bool]:
        from mlx_magic.engine.loading import load_warm_model

        entry = self._cache.get(spec.key)
        if entry is not None:
            return entry, True
        if job is not None:
            job.emit(ModelLoading(model=spec.name))
        with gpu_lock:
            entry = load_warm_model(spec)
            entry.uses = 1
            self._cache.put(entry, keep)
        self._after_change()
        return entry, False

    def _log_memory(self, model: str, stats: Optional[GenerationStats]) -> None:
        """One sample of MLX's memory, after a generation (or a batch of them)."""
        from mlx_magic.engine.memory import memory_sample

        sample = memory_sample(self._generations, model, stats)
        with self._state_lock:
            self._memory_log.append(sample)

    def _after_change(self) -> None:
        from mlx_magic.engine.memory import mlx_memory

        infos = tuple(entry.info() for entry in self._cache)
        memory = mlx_memory()
        with self._state_lock:
            self._model_infos = infos
            self._memory = memory


def _cancelled_before_start() -> Finished:
    from mlx_magic.vocabulary.values import Finished

    return Finished(finish_reason="cancelled")
