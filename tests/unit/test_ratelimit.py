"""The adaptive rate budget, on an injected clock: no test here sleeps."""

from __future__ import annotations

import threading

import pytest

from reconciler.aws.ratelimit import AdaptiveBucket
from reconciler.settings import parse_rate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket_on(t: FakeTime, max_rate: float = 10, burst: int = 10) -> AdaptiveBucket:
    return AdaptiveBucket(max_rate, burst, clock=t.clock, sleep=t.sleep)


def test_starts_at_the_upper_bound_with_a_full_burst() -> None:
    """Generous start: the whole burst goes at once, then requests are paced at max_rate."""
    t = FakeTime()
    bucket = bucket_on(t, max_rate=10, burst=3)
    assert bucket.rate == 10
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.1])
    assert t.now == pytest.approx(100.2)
    assert bucket.waited_seconds == pytest.approx(0.2)


def test_a_burst_of_throttled_answers_halves_the_rate_once() -> None:
    """Twenty threads throttled at the same moment are one signal: 10/s becomes 5/s."""
    t = FakeTime()
    bucket = bucket_on(t)
    halved = [bucket.throttled() for _ in range(20)]
    assert halved == [True] + [False] * 19
    assert bucket.rate == 5


def test_throttling_after_the_cooldown_halves_again() -> None:
    """One second later the rate has climbed a little (+0.2/s) and is halved from there."""
    t = FakeTime()
    bucket = bucket_on(t)
    bucket.throttled()
    t.now += 0.999
    assert not bucket.throttled()
    t.now += 0.001
    assert bucket.throttled()
    assert bucket.rate == pytest.approx((5 + 0.2) / 2)


def test_throttling_that_goes_on_holds_the_rate_at_a_32nd_of_the_bound() -> None:
    """One throttle a second: 64, 32, 16.6, 9.0, 5.1, 3.2, 2.2, then the floor 2/s."""
    t = FakeTime()
    bucket = bucket_on(t, max_rate=64)
    rates = []
    for _ in range(20):
        bucket.throttled()
        rates.append(bucket.rate)
        t.now += 1.0
    assert min(rates) == 2.0
    assert rates[-10:] == [2.0] * 10


def test_without_throttling_the_rate_climbs_back_slowly_and_stops_at_the_bound() -> None:
    """+max_rate/50 per second since the last halving: half to full in 25 s, then flat."""
    t = FakeTime()
    bucket = bucket_on(t, max_rate=50)
    bucket.throttled()
    rates = []
    for elapsed in (0, 1, 10, 25, 3600):
        t.now = 100.0 + elapsed
        rates.append(bucket.rate)
    assert rates == pytest.approx([25, 26, 35, 50, 50])


def test_a_halved_rate_paces_the_next_requests() -> None:
    t = FakeTime()
    bucket = bucket_on(t, max_rate=10, burst=1)
    assert bucket.reserve() == 0
    bucket.throttled()
    assert bucket.reserve() == pytest.approx(1 / 5)
    assert bucket.reserve() == pytest.approx(2 / 5)


def test_a_halved_rate_also_halves_the_burst_saved_up() -> None:
    """After a throttle and a quiet second, 5.2 tokens are saved (rate 5.2/s), not 10."""
    t = FakeTime()
    bucket = bucket_on(t, max_rate=10, burst=10)
    bucket.throttled()
    t.now += 1.0
    waits = [bucket.reserve() for _ in range(6)]
    assert waits[:5] == [0] * 5
    assert waits[5] == pytest.approx(0.8 / 5.2)


def test_a_quiet_spell_refills_up_to_burst_only() -> None:
    t = FakeTime()
    bucket = bucket_on(t, max_rate=1, burst=2)
    bucket.acquire()
    bucket.acquire()
    t.now += 3600
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 1.0])


@pytest.mark.parametrize("throttling", [False, True])
def test_threads_never_send_more_than_burst_plus_max_rate_times_elapsed(throttling: bool) -> None:
    """8 threads asking at once (some reporting throttles, or none: the bound is then
    tight): from the start at most burst + max_rate * t requests go out in t seconds."""
    lock = threading.Lock()
    seen = threading.local()
    ticks = [0.0]

    def clock() -> float:  # each reading advances a millisecond: time passes as threads ask
        with lock:
            ticks[0] += 0.001
            seen.now = ticks[0]
            return ticks[0]

    bucket = AdaptiveBucket(20, 5, clock=clock, sleep=lambda _: None)
    start = ticks[0]
    sent: list[float] = []

    def worker(index: int) -> None:
        for i in range(30):
            wait = bucket.acquire()
            at = seen.now + wait
            with lock:
                sent.append(at)
            if throttling and (index + i) % 7 == 0:
                bucket.throttled()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 240
    for count, at in enumerate(sorted(sent), start=1):
        assert count <= 5 + 20 * (at - start) + 1e-9
    assert (bucket.rate < 20) == throttling


@pytest.mark.parametrize(("max_rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_needs_a_positive_rate_and_burst(max_rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="max_rate > 0 and burst >= 1"):
        AdaptiveBucket(max_rate, burst)


@pytest.mark.parametrize(
    ("text", "per_second"), [("50/s", 50), ("600/m", 10), ("7200/h", 2), ("2.5", 2.5)]
)
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["0/s", "ten/s", "10/d", "-1", "lots", "inf", "nan/s", ""])
def test_parse_rate_rejects_and_says_what_is_wanted(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_rate(text)
    assert str(exc.value) == f"{text!r} is not a rate such as 50/s or 600/m"
