"""Feed a runtime job's events into a view, on the kernel's own thread.

The kernel thread waits here while the runtime thread generates, so the
kernel's interrupt (a ``KeyboardInterrupt`` raised on this thread) lands
here: the job is cancelled, the partial answer is kept and marked, and the
interrupt is passed on by the caller.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from mlx_magic.display.grounding_watch import GroundingWatch
from mlx_magic.display.interrupts import NO_SHIELD, InterruptShield
from mlx_magic.display.result import MLXResult, TokenInfo
from mlx_magic.display.thinking_stream import ThinkingStream
from mlx_magic.display.views import StreamView
from mlx_magic.errors import GenerationFailed
from mlx_magic.images import LoadedImage
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.provenance import provenance_record
from mlx_magic.vocabulary.token_buffer import TokenBuffer
from mlx_magic.vocabulary.values import (
    Event,
    Failed,
    Finished,
    GenerationStats,
    ImagesPrepared,
    ModelLoading,
    ModelReady,
    Notice,
    Progress,
    ThinkingOpened,
    TokenChunk,
    VideoPrepared,
)

# How long to wait for the runtime to confirm a cancel before giving up on
# it; a token step takes far less, only a huge prompt's prefill chunk more.
CANCEL_GRACE_S = 30.0
# How often to wake up when no text is held, so that waits stay interruptible.
_POLL_S = 0.25
# After the first text, events are read in batches this often instead of one
# wake-up per token: every wake-up takes the GIL from the runtime thread (in one
# process, a fast model decoded at 0.90x raw mlx-lm read per token, 1.04x read
# this way: BENCHMARKS.md, Investigations 4).
_BATCH_READ_S = 0.05


@dataclass
class StreamOutcome:
    """What came of streaming one job."""

    result: MLXResult
    interrupted: bool = False
    flushes: int = 0
    #: Held after an interrupt until the caller has kept the result.
    shield: InterruptShield = NO_SHIELD


def stream_job(
    job: Job,
    view: StreamView,
    *,
    interval_s: float,
    images: Sequence[LoadedImage] = (),
    grounding: bool = True,
) -> StreamOutcome:
    """Show ``job``'s answer in ``view`` as it is generated.

    ``images`` are the cell's own (a vision cell): boxes and points in the
    answer are drawn on their previews as each completes (unless
    ``grounding`` is false: then only what the images cost is shown).

    Returns:
        The outcome; ``interrupted`` is true when a ``KeyboardInterrupt``
        cancelled the job (the caller re-raises it once the result is kept).

    Raises:
        GenerationFailed: the runtime could not generate.
    """
    watch = GroundingWatch(images, job.request, detect=grounding) if images else None
    collector = _Collector(job, view, _buffer_for(view, interval_s), watch)
    shield = NO_SHIELD
    try:
        finished = collector.run_until_finished()
        interrupted = False
    except KeyboardInterrupt:
        # Further interrupts wait until the caller has kept the partial answer
        # (it calls outcome.shield.release()).
        shield = InterruptShield().hold()
        job.cancel()
        try:
            finished = collector.run_until_finished(grace_s=CANCEL_GRACE_S)
        except BaseException:
            shield.release()
            raise
        interrupted = True
    result = collector.result(finished)
    view.finish(result)
    return StreamOutcome(
        result=result, interrupted=interrupted, flushes=collector.flushes, shield=shield
    )


def stream_jobs(
    jobs: list[Job], views: list[StreamView], *, interval_s: float
) -> list[StreamOutcome | GenerationFailed]:
    """Show several jobs that advance together, each in its own view.

    Returns one :class:`StreamOutcome` per job, or, for a job that failed,
    the :class:`GenerationFailed` (shown in its view; the others go on).
    """
    collectors = [
        _Collector(job, view, _buffer_for(view, interval_s)) for job, view in zip(jobs, views)
    ]
    ends: dict[int, Finished | GenerationFailed] = {}
    interrupted = False
    shield = InterruptShield()
    deadline = None
    while len(ends) < len(jobs):
        try:
            quiet = True
            for index, collector in enumerate(collectors):
                if index in ends:
                    continue
                try:
                    finished = collector.poll()
                except GenerationFailed as failed:
                    collector.view.notice(f"✖ {failed.failure.message}")
                    ends[index] = failed
                    continue
                if finished is not None:
                    ends[index] = finished
                quiet = quiet and finished is None
            if deadline is not None and time.monotonic() > deadline:
                for index in range(len(collectors)):
                    ends.setdefault(index, Finished("cancelled"))
            if quiet:
                time.sleep(0.02)
        except KeyboardInterrupt:
            interrupted = True
            shield.hold()  # later interrupts count only, until the columns are kept
            for job in jobs:
                job.cancel()
            deadline = time.monotonic() + CANCEL_GRACE_S
    outcomes: list[StreamOutcome | GenerationFailed] = []
    for index, collector in enumerate(collectors):
        end = ends[index]
        if isinstance(end, GenerationFailed):
            outcomes.append(end)
            continue
        collector.show(collector.drain())
        result = collector.result(end)
        collector.view.finish(result)
        outcomes.append(
            StreamOutcome(result=result, interrupted=interrupted, flushes=collector.flushes)
        )
    shield.release()
    return outcomes


def _buffer_for(view: StreamView, interval_s: float) -> Optional[TokenBuffer]:
    if not view.batches:
        return None
    return TokenBuffer(interval_s, max_tokens=view.max_batch_tokens())


class _Collector:
    def __init__(
        self,
        job: Job,
        view: StreamView,
        buffer: Optional[TokenBuffer],
        watch: Optional[GroundingWatch] = None,
    ):
        self.job = job
        self.view = view
        self.buffer = buffer
        self.watch = watch
        self.parts: list[str] = []
        self.tokens: list[TokenInfo] = []
        self.flushes = 0
        self.ready: Optional[ModelReady] = None
        self.prepared: Optional[ImagesPrepared] = None
        # The live thinking block resends its newest lines at each update:
        # it is updated once per interval, whatever the token rate.
        thinking_buffer = None if buffer is None else TokenBuffer(buffer.interval_s)
        self.thinking = ThinkingStream(job, view, thinking_buffer)

    def run_until_finished(self, grace_s: Optional[float] = None) -> Finished:
        deadline = None if grace_s is None else time.monotonic() + grace_s
        while True:
            timeout = _POLL_S
            if self.buffer is not None:
                for due_in in (self.buffer.seconds_until_due(), self.thinking.seconds_until_due()):
                    if due_in is not None:
                        timeout = min(timeout, due_in)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._show(self._drain_buffer())
                    return Finished(
                        "cancelled", GenerationStats(generation_tokens=len(self.tokens))
                    )
                timeout = min(timeout, remaining)
            if self.buffer is not None and self.job.first_text_shown.is_set():
                self.job.ended.wait(min(timeout, _BATCH_READ_S))
                events = self.job.waiting_events()
            else:
                event = self.job.next_event(timeout)
                events = [] if event is None else [event]
            for event in events:
                finished = self._handle(event)
                if finished is not None:
                    self._show(self._drain_buffer())
                    return finished
            if self.buffer is not None:
                self._show(self.buffer.due())
                self.thinking.due()

    def poll(self) -> Optional[Finished]:
        """Handle the events already waiting, without blocking; the
        :class:`Finished` event once the job has ended."""
        while True:
            event = self.job.next_event(0)
            if event is None:
                if self.buffer is not None:
                    self._show(self.buffer.due())
                    self.thinking.due()
                return None
            finished = self._handle(event)
            if finished is not None:
                return finished

    def drain(self) -> str:
        return self._drain_buffer()

    def show(self, text: Optional[str]) -> None:
        self._show(text)

    def _handle(self, event: Event) -> Optional[Finished]:
        if isinstance(event, TokenChunk):
            text = self.thinking.take(event)
            self.parts.append(text)
            details: tuple[dict, ...] = event.details or ({},) * len(event.token_ids)
            drafted = event.from_draft or (False,) * len(event.token_ids)
            for token_id, detail, from_draft in zip(event.token_ids, details, drafted):
                self.tokens.append(
                    TokenInfo(
                        id=int(token_id),
                        logprob=detail.get("logprob"),
                        top=list(detail.get("top", [])),
                        from_draft=from_draft,
                    )
                )
            if self.tokens and event.token_ids:
                self.tokens[-1].text = event.text
            if self.buffer is None:
                self._show(text)
            else:
                self._show(self.buffer.add(text, max(1, len(event.token_ids))))
        elif isinstance(event, ThinkingOpened):
            self.thinking.opened()
        elif isinstance(event, Notice):
            self.view.notice(event.message)
        elif isinstance(event, Progress):
            self.view.progress(event.message)
        elif isinstance(event, VideoPrepared):
            self.view.show_video(event)
        elif isinstance(event, ImagesPrepared):
            self.prepared = event
            if self.watch is not None:
                self.watch.prepared(event)
                self.view.image_costs(self.watch.processed_sizes, self.watch.vision_tokens)
        elif isinstance(event, ModelLoading):
            self.view.loading(event.model)
        elif isinstance(event, ModelReady):
            self.ready = event
            self.view.waiting_for_first_token(event.model, None if event.warm else event.load_s)
        elif isinstance(event, Finished):
            return event
        elif isinstance(event, Failed):
            self._show(self._drain_buffer())
            self.view.fail()
            raise GenerationFailed(event)
        return None

    def _drain_buffer(self) -> str:
        # Text held back while it could have begun a tag is the answer's end.
        tail = self.thinking.flush()
        self.parts.append(tail)
        return (self.buffer.flush() if self.buffer is not None else "") + tail

    def _show(self, text: Optional[str]) -> None:
        if text:
            self.flushes += 1
            self.view.write(text)
            self.job.first_text_shown.set()
            if self.watch is not None:
                # At display flushes only: a box appears with the text that closes it.
                grounding = self.watch.feed("".join(self.parts))
                if grounding is not None:
                    self.view.show_grounding(grounding)

    def result(self, finished: Finished) -> MLXResult:
        stats = dataclasses.replace(finished.stats)
        # Count what arrived; a remote server's chunks carry no token ids, so
        # its own count stands there.
        if self.tokens:
            stats.generation_tokens = len(self.tokens)
        if self.tokens or not stats.thinking_tokens:
            stats.thinking_tokens = self.thinking.tokens
        stats.thinking_s = self.thinking.seconds
        request = self.job.request
        if self.prepared is not None:
            stats.image_tokens = self.prepared.image_tokens
            stats.video_tokens = self.prepared.video_tokens
        grounding, images = None, []
        if self.watch is not None:
            self.watch.feed("".join(self.parts))
            grounding = self.watch.with_images(self.watch.grounding)
            images = [
                {
                    "source": loaded.source,
                    "size": loaded.image.size,
                    "processed_size": processed,
                    "vision_tokens": tokens,
                }
                for loaded, processed, tokens in zip(
                    self.watch.images, self.watch.processed_sizes, self.watch.vision_tokens
                )
            ]
        result = MLXResult(
            text="".join(self.parts),
            thinking=self.thinking.text,
            prompt=request.prompt,
            # A server names the model that answered (its own default, an alias).
            model=getattr(stats, "server_model", None) or request.model.name,
            finish_reason=finished.finish_reason,
            stats=stats,
            tokens=self.tokens,
            boxes=list(grounding.boxes) if grounding else [],
            points=list(grounding.points) if grounding else [],
            images=images,
            request=request,
        )
        # Before the view shows the footer: the record goes into its metadata.
        result.provenance = provenance_record(result, request)
        return result
