"""What a request says about its caches: the prompt prefix cache (in memory,
and its tier on disk) and the form of the KV cache (mlx-lm's rotating and
quantized caches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mlx_magic.units import gib_to_bytes
from mlx_magic.vocabulary import defaults


@dataclass(frozen=True)
class PrefixCacheSettings:
    """Whether and how much of earlier prompts' KV state to keep per model.

    ``disk_folder`` (``None``: no disk tier) also keeps, across restarts, the
    state of every prompt that read at least ``disk_min_tokens`` tokens from
    scratch, within ``disk_max_bytes`` (least recently used out).
    """

    enabled: bool = True
    max_entries: int = defaults.PREFIX_CACHE_ENTRIES
    max_bytes: int = gib_to_bytes(defaults.PREFIX_CACHE_GB)
    disk_folder: Optional[str] = None
    disk_max_bytes: int = gib_to_bytes(defaults.DISK_CACHE_GB)
    disk_min_tokens: int = defaults.DISK_CACHE_MIN_TOKENS


#: The bits a quantized KV cache may take (``--kv-bits``), and its group size.
KV_BITS = (4, 8)
KV_GROUP_SIZE = 64


@dataclass(frozen=True)
class KVCacheSettings:
    """The KV cache's form (``--max-kv-size``, ``--kv-bits``); the defaults
    keep every token at the model's precision, as mlx-lm does."""

    #: Keep only the newest this many tokens (and the first 4): mlx-lm's RotatingKVCache.
    max_size: Optional[int] = None
    #: Quantize keys and values to this many bits (4 or 8) from the first token.
    bits: Optional[int] = None

    @property
    def plain(self) -> bool:
        return self.max_size is None and self.bits is None

    def describe(self) -> Optional[str]:
        """The form in a few words, for the footer (``None``: the plain cache)."""
        parts = []
        if self.bits is not None:
            parts.append(f"{self.bits}-bit")
        if self.max_size is not None:
            parts.append(f"last {self.max_size:,} tokens")
        return f"KV cache {', '.join(parts)}" if parts else None
