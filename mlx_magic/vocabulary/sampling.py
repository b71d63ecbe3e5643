"""What each sampler setting accepts: the cells' flags and replayed records
are checked against the same rules (:data:`SAMPLING_RULES`)."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from mlx_magic.vocabulary.values import SamplingParams


def _finite_at_least(low: float, strictly: bool = False) -> Any:
    def accepts(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (value > low if strictly else value >= low) and value < math.inf

    return accepts


def is_whole(value: Any, low: int, high: float = math.inf) -> bool:
    """Whether ``value`` is an int (not a bool) with ``low <= value < high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _whole(low: int, high: float = math.inf) -> Any:
    return lambda value: is_whole(value, low, high)


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


#: What each sampler setting accepts, and how to say so: the cells' flags and
#: replayed records are checked against the same rules.
SAMPLING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_tokens": (_whole(1), "a positive integer"),
    "temperature": (_finite_at_least(0), "0 or more"),
    "top_p": (_fraction, "between 0 and 1"),
    "top_k": (_whole(0), "0 or more"),
    "min_p": (_fraction, "between 0 and 1"),
    "repetition_penalty": (
        lambda v: v is None or _finite_at_least(0, strictly=True)(v),
        "more than 0 and finite",
    ),
    "seed": (lambda v: v is None or _whole(0, 2**63)(v), "a non-negative integer"),
}


def sampling_problem(sampling: SamplingParams) -> Optional[tuple[str, Any, str]]:
    """The first setting of ``sampling`` its rule refuses, as (name, value,
    what it must be); ``None`` when all are fine."""
    for name, (accepts, expected) in SAMPLING_RULES.items():
        value = getattr(sampling, name)
        if not accepts(value):
            return name, value, expected
    return None
