"""A cross-cell prompt prefix cache for one warm text model.

Cells in a notebook often share a long beginning: the chat template and its
system prompt, a pasted document with different questions after it, the
history of a conversation. Keeping the KV state of earlier prompts (and of
their answers) lets the next prompt prefill only what is new.

The storage and the longest-prefix search are mlx-lm's own
:class:`mlx_lm.models.cache.LRUPromptCache` (a token trie bounded by entries
and bytes, least recently used out); this module adds the bookkeeping the
runtime needs and the numbers ``%mlx status`` shows. It lives in the warm
model's caches (:class:`~mlx_magic.engine.model_cache.ModelCaches`), so it is dropped
with the model. Below it, a tier on disk (:mod:`~mlx_magic.engine.disk_cache`)
keeps long prompts across restarts: an entry read from there joins the trie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar, Union, cast

from mlx_magic.engine.disk_cache import DiskPromptCache, cached_length
from mlx_magic.vocabulary.values import PrefixCacheSettings

if TYPE_CHECKING:
    from mlx_magic.engine.vision_prompt_cache import VisionPromptCaches

#: A warm model's prompt cache: a text model's or a vision model's.
_Cache = TypeVar("_Cache", "PrefixCache", "VisionPromptCaches")


class _PromptCacheHolder(Protocol):
    prompts: Optional[Union[PrefixCache, VisionPromptCaches]]


class _Warm(Protocol):
    """What :func:`warm_prompt_cache` reads of a warm model (a
    :class:`~mlx_magic.engine.model_cache.WarmModel`, whose module imports this one)."""

    @property
    def caches(self) -> _PromptCacheHolder: ...


def warm_prompt_cache(
    warm: _Warm, settings: PrefixCacheSettings, make: Callable[[PrefixCacheSettings], _Cache]
) -> Optional[_Cache]:
    """The prompt cache kept with ``warm`` (``make(settings)`` on first use;
    new bounds applied after), or ``None`` when the cache is off."""
    if not settings.enabled:
        return None
    cache = warm.caches.prompts
    if cache is None:
        cache = warm.caches.prompts = make(settings)
    else:
        cache.apply(settings)
    # The kind ``make`` makes: a model keeps one kind of prompt cache.
    return cast(_Cache, cache)


class PrefixCache:
    """Longest-prefix reuse of KV caches across prompts of one model.

    The trie is keyed by the KV cache's form too (``"model"``, ``"kv8"``...:
    :func:`~mlx_magic.engine.disk_cache.kv_form`): a quantized state is never
    handed to a generation that asked for none, nor the other way round.
    """

    _MODEL = "model"

    def __init__(self, settings: PrefixCacheSettings):
        from mlx_lm.models.cache import LRUPromptCache

        self._store = LRUPromptCache(max_size=settings.max_entries, max_bytes=settings.max_bytes)
        self.lookups = 0
        self.hits = 0
        self.prompt_tokens = 0
        self.reused_tokens = 0
        self.disk_hits = 0
        self.disk_tokens = 0
        #: Of the last fetch's reused tokens, how many came from the disk.
        self.from_disk = 0

    def apply(self, settings: PrefixCacheSettings) -> None:
        """Take new bounds, evicting entries if they shrank."""
        self._store.max_size = settings.max_entries
        self._store.max_bytes = settings.max_bytes
        self._store.trim_to(n_sequences=settings.max_entries, n_bytes=settings.max_bytes)

    def fetch(
        self,
        model: Any,
        prompt: list[int],
        disk: Optional[DiskPromptCache] = None,
        form: str = _MODEL,
    ) -> tuple[list[Any], list[int]]:
        """A KV cache for ``prompt`` and the tokens still to prefill.

        The cache holds the longest prefix of ``prompt`` seen before (or is
        fresh); at least one token is always left to prefill, since the model
        must compute the logits of the last prompt token. When ``disk`` holds
        a longer one than memory does, it is read into memory first.
        """
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

        self.lookups += 1
        self.prompt_tokens += len(prompt)
        self.from_disk = 0
        cache, rest = self._store.fetch_nearest_cache(form, prompt)
        in_memory = len(prompt) - len(rest) if cache is not None else 0
        if disk is not None and self._read_from_disk(disk, prompt, in_memory, form):
            cache, rest = self._store.fetch_nearest_cache(form, prompt)
        if cache is None:
            return make_prompt_cache(model), list(prompt)
        rest = list(rest)
        if not rest:
            trim_prompt_cache(cache, 1)
            rest = list(prompt[-1:])
        reused = len(prompt) - len(rest)
        if reused <= 0:
            return make_prompt_cache(model), list(prompt)
        self.hits += 1
        self.reused_tokens += reused
        if self.from_disk:
            self.from_disk = reused
            self.disk_hits += 1
            self.disk_tokens += reused
        return cache, rest

    def _read_from_disk(
        self, disk: DiskPromptCache, prompt: list[int], in_memory: int, form: str
    ) -> bool:
        """Put the disk's nearest entry in the trie if it spares reading at
        least ``disk.min_tokens`` more than memory does: a file is read whole,
        which a short shared beginning (a chat template) does not repay. An
        entry larger than the trie's bound would be evicted at once: left."""
        entry, usable = disk.nearest(prompt)
        if entry is None or usable - in_memory < disk.min_tokens:
            return False
        try:
            if entry.path.stat().st_size > self._store.max_bytes:
                return False
        except FileNotFoundError:
            return False
        cache = disk.load(entry)
        if cache is None:
            return False
        self._store.insert_cache(form, list(entry.tokens), cache)
        self.from_disk = usable
        return True

    def store(self, tokens: list[int], cache: list[Any], form: str = _MODEL) -> None:
        """Keep ``cache``, which holds the KV state of ``tokens`` (or of a prefix)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        held = cached_length(cache)
        if held is None or held == 0:
            return
        if held > len(tokens):
            # Tokens fed to the model that we never saw (a look-ahead step).
            if not can_trim_prompt_cache(cache):
                return
            trim_prompt_cache(cache, held - len(tokens))
            held = len(tokens)
        self._store.insert_cache(form, list(tokens[:held]), cache)

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.trim_to(n_sequences=0)

    def stats(self) -> dict:
        return {
            "entries": len(self._store),
            "bytes": self._store.nbytes,
            "lookups": self.lookups,
            "hits": self.hits,
            "prompt_tokens": self.prompt_tokens,
            "reused_tokens": self.reused_tokens,
            "disk_hits": self.disk_hits,
            "disk_tokens": self.disk_tokens,
        }
