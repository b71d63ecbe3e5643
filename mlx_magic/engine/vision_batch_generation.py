"""Many answers of one vision model decoded together: mlx-vlm's ``BatchGenerator`` (runtime thread).

Each item is prepared only when a slot is free for it or for the items
queued ahead of the batch (``batch_size`` more, queued inside mlx-vlm's
generator): its prompt through mlx-vlm's chat template, its images through
the model's processor
(:func:`~mlx_magic.engine.vision_inputs.prepare_vision_inputs`, which also
refuses a prompt beyond the context), then the vision tower and the
embedding merge (``get_input_embeddings``), in one call for the items
inserted together whose inputs have the same shapes, at most ``batch_size``
(as mlx-vlm's ``batch_generate`` embeds its batch; an item whose pixels fail
there is found by embedding the group one by one). mlx-vlm's batch then
reads and decodes the prompts' embeddings together, images of different
sizes included (each row keeps its own positions). So at most twice
``batch_size`` items' pixels and embeddings are in memory at once, and an
item whose image the processor cannot read fails alone, as one row.

mlx-vlm's batch admits queued prompts only when at least
``prefill_batch_size`` slots are free after a decoding step, and then that
many: it is set before each step to the slots that step frees, so a freed
slot takes the next item in the step that freed it (continuous batching, as
mlx-lm's ``batch_generate`` schedules it).

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
        # As many queued in the generator as it holds: a slot freed in a step
        # is taken in that step (see :meth:`_feed`), as the text path does.
        self.lookahead = self.batch_size
        self._feed()

    def _feed(self) -> None:
        """Insert waiting items, then let mlx-vlm admit in the coming step as
        many queued prompts as that step frees slots.

        mlx-vlm admits queued prompts only when ``prefill_batch_size`` slots are
        free after its decoding step, and then that many at once: it is set to
        the slots free now plus the rows that reach their ``max_tokens`` in
        this step (a row that ends at its end-of-sequence token instead frees
        its slot unforeseen: at least one is always admitted).
        """
        super()._feed()
        generator = self.generator
        if generator is None or not generator.unprocessed_prompts:
            return
        decoding = generator._generation_batch
        ending = sum(
            1 for done, most in zip(decoding._num_tokens, decoding.max_tokens) if done + 1 >= most
        )
        free = self.batch_size - len(decoding) + ending
        generator.prefill_batch_size = max(1, min(len(generator.unprocessed_prompts), free))

    def _admitted(self, prompting: list, at: float) -> None:
        """A sequence's clock starts when mlx-vlm takes it from its queue."""
        queued = {entry[0] for entry in self.generator.unprocessed_prompts}
        for uid, sequence in self.sequences.items():
            if not sequence.admitted and uid not in queued:
                sequence.started, sequence.admitted = at, True

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
        """Embed the chosen items' images and prompts, and hand them to the batch.

        Items whose inputs have the same shapes (one template, images of one
        size: the usual ``--map``) go through the vision tower in one call,
        as mlx-vlm's ``batch_generate`` sends its batch; items of other sizes
        go in their own groups.
        """
        from mlx_lm.sample_utils import make_logits_processors

        ready = []
        for job, inputs in chosen:
            if inputs is None:
                inputs = self._prepare(job)
                if inputs is None:
                    continue
            try:
                processors = make_logits_processors(
                    repetition_penalty=job.request.sampling.repetition_penalty
                ) + list(extra_logits_processors(self.warm, job.request))
            except UserError as error:
                self._say(job, Failed(str(error), user_error=True, error=error))
                continue
            ready.append((job, inputs, processors))
        groups: dict[object, list[tuple]] = {}
        for entry in ready:
            groups.setdefault(_shapes(entry[1]), []).append(entry)
        for group in groups.values():
            # No more images in one call of the vision tower than the batch holds.
            for start in range(0, len(group), self.batch_size):
                self._insert_group(group[start : start + self.batch_size])

    def _insert_group(self, group: list[tuple]) -> None:
        from mlx_vlm.tokenizer_utils import make_streaming_detokenizer

        started = time.perf_counter()
        with gpu_lock:
            embedded = self._embedded([inputs for _, inputs, _ in group])
            if embedded is None:  # one at a time: an item that fails is one row
                embedded = [self._embedded_alone(job, inputs) for job, inputs, _ in group]
            kept = [(entry, kwargs) for entry, kwargs in zip(group, embedded) if kwargs is not None]
            if not kept:
                return
            prompts = [inputs.input_ids.squeeze(0).tolist() for (_, inputs, _), _ in kept]
            uids = self.generator.insert(
                prompts,
                max_tokens=[job.request.sampling.max_tokens for (job, _, _), _ in kept],
                prompt_kwargs=[kwargs for _, kwargs in kept],
                logits_processors=[processors for (_, _, processors), _ in kept],
            )
        for uid, prompt, ((job, inputs, _), _) in zip(uids, prompts, kept):
            self.sequences[uid] = Sequence(
                job,
                prompt,
                make_streaming_detokenizer(self.warm.tokenizer),
                started,
                image_tokens=inputs.prepared.image_tokens if inputs.prepared else 0,
            )

    def _embedded(self, group: list[VisionInputs]) -> Optional[list[Optional[dict]]]:
        """The group's prompt arguments from one call of the vision tower and
        the embedding merge, one dict per item; ``None`` when the group is one
        item or the call fails (then each item is embedded alone)."""
        if len(group) < 2:
            return None
        import mlx.core as mx
        from mlx_vlm.generate.ar import _prompt_kwarg_batch_size, _split_prompt_kwargs_per_row

        def stacked(values: list) -> object:
            return None if values[0] is None else mx.concatenate(values, axis=0)

        first = group[0]
        try:
            output = self.warm.model.get_input_embeddings(
                stacked([inputs.input_ids for inputs in group]),
                stacked([inputs.pixel_values for inputs in group]),
                mask=stacked([inputs.mask for inputs in group]),
                **{key: stacked([inputs.extra[key] for inputs in group]) for key in first.extra},
            )
        except Exception:  # found out item by item, where it fails one row alone
            return None
        values = {key: value for key, value in output.to_dict().items() if value is not None}
        # Split into rows with mlx-vlm's own helper (batch_generate's); an
        # output that is not one row per item cannot be split: embed alone.
        if any(
            isinstance(value, mx.array) and _prompt_kwarg_batch_size(key, value) != len(group)
            for key, value in values.items()
        ):
            return None
        rows = _split_prompt_kwargs_per_row(values, len(group))
        return [{**inputs.extra, **row} for inputs, row in zip(group, rows)]

    def _embedded_alone(self, job: JobControls, inputs: VisionInputs) -> Optional[dict]:
        """One item's prompt arguments; ``None`` (and the job failed) when its pixels fail."""
        try:
            output = self.warm.model.get_input_embeddings(
                inputs.input_ids, inputs.pixel_values, mask=inputs.mask, **inputs.extra
            )
        except Exception as error:  # this item's pixels, not the run: one row
            self._say(
                job, Failed(f"{type(error).__name__}: {error}", user_error=False, error=error)
            )
            return None
        values = {key: value for key, value in output.to_dict().items() if value is not None}
        return {**inputs.extra, **values}

    def _remove(self, uids: list[int]) -> None:
        for uid in uids:
            self.generator.remove(uid)


def _shapes(inputs: VisionInputs) -> object:
    """What must be equal for items to share a call of the vision tower: the
    shapes of every input (arrays only; anything else keeps the item alone)."""
    import mlx.core as mx

    parts: list[object] = []
    for key, value in (
        ("input_ids", inputs.input_ids),
        ("pixel_values", inputs.pixel_values),
        ("mask", inputs.mask),
        *sorted(inputs.extra.items()),
    ):
        if value is None:
            parts.append((key, None))
        elif isinstance(value, mx.array):
            parts.append((key, tuple(value.shape), value.dtype))
        else:
            return id(inputs)
    return tuple(parts)
