"""Two replicas (two DynamoStores on one table, each with its own Lease on its own specs)
take a fleet's slots: a start that read the slot, then lost it to the other replica before
its write, is refused by the slot item's version (or the halt check) and decides again from
what it reads next. The race is interleaved by hand: the rival's call runs inside ours,
between our reads and our TransactWriteItems.

Not with threads: moto's TransactWriteItems takes no lock (a cancelled one even restores a
copy of the table over writes made meanwhile), so a threaded race would test moto.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from reconciler import model
from reconciler.store import DynamoStore, Lease, LeaseLost, StoreError
from reconciler.store.dynamo import SLOT_ATTEMPTS
from tests.replicas.conftest import FakeClock

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
FLEET = "web"


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def start(minutes: float) -> list[model.Effect]:
    return [model.StartRollout("ami-2", "r1", "ami-1", at(minutes))]


class RivalFirst:
    """A DynamoDB client whose first `times` TransactWriteItems let `rival` run to the end
    before they are sent: the read-then-write race, lost."""

    def __init__(self, client: Any, rival: Callable[[], object], times: int = 1) -> None:
        self._client, self._rival, self._times = client, rival, times
        self.transactions = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self.transactions <= self._times:
            self._rival()
        return self._client.transact_write_items(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def replica(dynamodb: Any, table: str, clock: FakeClock, rid: str, *specs: str) -> Lease:
    lease = Lease(dynamodb, table, rid, ttl=30.0, clock=clock)
    for name in specs:
        assert lease.acquire(name) is not None
    return lease


@pytest.mark.parametrize("slot_item", ["new", "existing"])
def test_two_replicas_race_for_the_last_slot_and_exactly_one_wins(
    dynamodb: Any, table: str, clock: FakeClock, slot_item: str
) -> None:
    """Replica A reads a free slot; replica B takes it before A writes; A's write fails on
    the slot's version (absent, or the one A read), A reads again and is refused."""
    if slot_item == "existing":  # a slot item with a stale holder: "version = :v" is checked
        setup = DynamoStore(dynamodb, table)
        assert setup.start_member("c", start(-10), model.Claim(FLEET, 0, 1))
        setup.apply("c", [model.FinishRollout("succeeded", at(-5))])
    lease_a = replica(dynamodb, table, clock, "replica-a", "a")
    lease_b = replica(dynamodb, table, clock, "replica-b", "b")
    store_b = DynamoStore(dynamodb, table, lease_b)
    won: dict[str, bool] = {}

    def rival() -> None:
        won["b"] = store_b.start_member("b", start(1), model.Claim(FLEET, 0, 1))

    client_a = RivalFirst(dynamodb, rival)
    store_a = DynamoStore(client_a, table, lease_a)
    won["a"] = store_a.start_member("a", start(2), model.Claim(FLEET, 0, 1))

    assert won == {"a": False, "b": True}
    assert client_a.transactions == 1  # refused on reading again, not by writing blindly
    assert store_a.load("a") == model.Memory()
    assert store_b.fleet(FLEET).holders == {0: {"b": at(1)}}


def test_a_lost_race_with_a_slot_left_retries_and_both_start(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    """With two slots, A's first write loses to B's but A's retry counts B and takes the
    other slot: B's holding is kept, not overwritten."""
    lease_a = replica(dynamodb, table, clock, "replica-a", "a")
    lease_b = replica(dynamodb, table, clock, "replica-b", "b")
    store_b = DynamoStore(dynamodb, table, lease_b)
    client_a = RivalFirst(
        dynamodb, lambda: store_b.start_member("b", start(1), model.Claim(FLEET, 0, 2))
    )
    store_a = DynamoStore(client_a, table, lease_a)

    assert store_a.start_member("a", start(2), model.Claim(FLEET, 0, 2)) is True
    assert client_a.transactions == 2
    assert store_a.fleet(FLEET).holders == {0: {"a": at(2), "b": at(1)}}
    rollout = store_a.load("a").rollout
    assert rollout is not None and rollout.active


def test_a_halt_between_read_and_write_refuses_the_start(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    """A halt set by another replica after A read the fleet unhalted fails A's condition
    check; A reads the halt and writes nothing."""
    lease_a = replica(dynamodb, table, clock, "replica-a", "a")
    other = DynamoStore(dynamodb, table)
    halt = model.Halt("budget spent", at(1), "budget", "a=ami-2")
    client_a = RivalFirst(dynamodb, lambda: other.halt_fleet(FLEET, halt))
    store_a = DynamoStore(client_a, table, lease_a)

    assert store_a.start_member("a", start(2), model.Claim(FLEET, 0, 5)) is False
    assert client_a.transactions == 1
    assert store_a.load("a") == model.Memory()
    assert store_a.fleet(FLEET) == model.FleetMemory(halt=halt)


def test_a_replica_that_lost_its_lease_takes_no_slot(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    """The fence is checked in the slot's transaction: a replica whose lease was taken over
    gets LeaseLost, and neither the slot nor the start is written."""
    lease_a = replica(dynamodb, table, clock, "replica-a", "a")
    clock.advance(31)  # A's lease expires without renewal; B takes the spec over
    replica(dynamodb, table, clock, "replica-b", "a")
    store_a = DynamoStore(dynamodb, table, lease_a)

    with pytest.raises(LeaseLost):
        store_a.start_member("a", start(2), model.Claim(FLEET, 0, 1))
    assert store_a.load("a") == model.Memory()
    assert store_a.fleet(FLEET) == model.FleetMemory()


def test_a_start_that_keeps_losing_the_race_gives_up_having_written_nothing(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    """Every write of A loses to another start: after SLOT_ATTEMPTS tries A raises
    StoreError rather than spin, and none of its tries left a trace."""
    lease_a = replica(dynamodb, table, clock, "replica-a", "a")
    other = DynamoStore(dynamodb, table)
    rivals = iter(range(SLOT_ATTEMPTS))

    def rival() -> None:
        i = next(rivals)
        assert other.start_member(f"r{i}", start(i), model.Claim(FLEET, 0, 99))

    client_a = RivalFirst(dynamodb, rival, times=SLOT_ATTEMPTS)
    store_a = DynamoStore(client_a, table, lease_a)
    with pytest.raises(StoreError, match="lost the race"):
        store_a.start_member("a", start(50), model.Claim(FLEET, 0, 99))
    assert client_a.transactions == SLOT_ATTEMPTS
    assert store_a.load("a") == model.Memory()
    assert "a" not in store_a.fleet(FLEET).holders[0]
    assert len(store_a.fleet(FLEET).holders[0]) == SLOT_ATTEMPTS


def test_a_rollout_started_meanwhile_without_a_lease_is_not_overwritten(
    dynamodb: Any, table: str
) -> None:
    """Without leases, a rollout of the same spec started between A's read and write makes
    A's new rollout row exist already: StoreError as from apply(), A's slot not taken."""
    other = DynamoStore(dynamodb, table)
    client_a = RivalFirst(dynamodb, lambda: other.apply("a", start(1)))
    store_a = DynamoStore(client_a, table)
    with pytest.raises(StoreError, match="another writer started a rollout"):
        store_a.start_member("a", start(2), model.Claim(FLEET, 0, 1))
    rollout = store_a.load("a").rollout
    assert rollout is not None and rollout.started_at == at(1)
    assert store_a.fleet(FLEET) == model.FleetMemory()
