"""The StackCache on an injected clock and a fake paged DescribeStacks: no test here sleeps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, cast

import pytest

from reconciler.aws.batch import BATCH_MIN, DUTY, OFF_FOR, NotYet, StackCache
from reconciler.aws.clients import Clients

KEY = ("us-east-1", None)
INTERVAL = dt.timedelta(seconds=30)
PAGE = 50


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now


class FakeCloudFormation:
    """describe_stacks without a name, 50 stacks a page; each page takes `page_seconds`."""

    def __init__(self, t: FakeTime, n: int, page_seconds: float = 0.0) -> None:
        self.t, self.n, self.page_seconds = t, n, page_seconds
        self.pages = 0

    def get_paginator(self, operation: str) -> FakeCloudFormation:
        assert operation == "describe_stacks"
        return self

    def paginate(self) -> Iterator[dict[str, Any]]:
        for start in range(0, self.n, PAGE):
            self.t.now += self.page_seconds
            self.pages += 1
            yield {
                "Stacks": [
                    {"StackName": f"s{i}", "StackId": f"id-s{i}", "StackStatus": "UPDATE_COMPLETE"}
                    for i in range(start, min(start + PAGE, self.n))
                ]
            }


class FakeClients:
    def __init__(self, cfn: FakeCloudFormation) -> None:
        self.cfn = cfn

    def cloudformation(self, region: str, role_arn: str | None = None) -> FakeCloudFormation:
        return self.cfn


def cache(n: int, page_seconds: float = 0.0) -> tuple[StackCache, FakeCloudFormation, FakeTime]:
    t = FakeTime()
    cfn = FakeCloudFormation(t, n, page_seconds)
    return StackCache(cast(Clients, FakeClients(cfn)), clock=t.clock), cfn, t


def test_one_listing_serves_every_stack_for_one_interval() -> None:
    c, cfn, t = cache(200)
    for i in range(200):
        listed = c.lookup(KEY, f"s{i}", INTERVAL, managed=200)
        assert listed is not None and listed["StackName"] == f"s{i}"
    assert c.lookup(KEY, "id-s7", INTERVAL, managed=200) is not None  # by id too
    assert (c.listings, cfn.pages) == (1, 4)
    t.now += 31
    assert c.lookup(KEY, "s0", INTERVAL, managed=200) is not None
    assert (c.listings, cfn.pages) == (2, 8)


def test_a_slow_listing_is_made_once_per_interval_not_over_and_over() -> None:
    # 1000 stacks, 20 pages of 1.5 s each: the listing takes as long as the interval.
    c, _, t = cache(1000, page_seconds=1.5)
    for i in range(1000):
        assert c.lookup(KEY, f"s{i}", INTERVAL, managed=1000) is not None
        t.now += 0.02  # 1000 steps spread over the interval
    assert c.listings == 1


def test_few_managed_stacks_are_read_by_name() -> None:
    c, _, _ = cache(10)
    assert c.lookup(KEY, "s0", INTERVAL, managed=BATCH_MIN - 1) is None
    assert c.listings == 0


def test_an_account_full_of_other_stacks_is_not_listed_again_for_a_while() -> None:
    c, _, t = cache(1000)  # 20 pages for 5 managed stacks: batching does not pay
    assert c.lookup(KEY, "s0", INTERVAL, managed=5) is None
    t.now += OFF_FOR * INTERVAL.total_seconds() - 1
    assert c.lookup(KEY, "s0", INTERVAL, managed=5) is None
    assert c.listings == 1
    t.now += 2
    assert c.lookup(KEY, "s0", INTERVAL, managed=5) is None
    assert c.listings == 2


def test_batching_resumes_as_soon_as_enough_stacks_are_managed() -> None:
    # The daemon's start: specs are tracked one by one while the first steps already run,
    # so the first listing of 1000 stacks (20 pages) is judged against 5 managed specs.
    # Batching must not stay off for OFF_FOR intervals once all 1000 are managed.
    c, _, t = cache(1000)
    assert c.lookup(KEY, "s0", INTERVAL, managed=5) is None
    t.now += 1
    assert c.lookup(KEY, "s1", INTERVAL, managed=1000) is not None  # the same listing
    assert c.listings == 1
    t.now += 31
    assert c.lookup(KEY, "s2", INTERVAL, managed=1000) is not None
    assert c.listings == 2


def test_a_paced_lookup_waits_rather_than_listing_again_back_to_back() -> None:
    """A listing that took 10 s is not begun again within DUTY x 10 s of the last one: a step
    that wants a newer one (its stack was updated since) is told NotYet, then served."""
    c, _, t = cache(200, page_seconds=2.5)  # 4 pages: 10 s
    assert c.lookup(KEY, "s0", INTERVAL, managed=200, paced=True) is not None
    updated = t.now  # we just updated s0: only a listing begun after this serves it
    t.now += 1
    with pytest.raises(NotYet):
        c.lookup(KEY, "s0", INTERVAL, managed=200, not_before=updated, paced=True)
    assert c.listings == 1
    t.now += DUTY * 10
    assert c.lookup(KEY, "s0", INTERVAL, managed=200, not_before=updated, paced=True) is not None
    assert c.listings == 2


def test_an_unpaced_lookup_lists_again_whenever_it_must() -> None:
    c, _, t = cache(200, page_seconds=2.5)
    c.lookup(KEY, "s0", INTERVAL, managed=200)
    updated = t.now
    t.now += 1
    assert c.lookup(KEY, "s0", INTERVAL, managed=200, not_before=updated) is not None
    assert c.listings == 2
