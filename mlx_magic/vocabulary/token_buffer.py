"""Group streamed tokens into few, timely updates for the frontend.

Sending every token as its own message floods the kernel's IOPub channel and
the browser for fast models; holding tokens back makes slow models look
stuck. The buffer flushes when it holds ``batch_tokens`` tokens or when the
oldest held token has waited ``interval_s``, whichever comes first. The batch
size follows the measured token rate, so that a size flush happens about
once per interval: a slow (usually big) model gets small batches, a fast one
up to ``max_tokens``. The first text is never held back.

The cap is :data:`MAX_BATCH_TOKENS` (512): at 1,000+ tokens/s (small models
on a GPU) a cap of 32 sent 40–47 updates per second, eight times the design,
where 512 keeps them at about one per interval up to ~2,500 tokens/s
(BENCHMARKS.md, GPU).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

#: The largest batch: a model faster than this many tokens per interval
#: sends more than one update per interval.
MAX_BATCH_TOKENS = 512


class TokenBuffer:
    """Collects text chunks and says when to flush them.

    Args:
        interval_s: the longest a chunk waits before it is flushed.
        min_tokens: the smallest batch size.
        max_tokens: the largest batch size.
        clock: a monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        interval_s: float,
        *,
        min_tokens: int = 4,
        max_tokens: int = MAX_BATCH_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 1 <= min_tokens <= max_tokens:
            raise ValueError("need 1 <= min_tokens <= max_tokens")
        self.interval_s = interval_s
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self._clock = clock
        self._parts: list[str] = []
        self._held_tokens = 0
        self._oldest: Optional[float] = None
        self._first_token: Optional[float] = None
        self._tokens_seen = 0
        self.flushes = 0

    @property
    def batch_tokens(self) -> int:
        """How many tokens make a batch, from the token rate seen so far."""
        if self._first_token is None or self._tokens_seen < 2:
            return self.min_tokens
        elapsed = self._clock() - self._first_token
        if elapsed <= 0:
            return self.max_tokens
        rate = (self._tokens_seen - 1) / elapsed
        return max(self.min_tokens, min(self.max_tokens, round(rate * self.interval_s)))

    def add(self, text: str, tokens: int = 1) -> Optional[str]:
        """Hold ``text``; returns the text to flush if a batch is complete."""
        now = self._clock()
        if self._first_token is None:
            self._first_token = now
        self._tokens_seen += tokens
        if text:
            self._parts.append(text)
            self._held_tokens += tokens
            if self._oldest is None:
                self._oldest = now
        # The first text goes out at once: the time to the first visible token
        # is what a reader notices most; batching starts after it.
        if self.flushes == 0 and text:
            return self.flush()
        if self._held_tokens >= self.batch_tokens or self._overdue(now):
            return self.flush()
        return None

    def due(self) -> Optional[str]:
        """The held text if it has waited long enough, else ``None``."""
        if self._overdue(self._clock()):
            return self.flush()
        return None

    def seconds_until_due(self) -> Optional[float]:
        """How long until held text must go out; ``None`` when nothing is held."""
        if self._oldest is None:
            return None
        return max(0.0, self._oldest + self.interval_s - self._clock())

    def flush(self) -> str:
        """Everything held, as one string (may be empty)."""
        text = "".join(self._parts)
        self._parts.clear()
        self._held_tokens = 0
        self._oldest = None
        if text:
            self.flushes += 1
        return text

    def _overdue(self, now: float) -> bool:
        return self._oldest is not None and now - self._oldest >= self.interval_s
