"""An adaptive rate budget: the AWS requests per second the daemon sends to one service of
one account in one region, halved when AWS throttles and raised again slowly.

Rules of this file:
- AIMD, as botocore's adaptive retry mode does for one client, but one bucket is shared by
  every client of its (account, region, service) (docs/decisions/0007-adaptive-rate.md):
  - the rate starts at its upper bound `max_rate` (`--aws-rate`, default 50/s): the daemon
    shares its reads across the fleet, so it sends few requests, and a generous start costs
    a real account nothing;
  - a throttled answer halves the current rate, at most once per `HALVING_COOLDOWN` (1 s):
    the throttled answers of requests already in flight (up to one per worker) are one
    signal, not twenty; never below `max_rate * FLOOR` (1/32: 1.6/s at 50/s). The floor is
    above what one second of recovery adds (1/50), so throttling that goes on holds the
    rate at the floor rather than letting it settle just above it;
  - while nothing is throttled the rate climbs back by `max_rate * RECOVERY` (1/50) per
    second since the last halving, capped at `max_rate`: from half to full in 25 s, from
    the floor in 48 s. Slow on purpose, so a throttling account sees a sawtooth just under
    its limit rather than a new burst of throttles every few seconds.
- The bucket reserves: a request takes a token even when none is left and waits until its
  turn, so over any t seconds from the start at most `burst + max_rate * t` requests go
  out, however many threads ask at once. Waiting happens outside the lock.
- Tokens accrue at the current rate (the mean of its values at both ends of the interval:
  the rate is concave in time, so this never counts more than the exact integral). Saved-up
  tokens are capped at `burst * rate / max_rate` (at least 1): a throttled account gets no
  full burst after a quiet spell.
- Clock and sleep are injected, so tests check the arithmetic without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]

HALVING_COOLDOWN = 1.0  # seconds: throttled answers closer together than this halve once
FLOOR = 1 / 32  # of max_rate: five halvings, and the rate stops going down
RECOVERY = 1 / 50  # of max_rate, added per second without throttling


class AdaptiveBucket:
    """At most `max_rate` requests a second, `burst` saved up; halved by `throttled()`.

    `acquire()` blocks until the caller's token is due.
    """

    def __init__(
        self,
        max_rate: float,
        burst: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not max_rate > 0 or burst < 1:
            raise ValueError("a rate budget needs max_rate > 0 and burst >= 1")
        self.max_rate = max_rate
        self.burst = burst
        self.floor = max_rate * FLOOR
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._low = max_rate  # the rate right after the last halving
        self._halved_at: float | None = None  # None: never throttled, the rate is max_rate
        self._tokens = float(burst)
        self._at = clock()
        self._waited = 0.0

    @property
    def rate(self) -> float:
        """Requests per second allowed now."""
        with self._lock:
            return self._rate_at(self._clock())

    @property
    def waited_seconds(self) -> float:
        """Seconds requests were told to wait in all: how tight the budget has been."""
        with self._lock:
            return self._waited

    def reserve(self) -> float:
        """Take a token; the seconds to wait before the request may go (0 when one was left)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= 1.0
            wait = -self._tokens / self._rate_at(now) if self._tokens < 0 else 0.0
            self._waited += wait
            return wait

    def acquire(self) -> float:
        """Take a token and sleep until it is due; the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def throttled(self) -> bool:
        """AWS throttled a request: halve the rate (True), unless halved within the cooldown."""
        with self._lock:
            now = self._clock()
            if self._halved_at is not None and now - self._halved_at < HALVING_COOLDOWN:
                return False
            self._refill(now)  # tokens earned so far count at the old rate
            self._low = max(self.floor, self._rate_at(now) / 2)
            self._halved_at = now
            self._tokens = min(self._tokens, self._capacity(self._low))
            return True

    def _rate_at(self, moment: float) -> float:
        if self._halved_at is None:
            return self.max_rate
        climbed = max(0.0, moment - self._halved_at) * self.max_rate * RECOVERY
        return min(self.max_rate, self._low + climbed)

    def _capacity(self, rate: float) -> float:
        return max(1.0, self.burst * rate / self.max_rate)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        mean_rate = (self._rate_at(self._at) + self._rate_at(now)) / 2
        self._tokens = min(self._capacity(self._rate_at(now)), self._tokens + elapsed * mean_rate)
        self._at = now
