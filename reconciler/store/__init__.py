"""The store: what the planner cannot observe, remembered per spec (SQLite by default).

Rules of this package: callers import from here, not from a backend module, and type
against `StateStore`, so either backend serves: `Store` (SQLite in the state dir, one
replica) or `DynamoStore` (one DynamoDB table shared by replicas, with per-spec leases).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from reconciler import model
from reconciler.store.dynamo import DynamoStore, Lease, LeaseLost, create_table
from reconciler.store.records import StoreError
from reconciler.store.sqlite import StateDirLock, StateDirLocked, Store


class StateStore(Protocol):
    """What the engine, the daemon and the notifier need of a store (both backends)."""

    def load(self, name: str) -> model.Memory: ...
    def apply(self, name: str, effects: Sequence[model.Effect]) -> None: ...
    def history(self, name: str, limit: int = 50) -> list[model.RolloutMemory]: ...
    def pause(
        self, name: str, reason: str, at: dt.datetime, until: dt.datetime | None = None
    ) -> None: ...
    def resume(self, name: str) -> bool: ...
    def approve(self, name: str, image: str, at: dt.datetime) -> None: ...
    def retry(self, name: str, now: dt.datetime) -> bool: ...
    def override_window(
        self, name: str, reason: str, at: dt.datetime, until: dt.datetime
    ) -> None: ...
    def enqueue(self, entries: Sequence[model.OutboxEntry]) -> int: ...
    def due(self, now: dt.datetime, limit: int = 50) -> list[model.OutboxEntry]: ...
    def delivered(self, key: str, sink: str, at: dt.datetime) -> None: ...
    def deferred(
        self, key: str, sink: str, attempts: int, next_at: dt.datetime | None, error: str
    ) -> None: ...
    def close(self) -> None: ...
    # Fleets (reconciler.waves): their halt and slots live in the shared store, so that
    # replicas obey one count.
    def fleet(self, name: str) -> model.FleetMemory: ...
    def start_member(
        self, name: str, effects: Sequence[model.Effect], claim: model.Claim
    ) -> bool: ...
    def halt_fleet(self, name: str, halt: model.Halt) -> bool: ...
    def lift_fleet(self, name: str, at: dt.datetime) -> bool: ...
    # The change-set guard's verdicts, by key (reconciler/aws/guard.py).
    def verdict(self, key: str) -> tuple[model.ResourceChange, ...] | None: ...
    def save_verdict(
        self, key: str, changes: Sequence[model.ResourceChange], at: dt.datetime
    ) -> None: ...


def _conforms(sqlite: Store, dynamo: DynamoStore) -> tuple[StateStore, StateStore]:
    # Never called: mypy checks here that both backends satisfy the protocol.
    return sqlite, dynamo


__all__ = [
    "DynamoStore",
    "Lease",
    "LeaseLost",
    "StateDirLock",
    "StateDirLocked",
    "StateStore",
    "Store",
    "StoreError",
    "create_table",
]
