"""Many answers of one vision model decoded together: mlx-vlm's ``BatchGenerator`` (runtime thread).

Each item is prepared only when a slot is free for it: its prompt through
mlx-vlm's chat template, its images through the model's processor
(:func:`~mlx_magic.engine.vision_inputs.prepare_vision_inputs`, which also
refuses a prompt beyond the context), then the vision tower and the
embedding merge (``get_input_embeddings``). mlx-vlm's batch then reads and
decodes the prompts' embeddings together, images of different sizes
included (each row keeps its own positions). So at most ``batch_size``
items' pixels and embeddings are in memory at once, and an item whose image
the processor cannot read fails alone, as one row.

mlx-vlm's batch admits new prompts only when at least ``prefill_batch_size``
slots are free; setting it to the number just inserted makes a freed slot
take the next item at once (continuous batching, as mlx-lm's does).

One sampler serves the whole batch (mlx-vlm's design), so only jobs with the
same sampling settings are batched (:func:`~mlx_magic.engine.batching.can_batch`).
The image-feature cache of one-at-a-time cells is not used here.
"""

from __future__ import annotations

import time
import typing
from typing import Optional

from mlx_magic.engine.batch_generation import (
    BatchRun,
    Sequence,
    auto_batch_size,
    extra_logits_processors,
)
from mlx_magic.engine.model_cache import WarmModel, config_dict
from mlx_magic.engine.stepping import usable_top_k
from mlx_magic.engine.vision_generation import vision_prompt
from mlx_magic.engine.vision_inputs import VisionInputs, prepare_vision_inputs
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.values import Failed


class VisionBatchRun(BatchRun):
    """Jobs of one vision model, with mlx-vlm's ``BatchGenerator``."""

    def __init__(
        self,
        warm: WarmModel,
        jobs: typing.Sequence[JobControls],
        *,
        budget_bytes: int,
    ):
        import mlx.core as mx
        from mlx_lm.sample_utils import make_sampler
        from mlx_vlm.generate.ar import BatchGenerator

        super().__init__(warm, jobs)
        #: (job, its inputs once prepared): only the first is prepared here.
        self.waiting = [(job, None) for job in jobs]
        first = self._first_prepared()
        if first is None:
            return
        sampling = first[0].request.sampling
        asked = first[0].request.batch_size
        # Sized by the first item's prompt: items of one --map have one template
        # and usually images of one kind.
        prompt_tokens = int(first[1].input_ids.shape[-1])
        self.batch_size = min(
            len(self.waiting),
            asked or auto_batch_size(warm, prompt_tokens, sampling.max_tokens, budget_bytes),
        )
        greedy = not sampling.temperature
        with gpu_lock:
            mx.reset_peak_memory()
            if sampling.seed is not None:
                mx.random.seed(sampling.seed)
            self.generator = BatchGenerator(
                warm.model.language_model,
                warm.tokenizer,
                sampler=None
                if greedy
                else make_sampler(
                    temp=sampling.temperature,
                    top_p=sampling.top_p,
                    min_p=sampling.min_p,
                    top_k=usable_top_k(sampling.top_k, config_dict(warm.config)),
                ),
                completion_batch_size=self.batch_size,
                prefill_batch_size=1,
                compute_logprobs=False,
                greedy_sampling=greedy,
            )
        self._feed()

    def _first_prepared(self) -> Optional[tuple[JobControls, VisionInputs]]:
        """Prepare waiting jobs until one succeeds (the others fail as rows); it stays first."""
        while self.waiting:
            job, _ = self.waiting[0]
            inputs = self._prepare(job)
            if inputs is not None:
                self.waiting[0] = (job, inputs)
                return job, inputs
            self.waiting.pop(0)
        return None

    def _prepare(self, job: JobControls) -> Optional[VisionInputs]:
        """The job's prompt and images as model inputs; ``None`` (and the job
        failed) when they cannot be made."""
        request = job.request
        try:
            with gpu_lock:
                prompt = vision_prompt(self.warm, request)
                inputs = prepare_vision_inputs(
                    self.warm, prompt, list(request.images), request.model.name
                )
        except UserError as error:
            self._say(job, Failed(str(error), user_error=True, error=error))
            return None
        except Exception as error:  # this item's image or prompt, not the run
            self._say(
                job, Failed(f"{type(error).__name__}: {error}", user_error=False, error=error)
            )
            return None
        if inputs.prepared is not None:
            self._say(job, inputs.prepared)
        return inputs

    def _insert(self, chosen: list[tuple]) -> None:
        """Embed each chosen item's images and prompt, and hand it to the batch."""
        from mlx_lm.sample_utils import make_logits_processors
        from mlx_vlm.tokenizer_utils import make_streaming_detokenizer

        for job, inputs in chosen:
            if inputs is None:
                inputs = self._prepare(job)
                if inputs is None:
                    continue
            request = job.request
            try:
                processors = make_logits_processors(
                    repetition_penalty=request.sampling.repetition_penalty
                ) + list(extra_logits_processors(self.warm, request))
            except UserError as error:
                self._say(job, Failed(str(error), user_error=True, error=error))
                continue
            started = time.perf_counter()
            with gpu_lock:
                try:
                    embedded = self.warm.model.get_input_embeddings(
                        inputs.input_ids, inputs.pixel_values, mask=inputs.mask, **inputs.extra
                    )
                except Exception as error:  # this item's pixels, not the run: one row
                    self._say(
                        job,
                        Failed(f"{type(error).__name__}: {error}", user_error=False, error=error),
                    )
                    continue
                prompt_kwargs = {
                    **inputs.extra,
                    **{
                        key: value for key, value in embedded.to_dict().items() if value is not None
                    },
                }
                prompt = inputs.input_ids.squeeze(0).tolist()
                (uid,) = self.generator.insert(
                    [prompt],
                    max_tokens=request.sampling.max_tokens,
                    prompt_kwargs=[prompt_kwargs],
                    logits_processors=[processors],
                )
                # Admit what waits as soon as its slots are free (see the module's note).
                self.generator.prefill_batch_size = max(1, len(self.generator.unprocessed_prompts))
            self.sequences[uid] = Sequence(
                job,
                prompt,
                make_streaming_detokenizer(self.warm.tokenizer),
                started,
                image_tokens=inputs.prepared.image_tokens if inputs.prepared else 0,
            )

    def _remove(self, uids: list[int]) -> None:
        for uid in uids:
            self.generator.remove(uid)
