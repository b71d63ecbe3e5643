"""Warm models kept in memory, least recently used first out.

The cache knows nothing of MLX: the runtime gives it entries with their size
in bytes and a ``release`` callback that frees a model's memory (on the
runtime thread, where the model lives).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

from mlx_magic.vocabulary.values import ModelInfo

if TYPE_CHECKING:
    from mlx_vlm.vision_cache import VisionFeatureCache

    from mlx_magic.engine.prefix_cache import PrefixCache
    from mlx_magic.engine.vision_prompt_cache import VisionPromptCaches


@dataclass
class ModelCaches:
    """The caches that live and die with one warm model.

    Attributes:
        prompts: the prompt prefix cache: a :class:`PrefixCache` for a text
            model, a :class:`VisionPromptCaches` (one per conversation) for a
            vision model; ``None`` until first used or while the cache is off.
        vision_features: mlx-vlm's cache of vision-encoder outputs.
        grammar_tokenizer: llguidance's view of the tokenizer, for ``--schema``
            (building it walks the whole vocabulary, ~1.5 s).
    """

    prompts: Optional[Union[PrefixCache, VisionPromptCaches]] = None
    vision_features: Optional[VisionFeatureCache] = None
    grammar_tokenizer: Optional[Any] = None

    def present(self) -> list:
        """The caches that exist, for clearing and counting."""
        return [cache for cache in (self.prompts, self.vision_features) if cache is not None]

    def drop(self) -> None:
        self.prompts = None
        self.vision_features = None
        self.grammar_tokenizer = None


@dataclass
class WarmModel:
    """A loaded model and what was loaded with it (tokenizer or processor)."""

    name: str
    key: str
    kind: str
    model: Any
    tokenizer: Any
    config: dict
    memory_bytes: int
    load_s: float
    uses: int = 0
    last_used: float = field(default_factory=time.monotonic)
    caches: ModelCaches = field(default_factory=ModelCaches)
    #: The last measured prompt-reading speed (tokens/s), which sizes the
    #: prefill steps so that a cancel is seen within about a second.
    prefill_tps: Optional[float] = None
    #: Where it was loaded from (a folder), and how it was named (``embedded``, ``hub``...).
    path: Optional[str] = None
    source: str = "folder"
    #: The model's half of every answer's provenance, made on first use.
    provenance: Optional[dict] = None
    #: Its decoding speed in its latest answer without a draft model (tokens/s):
    #: what a ``--draft`` answer's footer compares itself with.
    undrafted_tps: Optional[float] = None
    #: The same, per prompt (a hash of its token ids): the same cell without a draft.
    undrafted_tps_by_prompt: dict = field(default_factory=dict)

    def info(self) -> ModelInfo:
        """The model as the runtime reports it (``%mlx models``, ``%mlx status``)."""
        features, prompts = self.caches.vision_features, self.caches.prompts
        return ModelInfo(
            name=self.name,
            key=self.key,
            kind=self.kind,
            memory_bytes=self.memory_bytes,
            load_s=self.load_s,
            uses=self.uses,
            vision_features=features.stats() if features is not None else None,
            prefix_cache=prompts.stats() if prompts is not None else None,
        )


def config_dict(config: Any) -> dict:
    """A model's config as a dict: mlx-lm loads a dict, mlx-vlm a config object."""
    return config if isinstance(config, dict) else config.__dict__


def text_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer that encodes and decodes text: a vision model's "tokenizer"
    is its processor, which holds one (``.tokenizer``); a text model's is itself."""
    return getattr(tokenizer, "tokenizer", tokenizer)


class WarmModelCache:
    """An LRU cache of :class:`WarmModel` bounded by a memory budget.

    A model larger than the whole budget is still kept while it is the only
    one: the budget decides what to evict, never whether the model the user
    asked for may load.
    """

    def __init__(self, budget_bytes: int, release: Callable[[WarmModel], None]):
        self.budget_bytes = budget_bytes
        self._release = release
        self._entries: "OrderedDict[str, WarmModel]" = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[WarmModel]:
        return iter(list(self._entries.values()))

    @property
    def total_bytes(self) -> int:
        return sum(entry.memory_bytes for entry in self._entries.values())

    def get(self, key: str) -> Optional[WarmModel]:
        """The warm model for ``key``, marked as just used; ``None`` if cold."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            entry.uses += 1
            entry.last_used = time.monotonic()
        return entry

    def put(self, entry: WarmModel, keep: frozenset = frozenset()) -> list[str]:
        """Add a freshly loaded model; returns the keys evicted to fit it.

        Models in ``keep`` (in use right now, e.g. side by side) are not evicted.
        """
        if entry.key in self._entries:
            self.remove(entry.key)
        self._entries[entry.key] = entry
        return self.shrink_to_budget(keep | {entry.key})

    def shrink_to_budget(self, keep: frozenset = frozenset()) -> list[str]:
        """Evict least recently used models (not in ``keep``) until the budget holds."""
        evicted = []
        while self.total_bytes > self.budget_bytes:
            candidates = [key for key in self._entries if key not in keep]
            if not candidates or len(self._entries) <= 1:
                break
            self.remove(candidates[0])
            evicted.append(candidates[0])
        return evicted

    def remove(self, key: str) -> bool:
        """Drop one model and free its memory; false if it was not warm."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._release(entry)
        return True

    def clear(self) -> list[str]:
        """Drop every model; returns their keys."""
        keys = list(self._entries)
        for key in keys:
            self.remove(key)
        return keys
