"""Leases against the emulator's DynamoDB, on an injected clock: one holder at a time, an
expired lease can be taken over, every acquisition moves the fence, and a stale holder's
writes are refused and change nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from reconciler import model
from reconciler.store import DynamoStore, Lease, LeaseLost
from tests.replicas.conftest import FakeClock

TTL = 30.0
AT = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def lease(dynamodb: Any, table: str, holder: str, clock: FakeClock) -> Lease:
    return Lease(dynamodb, table, holder, ttl=TTL, clock=clock)


def test_first_acquisition_gets_fence_1_and_a_second_replica_is_refused(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    assert a.acquire("api") == 1
    assert b.acquire("api") is None
    assert b.holder("api") == "a"


def test_renewal_by_the_holder_keeps_the_fence_and_pushes_expiry(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    a.acquire("api")
    clock.advance(TTL * 0.9)
    assert a.acquire("api") == 1  # held: acquire renews, no new fence
    clock.advance(TTL * 0.9)  # past the first expiry, not the renewed one
    assert b.acquire("api") is None
    assert a.renew("api")


def test_an_expired_lease_is_taken_over_with_the_next_fence(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    assert a.acquire("api") == 1
    clock.advance(TTL + 1)
    assert b.acquire("api") == 2
    assert not a.renew("api"), "the old holder's renewal must fail after a takeover"
    assert a.fence("api") is None


def test_the_holder_stops_acting_a_margin_before_expiry(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a = lease(dynamodb, table, "a", clock)
    a.acquire("api")
    assert a.held("api") == 1
    clock.advance(TTL - a.margin)  # the lease still runs, but too close to its end to act
    assert a.held("api") is None
    assert a.fence("api") == 1


def test_release_lets_another_replica_take_over_at_once(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    a.acquire("api")
    a.release("api")
    assert b.acquire("api") == 2


def test_a_restarted_replica_with_the_same_id_takes_a_new_fence(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    first, again = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "a", clock)
    assert first.acquire("api") == 1
    assert again.acquire("api") == 2  # fences out whatever the old process still sends
    assert not first.renew("api")


def test_leases_are_per_spec(dynamodb: Any, table: str, clock: FakeClock) -> None:
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    assert a.acquire("api") == 1
    assert b.acquire("worker") == 1


def test_a_stale_holders_write_is_refused_and_changes_nothing(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    store_a, store_b = DynamoStore(dynamodb, table, a), DynamoStore(dynamodb, table, b)
    a.acquire("api")
    store_a.apply("api", [model.StartRollout("ami-2", "r1", "ami-1", AT)])
    clock.advance(TTL + 1)
    b.acquire("api")
    assert a.fence("api") == 1  # `a` has not noticed: no renewal ran since
    before = store_b.load("api")
    with pytest.raises(LeaseLost, match="no longer current"):
        store_a.apply("api", [model.FinishRollout("failed", AT, "stale")])
    assert a.fence("api") is None, "a refused write tells the lease it was lost"
    with pytest.raises(LeaseLost, match="holds no lease"):
        store_a.apply("api", [model.ClearFailure()])
    assert store_b.load("api") == before
    store_b.apply("api", [model.FinishRollout("succeeded", AT)])
    assert store_b.load("api").rollout is not None


def test_a_store_without_the_lease_refuses_to_write(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    a = lease(dynamodb, table, "a", clock)
    with pytest.raises(LeaseLost, match="holds no lease"):
        DynamoStore(dynamodb, table, a).apply("api", [model.ClearFailure()])


def test_a_stale_holders_control_is_refused_but_a_non_holders_is_accepted(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    """A control from a replica that believes it holds an old fence fails; once it knows
    it holds nothing, a person's pause through it is written (unfenced) like any replica's."""
    a, b = lease(dynamodb, table, "a", clock), lease(dynamodb, table, "b", clock)
    store_a = DynamoStore(dynamodb, table, a)
    a.acquire("api")
    clock.advance(TTL + 1)
    b.acquire("api")
    with pytest.raises(LeaseLost, match="no longer current"):
        store_a.pause("api", "stale", AT)
    store_a.pause("api", "incident 42", AT)
    pause = DynamoStore(dynamodb, table, b).load("api").runtime_pause
    assert pause is not None and pause.reason == "incident 42"
