"""Answers that always parse: decoding constrained to a JSON schema (runtime thread).

llguidance compiles the schema into a grammar and, at every step, says which
tokens may come next (a bitmask over the vocabulary); the logits processor
here sets the others to minus infinity. The mask is applied with plain MLX
operations, so it works on every backend (CPU, CUDA, Metal); llguidance's
and mlx-vlm's own MLX helpers use a Metal-only kernel.

Why llguidance: mlx-vlm already depends on it (no new dependency), it
builds a tokenizer's token trie once (~1.5 s for SmolLM2's 49k tokens,
cached per model) and computes a mask in tens of microseconds; outlines-core
would be a second grammar engine to install for the same job.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, cast

from mlx_magic.engine.model_cache import text_tokenizer
from mlx_magic.errors import UserError

if TYPE_CHECKING:
    import mlx.core as mx
    from llguidance import LLTokenizer

    from mlx_magic.engine.model_cache import WarmModel
    from mlx_magic.vocabulary.values import GenerationRequest

#: One line of JSON, ``", "`` and ``": "`` between items (as the kernel checked it).
JSON_STYLE: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def grammar_tokenizer(warm: WarmModel) -> LLTokenizer:
    """llguidance's view of the model's tokenizer, built once per warm model."""
    cached = getattr(warm.caches, "grammar_tokenizer", None)
    if cached is not None:
        return cached
    import llguidance.hf

    tokenizer = getattr(warm.tokenizer, "_tokenizer", warm.tokenizer)
    tokenizer = text_tokenizer(tokenizer)
    eos = list(getattr(warm.tokenizer, "eos_token_ids", []) or []) or None
    try:
        built = llguidance.hf.from_tokenizer(tokenizer, eos_token=eos)
    except ValueError as error:
        raise UserError(
            f"--schema needs a fast (Rust) tokenizer; {warm.name}'s is not one: {error}"
        ) from error
    warm.caches.grammar_tokenizer = built
    return built


class SchemaConstraint:
    """A logits processor that only lets through tokens the schema allows."""

    def __init__(self, warm: WarmModel, schema_json: str) -> None:
        import llguidance

        self.tokenizer = grammar_tokenizer(warm)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.loads(schema_json), JSON_STYLE)
        self.matcher = llguidance.LLMatcher(self.tokenizer, grammar)
        if self.matcher.is_error():
            raise UserError(f"--schema does not compile: {self.matcher.get_error()}")
        self.vocab_size = self.tokenizer.vocab_size
        self._prompt_length: Optional[int] = None
        self._consumed = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        import mlx.core as mx
        import numpy as np

        if self._prompt_length is None:
            self._prompt_length = int(tokens.shape[-1])
        else:
            # A 1-d array: tolist() gives a list (its annotation allows scalars too).
            new = cast(list, tokens.reshape(-1)[self._prompt_length + self._consumed :].tolist())
            for token in new:
                self.matcher.consume_token(int(token))
            self._consumed += len(new)
        bitmask = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bitmask, bitorder="little")[: self.vocab_size].astype(bool)
        width = logits.shape[-1]
        if width > allowed.shape[0]:  # embedding rows past the tokenizer's vocabulary
            allowed = np.concatenate([allowed, np.zeros(width - allowed.shape[0], bool)])
        mask = mx.array(allowed[:width])
        return mx.where(mask, logits, mx.array(-float("inf"), logits.dtype))


def schema_processors(warm: WarmModel, request: GenerationRequest) -> list[SchemaConstraint]:
    """The request's constraint as logits processors (none without ``--schema``)."""
    if not getattr(request, "schema_json", None):
        return []
    return [SchemaConstraint(warm, cast(str, request.schema_json))]  # checked above
