"""Many stacks read in few calls: every stack of an account, one paged DescribeStacks.

Rules of this file (docs/decisions/0006-api-budget.md):
- One `StackCache` per daemon; per (region, role) it lists every stack with
  `describe_stacks()` without a name (50 stacks a page) at most once per `max_age`, and
  serves each stack's entry from that listing.
- It is worth it only when the account holds few stacks besides the managed ones: a listing
  that takes more pages than there are managed stacks turns batching off for that account
  for a while (the engine then reads stacks one by one, as before), unless more stacks are
  managed by then than that listing had pages.
- What it serves is at most `max_age` old, and begun after `not_before` when given (the
  fleet view passes the time of the daemon's own last update to that stack, so a step never
  sees a stack as it was before our update). Idle steps ask for one interval's age; steps
  that may act ask for one tick's age (reconciler/aws/fleet.py).
- `None` means "not served here, read it yourself" (not batched, or not in the listing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler import model
from reconciler.aws.clients import Clients
from reconciler.aws.observe import parameters as live_parameters

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.type_defs import StackTypeDef

Key = tuple[str, str | None]  # (region, role ARN)

BATCH_MIN = 4  # fewer managed stacks than this: reading each by name is as cheap
# A paced shared read begins at most once per DUTY times its own last duration: a listing
# of 1000 stacks takes seconds, and re-reading it back to back would crowd out the updates
# (and, on AWS, throttle the account). Steps that want a newer one wait for the next.
DUTY = 2.0


@dataclasses.dataclass(frozen=True)
class Listed:
    """A stack as one listing showed it, with when that listing began and ended (monotonic):
    it shows every change made before `started`, and none made after `at`."""

    stack: StackTypeDef | None  # None: not in the listing
    started: float
    at: float


class NotYet(Exception):
    """A newer shared read is wanted, but the last one began too recently: try next tick."""


def too_soon(now: float, started: float, ended: float) -> bool:
    """Whether a paced read that began at `started` and ended at `ended` may not repeat yet."""
    return now - started < DUTY * max(ended - started, 0.0)


OFF_FOR = 10  # listings skipped (in units of max_age) once batching did not pay off


@dataclasses.dataclass
class _Listing:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    stacks: dict[str, StackTypeDef] = dataclasses.field(default_factory=dict)
    at: float = float("-inf")  # monotonic time the last listing ended
    started: float = float("-inf")  # ... and began: it shows every change made before this
    off_until: float = float("-inf")  # batching not worth it before this time
    pages: int = 0


class StackCache:
    """Stacks by name (and id) per account, refreshed by one paged listing when too old."""

    def __init__(self, clients: Clients, clock: Callable[[], float] = time.monotonic) -> None:
        self._clients = clients
        self._clock = clock
        self._lock = threading.Lock()
        self._listings: dict[Key, _Listing] = {}
        self.listings = 0  # how many listings were made; tests and the benchmark read it

    def lookup(
        self,
        key: Key,
        stack_name: str,
        max_age: dt.timedelta,
        managed: int,
        not_before: float = float("-inf"),
        paced: bool = False,
    ) -> StackTypeDef | None:
        """The stack from a listing at most `max_age` old and begun after `not_before`
        (monotonic); None to read it by name instead. `paced`: raise NotYet rather than
        list again sooner than DUTY times the last listing took."""
        read = self.read(key, stack_name, max_age, managed, not_before, paced)
        return read.stack if read is not None else None

    def read(
        self,
        key: Key,
        stack_name: str,
        max_age: dt.timedelta,
        managed: int,
        not_before: float = float("-inf"),
        paced: bool = False,
    ) -> Listed | None:
        """As `lookup`, with when the listing that shows the stack began and ended: None
        when not batched, a Listed without a stack when the listing does not have it."""
        if managed < BATCH_MIN:
            return None
        listing = self._listing(key)
        with listing.lock:  # one thread lists; the others wait for its answer
            now = self._clock()
            # Off only while the last listing's pages still outnumber the managed stacks:
            # at start the specs are counted while the first steps run, so the first listing
            # may be judged against a handful of them; that must not stop batching for 1000.
            if now < listing.off_until and listing.pages > managed:
                return None
            if now - listing.at > max_age.total_seconds() or listing.started < not_before:
                if paced and too_soon(now, listing.started, listing.at):
                    raise NotYet(f"the stacks of {key[0]} were listed moments ago")
                self._refresh(key, listing)
                if listing.pages > managed:
                    listing.off_until = now + OFF_FOR * max_age.total_seconds()
                    return None
            return Listed(listing.stacks.get(stack_name), listing.started, listing.at)

    def _listing(self, key: Key) -> _Listing:
        with self._lock:
            return self._listings.setdefault(key, _Listing())

    def _refresh(self, key: Key, listing: _Listing) -> None:
        region, role = key
        cfn = self._clients.cloudformation(region, role)
        started = self._clock()
        stacks: dict[str, StackTypeDef] = {}
        pages = 0
        for page in cfn.get_paginator("describe_stacks").paginate():
            pages += 1
            for stack in page["Stacks"]:
                # A spec may name its stack by name or by id: serve both.
                stacks[stack["StackName"]] = stack
                stacks[stack["StackId"]] = stack
        listing.stacks, listing.pages = stacks, pages
        listing.started, listing.at = started, self._clock()
        self.listings += 1


def stack_view(stack: StackTypeDef) -> model.StackView:
    """The planner's view of a listed stack, without the events call observe() may add:
    the time of the last update only matters to a step that goes on to read afresh."""
    updated = stack.get("LastUpdatedTime")
    return model.StackView(
        status=stack["StackStatus"],
        parameters=live_parameters(stack),
        last_updated=updated.astimezone(dt.UTC) if updated is not None else None,
        status_reason=stack.get("StackStatusReason"),
    )
