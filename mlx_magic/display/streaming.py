"""Feed runtime jobs' events into views, on the kernel's own thread.

The events are read by :func:`~mlx_magic.display.following.follow` (the one
loop every cell's generations are read in); here they become text, thinking,
previews and footers. An interrupt cancels the jobs; the partial answers are
kept and marked, and the interrupt is passed on by the caller.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

from mlx_magic.display.following import follow
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
from mlx_magic.vocabulary.tools import PromptRendered, ToolCallsFound
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
    # Held from an interrupt on, until the caller has kept the partial answer
    # (it calls outcome.shield.release()).
    shield = InterruptShield()
    try:
        interrupted = follow(
            [job],
            lambda _, event: collector.handle(event),
            due=collector.due,
            batch_reads=collector.buffer is not None,
            shield=shield,
        )
    except BaseException:
        shield.release()
        raise
    collector.show(collector.drain())
    result = collector.result(collector.end())
    view.finish(result)
    return StreamOutcome(
        result=result,
        interrupted=interrupted,
        flushes=collector.flushes,
        shield=shield if interrupted else NO_SHIELD,
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
    failures: dict[int, GenerationFailed] = {}

    def handle(position: int, event: Event) -> None:
        try:
            collectors[position].handle(event)
        except GenerationFailed as failed:
            collectors[position].view.notice(f"✖ {failed.failure.message}")
            failures[position] = failed

    def due() -> Optional[float]:
        waits = [collector.due() for collector in collectors]
        return min((wait for wait in waits if wait is not None), default=None)

    shield = InterruptShield()  # later interrupts count only, until the columns are kept
    interrupted = follow(jobs, handle, due=due, shield=shield)
    outcomes: list[StreamOutcome | GenerationFailed] = []
    for position, collector in enumerate(collectors):
        if position in failures:
            outcomes.append(failures[position])
            continue
        collector.show(collector.drain())
        result = collector.result(collector.end())
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
        self.finished: Optional[Finished] = None
        self.prepared: Optional[ImagesPrepared] = None
        self.tool_calls: Optional[ToolCallsFound] = None
        # The live thinking block resends its newest lines at each update:
        # it is updated once per interval, whatever the token rate.
        thinking_buffer = None if buffer is None else TokenBuffer(buffer.interval_s)
        self.thinking = ThinkingStream(job, view, thinking_buffer)

    def due(self) -> Optional[float]:
        """Show held text whose time has come; how soon more will be due (s)."""
        if self.buffer is None:
            return None
        self._show(self.buffer.due())
        self.thinking.due()
        waits = [self.buffer.seconds_until_due(), self.thinking.seconds_until_due()]
        return min((wait for wait in waits if wait is not None), default=None)

    def end(self) -> Finished:
        """The job's Finished; a job that never confirmed its cancel ends as cancelled."""
        if self.finished is not None:
            return self.finished
        return Finished("cancelled", GenerationStats(generation_tokens=len(self.tokens)))

    def drain(self) -> str:
        return self._drain_buffer()

    def show(self, text: Optional[str]) -> None:
        self._show(text)

    def handle(self, event: Event) -> None:
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
        elif isinstance(event, ToolCallsFound):
            self.tool_calls = event
        elif isinstance(event, PromptRendered):
            from mlx_magic.display.steps_view import prompt_bundle

            self.view.show_bundle(prompt_bundle(event.text))
        elif isinstance(event, Finished):
            self.finished = event
        elif isinstance(event, Failed):
            self._show(self._drain_buffer())
            self.view.fail()
            raise GenerationFailed(event)

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
            tool_calls=self.tool_calls,
        )
        # Before the view shows the footer: the record goes into its metadata.
        result.provenance = provenance_record(result, request)
        return result
