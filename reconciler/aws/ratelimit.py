"""A token bucket: the most AWS requests per second the daemon sends to one account.

Rules of this file:
- The bucket reserves: a request takes a token even when none is left and waits until its
  turn, so over any window of t seconds at most `burst + rate * t` requests go out, however
  many threads ask at once. Waiting happens outside the lock.
- Clock and sleep are injected, so tests check the arithmetic without sleeping.
- `parse_rate` reads the `--aws-rate` flag: `10/s`, `600/m`, or a bare number per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float:
    """Requests per second from `10/s`, `600/m`, `36000/h` or `10`; ValueError otherwise."""
    number, _, unit = text.strip().partition("/")
    seconds = _UNITS.get(unit.strip() or "s")
    rate = float(number)
    if seconds is None or not rate > 0:
        raise ValueError(f"{text!r} is not a rate such as 10/s or 600/m")
    return rate / seconds


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `acquire()` blocks until one is due."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = clock()
        self.waited = 0.0  # seconds spent waiting in all; a gauge of how tight the budget is

    def reserve(self) -> float:
        """Take a token; the seconds to wait before the request may go (0 when one was left)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited += wait
            return wait

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
