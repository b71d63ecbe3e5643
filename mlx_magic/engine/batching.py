"""Whether jobs can be decoded together, and the batch run for their kind of
model: :class:`~mlx_magic.engine.batch_generation.TextBatchRun` (mlx-lm) or
:class:`~mlx_magic.engine.vision_batch_generation.VisionBatchRun` (mlx-vlm).
"""

from __future__ import annotations

from typing import Any, Sequence

from mlx_magic.engine.batch_generation import BatchRun, TextBatchRun
from mlx_magic.engine.model_cache import WarmModel
from mlx_magic.engine.vision_batch_generation import VisionBatchRun
from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.values import GenerationRequest


def can_batch(jobs: Sequence[JobControls]) -> bool:
    """Whether ``jobs`` can share forward passes: one model, no token
    probabilities, one seed for all (the run's: ``--map`` draws one), and more
    than one of them. Vision jobs also share one sampler (mlx-vlm's batch has
    one) and send images, not a video, outside a conversation."""
    if len(jobs) < 2:
        return False
    first = jobs[0].request
    if first.model.kind not in ("text", "vision"):
        return False
    return all(
        job.request.model.key == first.model.key
        and job.request.model.kind == first.model.kind
        and not job.request.top_logprobs
        and job.request.sampling.seed == first.sampling.seed
        and job.request.batch_size != 1
        and job.request.draft is None
        and not job.request.continue_ids
        and job.request.kv_cache.plain  # mlx-lm's batches keep plain KV caches
        and (
            _vision_batchable(job, first)
            if first.model.kind == "vision"
            else not job.request.images
        )
        for job in jobs
    )


def _vision_batchable(job: JobControls, first: GenerationRequest) -> bool:
    request = job.request
    return (
        request.sampling == first.sampling
        and not request.has_video
        and request.conversation is None
        and not request.history
    )


def start_batch(warm: WarmModel, jobs: Sequence[JobControls], **options: Any) -> BatchRun:
    """The batch run for ``warm``'s kind of model (``options``: :class:`BatchRun`'s)."""
    if warm.kind == "vision":
        return VisionBatchRun(warm, jobs, **options)
    return TextBatchRun(warm, jobs, **options)
