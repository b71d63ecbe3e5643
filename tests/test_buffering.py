"""The token buffer flushes by size and by time, and adapts its batch size."""

import pytest

from mlx_magic.vocabulary.token_buffer import TokenBuffer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def feed(buffer, clock, count, gap_s):
    flushed = []
    for index in range(count):
        chunk = buffer.add(f"t{index} ")
        if chunk:
            flushed.append(chunk)
        clock.advance(gap_s)
        due = buffer.due()
        if due:
            flushed.append(due)
    tail = buffer.flush()
    if tail:
        flushed.append(tail)
    return flushed


def test_nothing_is_lost_and_order_is_kept():
    clock = FakeClock()
    buffer = TokenBuffer(0.2, clock=clock)
    flushed = feed(buffer, clock, 100, 0.001)
    assert "".join(flushed) == "".join(f"t{i} " for i in range(100))


def test_fast_model_gets_big_batches():
    clock = FakeClock()
    buffer = TokenBuffer(0.2, clock=clock)
    # 1000 tokens/s: a batch per 200 ms is 200 tokens, about five updates a second.
    flushed = feed(buffer, clock, 1000, 0.001)
    assert len(flushed) <= 1000 / 200 + 3
    assert 150 <= max(chunk.count("t") for chunk in flushed) <= 210


def test_a_very_fast_model_is_capped_at_max_tokens():
    clock = FakeClock()
    buffer = TokenBuffer(0.2, clock=clock)
    # 10,000 tokens/s: 2,000 per interval, capped at 512.
    flushed = feed(buffer, clock, 3000, 0.0001)
    assert max(chunk.count("t") for chunk in flushed) == 512


def test_slow_model_flushes_by_time_with_small_batches():
    clock = FakeClock()
    buffer = TokenBuffer(0.2, clock=clock)
    # 10 tokens/s: every token waits at most 200 ms, so each goes out alone or
    # in pairs; nothing is held for longer than the interval.
    flushed = feed(buffer, clock, 30, 0.1)
    assert all(chunk.count("t") <= 4 for chunk in flushed)
    assert len(flushed) >= 30 / 4


def test_batch_size_stays_within_bounds():
    clock = FakeClock()
    buffer = TokenBuffer(0.2, min_tokens=4, max_tokens=32, clock=clock)
    assert buffer.batch_tokens == 4
    for _ in range(50):
        buffer.add("x")
        clock.advance(0.0001)
    assert buffer.batch_tokens == 32


def test_first_text_goes_out_at_once():
    clock = FakeClock()
    buffer = TokenBuffer(0.5, clock=clock)
    assert buffer.add("") is None  # an empty chunk is not "the first text"
    assert buffer.add("Hello") == "Hello"
    assert buffer.add(" there") is None  # after it, batching


def test_time_bound_is_reported_and_honoured():
    clock = FakeClock()
    buffer = TokenBuffer(0.5, clock=clock)
    assert buffer.add("first") == "first"
    assert buffer.seconds_until_due() is None
    assert buffer.add("a") is None
    assert buffer.seconds_until_due() == pytest.approx(0.5)
    clock.advance(0.3)
    assert buffer.due() is None
    clock.advance(0.25)
    assert buffer.due() == "a"
    assert buffer.seconds_until_due() is None


def test_empty_text_is_counted_but_never_flushed_alone():
    clock = FakeClock()
    buffer = TokenBuffer(0.1, clock=clock)
    assert buffer.add("") is None
    clock.advance(1)
    assert buffer.due() is None
    assert buffer.flush() == ""
    assert buffer.flushes == 0


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        TokenBuffer(0.1, min_tokens=8, max_tokens=4)
