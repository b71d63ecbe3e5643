"""The warm-model cache evicts least recently used models beyond its budget."""

from mlx_magic.engine.model_cache import WarmModel, WarmModelCache


def entry(key, size):
    return WarmModel(
        name=key,
        key=key,
        kind="text",
        model=object(),
        tokenizer=None,
        config={},
        memory_bytes=size,
        load_s=0.1,
    )


def test_lru_eviction_respects_budget_and_releases():
    released = []
    cache = WarmModelCache(100, release=lambda e: released.append(e.key))
    cache.put(entry("a", 40))
    cache.put(entry("b", 40))
    assert cache.get("a") is not None  # a is now the most recent
    evicted = cache.put(entry("c", 40))
    assert evicted == ["b"]
    assert released == ["b"]
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.total_bytes == 80


def test_a_model_bigger_than_the_budget_still_loads_alone():
    released = []
    cache = WarmModelCache(10, release=lambda e: released.append(e.key))
    cache.put(entry("small", 5))
    cache.put(entry("huge", 50))
    assert [e.key for e in cache] == ["huge"]
    assert released == ["small"]


def test_get_counts_uses_and_misses_return_none():
    cache = WarmModelCache(100, release=lambda e: None)
    cache.put(entry("a", 1))
    cache.get("a")
    cache.get("a")
    assert cache.get("a").uses == 3
    assert cache.get("zzz") is None


def test_shrinking_the_budget_evicts_and_clear_releases_everything():
    released = []
    cache = WarmModelCache(100, release=lambda e: released.append(e.key))
    for key in "abc":
        cache.put(entry(key, 30))
    cache.budget_bytes = 40
    assert cache.shrink_to_budget() == ["a", "b"]
    assert cache.clear() == ["c"]
    assert released == ["a", "b", "c"]
    assert len(cache) == 0
