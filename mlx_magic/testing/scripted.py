"""Make a random-weight model say a chosen answer, through the real generation path.

A logits processor that puts all the probability on the next token of a
script drives mlx-vlm's (or mlx-lm's) own generation to a known answer: the
prompt is still read, the model still runs every step, the detokenizer and
the streaming are the real ones; only the choice of each token is fixed.
Tests and demos use it to show what a trained model's answer (boxes, JSON,
Markdown) does to the display, where only random weights are at hand;
:func:`forced_masks` does the same for a segmenter's masks (SAM 3, SAM 3.1).

    with forced_vision_answer("<|box_start|>(10,20),(500,600)<|box_end|>"):
        get_ipython().run_cell_magic("mlx_vision", "-i photo", "Where is the cat?")

    with forced_answer("<think>Paris is in France.</think>\n\n## Paris\n\n- the capital"):
        get_ipython().run_cell_magic("mlx", "-n 80", "What is the capital of France?")
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, cast

if TYPE_CHECKING:
    import mlx.core as mx

#: mlx-lm's and mlx-vlm's logits processor: (tokens so far, logits) -> logits.
LogitsProcessor = Callable[["mx.array", "mx.array"], "mx.array"]


def scripted_logits_processor(token_ids: Sequence[int], end_id: int) -> LogitsProcessor:
    """A logits processor choosing ``token_ids`` one per step, then ``end_id``."""
    import mlx.core as mx

    script = list(token_ids)
    step = [0]

    def choose_next(tokens: mx.array, logits: mx.array) -> mx.array:
        index = step[0]
        step[0] += 1
        wanted = script[index] if index < len(script) else end_id
        vocabulary = mx.broadcast_to(mx.arange(logits.shape[-1]), logits.shape)
        chosen = mx.where(
            vocabulary == wanted, mx.array(0.0, logits.dtype), mx.array(-1e9, logits.dtype)
        )
        # Depend on the model's logits: MLX computes lazily, and a result that
        # ignored them would never run the model (nor fill its KV cache).
        return chosen + mx.nan_to_num(logits * 0)

    return choose_next


def resuming_logits_processor(
    token_ids: Sequence[int], end_id: int, resume_at: int
) -> LogitsProcessor:
    """Like :func:`scripted_logits_processor`, but a step where another
    processor chose a different token (a thinking budget forcing
    ``</think>``) is not lost: the script goes on from ``resume_at`` (the
    answer after the scripted thinking), once the other processor lets go."""
    import mlx.core as mx

    script = list(token_ids)
    next_index = 0
    proposed: Optional[int] = None

    def choose_next(tokens: mx.array, logits: mx.array) -> mx.array:
        nonlocal next_index, proposed
        # A token id: ``item()`` of an integer array is an int.
        if proposed is not None and int(cast(int, tokens[-1].item())) != proposed:
            next_index = max(next_index - 1, resume_at)
        index = next_index
        wanted = script[index] if index < len(script) else end_id
        next_index, proposed = index + 1, wanted
        vocabulary = mx.broadcast_to(mx.arange(logits.shape[-1]), logits.shape)
        chosen = mx.where(
            vocabulary == wanted, mx.array(0.0, logits.dtype), mx.array(-1e9, logits.dtype)
        )
        # Computed from the model's logits (all zeros), so that MLX, which
        # computes lazily, still runs the model at every step: its KV cache is
        # filled as in a real generation, and its speed is a real one.
        return chosen + mx.nan_to_num(logits * 0)

    return choose_next


def end_token_id(tokenizer: Any) -> int:
    """The token a scripted answer ends with: the tokenizer's end of sequence."""
    for name in ("eos_token_id",):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    ids = getattr(tokenizer, "eos_token_ids", None)
    if ids:
        return sorted(ids)[0]
    raise ValueError("the tokenizer names no end-of-sequence token")


@contextlib.contextmanager
def forced_vision_answer(answer: str) -> Iterator[None]:
    """Within the block, every mlx-vlm ``stream_generate`` answers ``answer``.

    Special tokens written in ``answer`` (``<|box_start|>``) are single tokens.
    The cell's ``-n`` still applies: give it room for the whole answer.
    """
    import mlx_vlm

    original = mlx_vlm.stream_generate

    @functools.wraps(original)
    def scripted(model: Any, processor: Any, prompt: str, *args: Any, **kwargs: Any) -> Any:
        tokenizer = processor.tokenizer if hasattr(processor, "tokenizer") else processor
        ids = tokenizer.encode(answer, add_special_tokens=False)
        processors = list(kwargs.pop("logits_processors", None) or [])
        processors.append(scripted_logits_processor(ids, end_token_id(tokenizer)))
        return original(model, processor, prompt, *args, logits_processors=processors, **kwargs)

    mlx_vlm.stream_generate = scripted
    try:
        yield
    finally:
        mlx_vlm.stream_generate = original


@contextlib.contextmanager
def forced_answer(answer: str) -> Iterator[None]:
    """Within the block, every mlx-lm ``stream_generate`` (text models, the
    embedded SmolLM2 too) answers ``answer``.

    The model runs every step and the detokenizer and the streaming are the
    real ones. ``answer`` may script a thinking block (``<think> … </think>``);
    if a thinking budget or "Answer now" closes it early, the script goes on
    with what follows its ``</think>``. The cell's ``-n`` still applies.
    """
    with forced_answers(answer):
        yield


@contextlib.contextmanager
def forced_answers(*answers: str) -> Iterator[None]:
    """Like :func:`forced_answer`, with one answer per generation, in order
    (the last one again for any after): a conversation, or an agent's steps
    (a tool call, then the answer that reads its result)."""
    import mlx_lm

    from mlx_magic.vocabulary.thinking import CLOSE_TAG

    original = mlx_lm.stream_generate
    left = list(answers)

    @functools.wraps(original)
    def scripted(model: Any, tokenizer: Any, prompt: Any, *args: Any, **kwargs: Any) -> Any:
        answer = left.pop(0) if len(left) > 1 else left[0]
        thinking, tag, rest = answer.partition(CLOSE_TAG)
        head = tokenizer.encode(thinking + tag, add_special_tokens=False) if tag else []
        ids = head + tokenizer.encode(rest if tag else answer, add_special_tokens=False)
        processors = list(kwargs.pop("logits_processors", None) or [])
        # First: the processors after it (a thinking budget) have the last word.
        processors.insert(0, resuming_logits_processor(ids, end_token_id(tokenizer), len(head)))
        return original(model, tokenizer, prompt, *args, logits_processors=processors, **kwargs)

    mlx_lm.stream_generate = scripted
    try:
        yield
    finally:
        mlx_lm.stream_generate = original


@contextlib.contextmanager
def forced_masks(*answers: Any) -> Iterator[None]:
    """Make SAM 3 or SAM 3.1 (a random one) find chosen masks, through the real predictor.

    Each answer is a boolean ``N × height × width`` stack (or one
    ``height × width`` mask) at the image's size; the model still runs, and
    its post-processing answers with them, one answer per text prompt (or box
    label) in order, the last repeated: scores 0.9, 0.8, …, boxes around the
    masks. mlx-vlm's NMS and everything after it are the real ones; SAM 3.1's
    ``predict_multi`` post-processes with SAM 3's predictor too, so it answers alike::

        with forced_masks(red_pixels, blue_pixels):
            get_ipython().run_cell_magic("mlx_vision", "-i canvas --segment", "circle, box")
    """
    import numpy as np
    from mlx_vlm.models.sam3 import generate

    queue = [np.asarray(answer, bool).reshape((-1, *np.shape(answer)[-2:])) for answer in answers]

    def postprocess(self: Any, outputs: Any, image_size: Any, threshold: float = 0.5) -> Any:
        masks = queue.pop(0) if len(queue) > 1 else queue[0]
        boxes = []
        for mask in masks:
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0] * 4)
        return generate.DetectionResult(
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            masks=masks.astype(np.uint8),
            scores=np.array([0.9 - 0.1 * i for i in range(len(masks))], np.float32),
        )

    original = generate.Sam3Predictor._postprocess
    generate.Sam3Predictor._postprocess = postprocess
    try:
        yield
    finally:
        generate.Sam3Predictor._postprocess = original
