"""KV caches that carry a vision model's prompts from one cell to the next.

mlx-vlm's :class:`~mlx_vlm.generate.PromptCacheState` holds one KV cache and
the token ids it covers; ``stream_generate`` then prefills only what follows
the longest common prefix, as long as that rest is text (mlx-vlm cannot add
new image tokens to a cache). That covers the two common cases: a follow-up
in a conversation about an image (the image, the earlier turns and answers
are not read again), and a new question about the same image in a plain cell.

mlx-vlm compares token ids only, and an image is a run of identical
placeholder tokens: two different images of one size read the same. So each
state also remembers the content keys of the images it has read, and a
prompt with other images starts from a fresh state (otherwise a question
about a new picture would be answered from the old one's KV cache).

One state is kept per conversation (and one for cells outside any), least
recently used out, with the warm model (its ``caches.prompts``): it is dropped with the model.
Runs on the runtime thread.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.vocabulary.values import PrefixCacheSettings

if TYPE_CHECKING:
    from mlx_vlm.generate import PromptCacheState


def _state_class() -> type[PromptCacheState]:
    from mlx_vlm.generate import PromptCacheState

    class ConversationCacheState(PromptCacheState):
        #: The content keys of the images the cache has read, in order.
        image_keys: tuple = ()

        def find_prefix_length(self, new_ids: list) -> int:
            # Re-running an earlier turn asks for a prompt the cache holds
            # whole; mlx-vlm reuses nothing then, since the model must read
            # at least the last token again to answer. Leave that one out.
            return min(super().find_prefix_length(new_ids), len(new_ids) - 1)

    return ConversationCacheState


class VisionPromptCaches:
    """One mlx-vlm prompt cache state per conversation of one vision model."""

    def __init__(self, settings: PrefixCacheSettings):
        self._states: "OrderedDict[Optional[str], Any]" = OrderedDict()
        self._make_state = _state_class()
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self.lookups = 0
        self.hits = 0
        self.prompt_tokens = 0
        self.reused_tokens = 0

    def apply(self, settings: PrefixCacheSettings) -> None:
        """Take new bounds, dropping states if they shrank."""
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self._trim()

    def check_out(self, conversation: Optional[str], image_keys: tuple = ()) -> PromptCacheState:
        """The state of ``conversation`` (a new one if none is kept, or if the
        one kept read other images than the first of ``image_keys``).

        It is taken out while its generation runs, so that a second
        generation of the same conversation at the same time (side by side)
        starts from a fresh state instead of sharing a KV cache.
        """
        state = self._states.pop(conversation, None)
        if state is not None and tuple(image_keys[: len(state.image_keys)]) != state.image_keys:
            state = None  # another picture behind the same placeholder tokens
        return state if state is not None else self._make_state()

    def check_in(
        self,
        conversation: Optional[str],
        state: PromptCacheState,
        token_ids_before: Optional[list[int]],
        last: Any,
        image_keys: tuple = (),
    ) -> None:
        """Keep ``state`` after its generation, and count what it saved.

        mlx-vlm records the tokens a cache covers only when a generation runs
        to its end; a cancelled one leaves the cache changed but the record
        stale, so such a state is dropped rather than trusted.
        """
        self.lookups += 1
        self.prompt_tokens += getattr(last, "prompt_tokens", 0) or 0
        reused = getattr(last, "cached_tokens", 0) or 0
        if reused:
            self.hits += 1
            self.reused_tokens += reused
        if state.token_ids is token_ids_before or state.cache is None:
            return
        state.image_keys = tuple(image_keys)
        self._states[conversation] = state
        self._states.move_to_end(conversation)
        self._trim()

    def _trim(self) -> None:
        while self._states and (
            len(self._states) > self.max_entries or self._held_bytes() > self.max_bytes
        ):
            self._states.popitem(last=False)

    def _held_bytes(self) -> int:
        return sum(_nbytes(state.cache) for state in self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        self._states.clear()

    def stats(self) -> dict:
        return {
            "entries": len(self._states),
            "bytes": self._held_bytes(),
            "lookups": self.lookups,
            "hits": self.hits,
            "prompt_tokens": self.prompt_tokens,
            "reused_tokens": self.reused_tokens,
        }


def _nbytes(cache: Optional[list[Any]]) -> int:
    return sum(getattr(layer, "nbytes", 0) or 0 for layer in cache or ())
