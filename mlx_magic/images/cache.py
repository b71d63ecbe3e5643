"""The decoded-image cache: re-reading a source skips decoding.

Imports nothing of IPython or MLX; :func:`~mlx_magic.images.load_images`
chooses the keys (see :class:`DecodedImageCache`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from PIL import Image


@dataclass(frozen=True)
class Decoded:
    """What the decode cache keeps: enough to rebuild a LoadedImage."""

    image: Image.Image
    original_size: tuple[int, int]
    content_key: str


class DecodedImageCache:
    """A bounded LRU cache of decoded images, so re-reading a source skips decoding.

    Keys are chosen by :func:`load_images`:

    * every source read as encoded bytes (files, URLs, ``data:`` URIs, bytes
      variables, IPython Images, figures): ``sha256:<hash of the bytes>``.
      Hashing a file costs far less than decoding it, and it is the only
      key that cannot be fooled: a file rewritten with the same name, size
      and mtime second is a new entry. A URL alone is not a safe key (the
      server may change what it serves), so URLs are still
      downloaded every time; only decoding is skipped.

    The cache holds its own copies: callers get a fresh copy on every hit and
    every store, so drawing on a returned image cannot corrupt the cache.

    Args:
        max_entries: Most images kept.
        max_bytes: Most bytes of pixels kept (width × height × 3 per image).
            An image larger than this on its own is not cached.
    """

    def __init__(self, max_entries: int = 32, max_bytes: int = 512 * 1024**2):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._entries: "OrderedDict[str, Decoded]" = OrderedDict()
        self._bytes = 0
        # The magic may load images from a worker thread while the user's
        # cell runs another load; the lock keeps the counters and order sane.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Optional[Decoded]:
        """The cached decode for ``key`` (a copy), counted as a hit or a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return Decoded(entry.image.copy(), entry.original_size, entry.content_key)

    def put(self, key: str, decoded: Decoded) -> None:
        """Keep a copy of ``decoded`` under ``key``, evicting the least recently used."""
        size = _pixel_bytes(decoded.image)
        if size > self.max_bytes:
            return
        stored = Decoded(decoded.image.copy(), decoded.original_size, decoded.content_key)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= _pixel_bytes(old.image)
            self._entries[key] = stored
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= _pixel_bytes(evicted.image)
                self.evictions += 1

    def clear(self) -> None:
        """Drop every image (the counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict:
        """Counters and sizes: entries, bytes, hits, misses, evictions and the bounds."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "max_entries": self.max_entries,
                "max_bytes": self.max_bytes,
            }


def _pixel_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())
