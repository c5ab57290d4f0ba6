"""The token bucket, on an injected clock: no test here sleeps."""

from __future__ import annotations

import pytest

from reconciler.aws.ratelimit import TokenBucket, parse_rate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_goes_at_once_then_the_rate_applies() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=10, burst=3, clock=t.clock, sleep=t.sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1])
    assert t.now == pytest.approx(100.2)


def test_never_more_than_burst_plus_rate_times_elapsed() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=5, burst=2, clock=t.clock, sleep=t.sleep)
    start = t.now
    sent_at = []
    for _ in range(50):
        bucket.acquire()
        sent_at.append(t.now)
    for i, at in enumerate(sent_at, start=1):
        assert i <= 2 + 5 * (at - start) + 1e-9


def test_reservations_queue_up_for_concurrent_callers() -> None:
    # Two threads that reserve at the same instant wait one and two intervals: no pile-up.
    t = FakeTime()
    bucket = TokenBucket(rate=2, burst=1, clock=t.clock, sleep=t.sleep)
    assert bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)


def test_a_quiet_spell_refills_up_to_burst_only() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=1, burst=2, clock=t.clock, sleep=t.sleep)
    bucket.acquire()
    bucket.acquire()
    t.now += 3600
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 1.0])


@pytest.mark.parametrize(
    ("text", "per_second"), [("10/s", 10), ("600/m", 10), ("7200/h", 2), ("2.5", 2.5)]
)
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["0/s", "ten/s", "10/d", "-1"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)
