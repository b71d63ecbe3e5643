"""Make a random-weight model say a chosen answer, through the real generation path.

A logits processor that puts all the probability on the next token of a
script drives mlx-vlm's (or mlx-lm's) own generation to a known answer: the
prompt is still read, the model still runs every step, the detokenizer and
the streaming are the real ones; only the choice of each token is fixed.
Tests and demos use it to show what a trained model's answer (boxes, JSON,
Markdown) does to the display, where only random weights are at hand.

    with forced_vision_answer("<|box_start|>(10,20),(500,600)<|box_end|>"):
        get_ipython().run_cell_magic("mlx_vision", "-i photo", "Where is the cat?")
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence


def scripted_logits_processor(token_ids: Sequence[int], end_id: int):
    """A logits processor choosing ``token_ids`` one per step, then ``end_id``."""
    import mlx.core as mx

    script = list(token_ids)
    step = [0]

    def choose_next(tokens, logits):
        index = step[0]
        step[0] += 1
        wanted = script[index] if index < len(script) else end_id
        vocabulary = mx.broadcast_to(mx.arange(logits.shape[-1]), logits.shape)
        return mx.where(
            vocabulary == wanted, mx.array(0.0, logits.dtype), mx.array(-1e9, logits.dtype)
        )

    return choose_next


def _end_id(tokenizer) -> int:
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
    def scripted(model, processor, prompt, *args, **kwargs):
        tokenizer = processor.tokenizer if hasattr(processor, "tokenizer") else processor
        ids = tokenizer.encode(answer, add_special_tokens=False)
        processors = list(kwargs.pop("logits_processors", None) or [])
        processors.append(scripted_logits_processor(ids, _end_id(tokenizer)))
        return original(model, processor, prompt, *args, logits_processors=processors, **kwargs)

    mlx_vlm.stream_generate = scripted
    try:
        yield
    finally:
        mlx_vlm.stream_generate = original
