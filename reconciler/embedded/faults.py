"""Faults the emulator injects into requests: throttling and server errors on a share of calls.

Rules of this file:
- `Faults` is consulted once per request, before moto sees it; it decides, it does not render.
- Every setting can change while the server runs (tests turn faults on mid-rollout), so all
  state sits behind one lock.
- Randomness comes from a seeded `random.Random`, so a failing run can be replayed.
"""

from __future__ import annotations

import dataclasses
import random
import threading


@dataclasses.dataclass(frozen=True)
class Fault:
    """An error answer to send instead of moto's: HTTP status, AWS error code, message.

    With a `delay`, the answer comes that many seconds late (a hung endpoint: the client's
    read timeout fires first); status 0 then lets the request through to moto afterwards."""

    status: int
    code: str
    message: str
    delay: float = 0.0


THROTTLING = Fault(400, "Throttling", "Rate exceeded")
# What a crashed front end answers (werkzeug's page, as moto's server sends on an exception):
# botocore parses only bodies starting `<html>` as generic, so this one raises its parser error.
HTML_PAGE = Fault(500, "", "<!doctype html>\n<html lang=en>\n<title>500 Internal Error</title>")
INTERNAL = Fault(500, "InternalFailure", "We encountered an internal error. Please try again.")


@dataclasses.dataclass(frozen=True)
class _Rule:
    fault: Fault
    fraction: float
    service: str
    actions: frozenset[str] | None  # None: every action of the service


class Faults:
    """Which requests fail: rules of (service, actions, fraction, fault), checked in order."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self.injected = 0  # how many requests got a fault; tests assert faults really happened

    def throttle(
        self,
        fraction: float,
        service: str = "cloudformation",
        actions: set[str] | None = None,
    ) -> None:
        """Answer `Throttling: Rate exceeded` on `fraction` (0..1) of the service's calls."""
        self.add(THROTTLING, fraction, service, actions)

    def server_errors(
        self,
        fraction: float,
        service: str = "cloudformation",
        actions: set[str] | None = None,
    ) -> None:
        """Answer HTTP 500 `InternalFailure` on `fraction` of the service's calls."""
        self.add(INTERNAL, fraction, service, actions)

    def html_pages(
        self,
        fraction: float,
        service: str = "cloudformation",
        actions: set[str] | None = None,
    ) -> None:
        """Answer `fraction` of the service's calls with a 500 HTML page botocore cannot parse."""
        self.add(HTML_PAGE, fraction, service, actions)

    def stall(
        self,
        seconds: float,
        fraction: float,
        service: str = "cloudformation",
        actions: set[str] | None = None,
    ) -> None:
        """Hold `fraction` of the service's calls `seconds` before answering them normally."""
        self.add(Fault(0, "", "", delay=seconds), fraction, service, actions)

    def add(
        self, fault: Fault, fraction: float, service: str, actions: set[str] | None = None
    ) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction {fraction} is not between 0 and 1")
        rule = _Rule(fault, fraction, service, None if actions is None else frozenset(actions))
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def decide(self, service: str, action: str) -> Fault | None:
        """The fault for this request, or None to let it through."""
        with self._lock:
            for rule in self._rules:
                if rule.service != service:
                    continue
                if rule.actions is not None and action not in rule.actions:
                    continue
                if self._random.random() < rule.fraction:
                    self.injected += 1
                    return rule.fault
        return None
