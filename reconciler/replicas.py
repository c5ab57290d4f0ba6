"""Replicas: which store the daemon uses, and whether this replica may drive a spec now.

Rules of this file:
- Without `--lock-table` there is one replica: SQLite in the state dir, every spec ours
  (the state dir's flock keeps a second daemon off it).
- With `--lock-table` the store is the shared DynamoDB table, and a spec is driven only
  under its lease: acquired (or renewed) before each step, renewed by a background job
  every TTL/3, and a step runs only while the lease has more than its safety margin left.
  A renewal that fails drops the spec at once; the fence on every store write refuses
  anything a step in flight still tries (`LeaseLost`), and the step ends there.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, cast

import structlog

from reconciler import aws, catalog, engine, settings
from reconciler.store import DynamoStore, Lease, LeaseLost, StateStore, Store

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_REGION = "us-east-1"


def table_address(lock_table: str) -> tuple[str, str]:
    """(region, table) from `[REGION:]NAME`; the region defaults as the AWS SDKs do."""
    region, _, table = lock_table.rpartition(":")
    default = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return region or default or DEFAULT_REGION, table


class Replicas:
    """The daemon's store and, with a lock table, the leases that gate each step."""

    def __init__(self, conf: settings.Settings, clients: aws.Clients) -> None:
        self.log = structlog.get_logger("reconciler.replicas")
        self.lease: Lease | None = None
        self.store: StateStore
        self.ttl = conf.replicas.lease_ttl
        lock_table = conf.replicas.lock_table
        if lock_table is None:
            self.store = Store.in_state_dir(conf.state_dir)
            return
        region, table = table_address(lock_table)
        client = cast("DynamoDBClient", clients.client("dynamodb", region))
        self.lease = Lease(client, table, conf.replicas.replica_id, self.ttl.total_seconds())
        self.store = DynamoStore(client, table, self.lease)

    @property
    def renew_every(self) -> dt.timedelta:
        return self.ttl / 3

    def step(self, eng: engine.Engine, loaded: catalog.LoadedSpec) -> engine.StepResult | None:
        """One engine step if this replica may drive the spec now; None when it may not."""
        name = loaded.deployment.name
        if self.lease is not None and not self._claim(eng, loaded):
            return None
        try:
            return eng.step(loaded)
        except LeaseLost as exc:
            # Another replica took over mid-step: it drives from here, from the store.
            self.log.warning("lease lost mid-step: stopped acting", name=name, error=str(exc))
            return None

    def _claim(self, eng: engine.Engine, loaded: catalog.LoadedSpec) -> bool:
        assert self.lease is not None
        name = loaded.deployment.name
        try:
            self.lease.acquire(name)
        except aws.ERRORS as exc:
            # Cannot tell who holds it: act only on what we still safely hold.
            self.log.warning("lease table unreachable", name=name, error=str(exc))
        if self.lease.held(name) is not None:
            return True
        status = eng.track(loaded)
        holder = self.lease.holder(name)
        status.message = (
            f"driven by replica {holder}" if holder else "lease not held: waiting to renew it"
        )
        status.memory = self.store.load(name)
        return False

    def standby_delay(self, interval: dt.timedelta) -> dt.timedelta:
        """When a replica not holding a spec asks again: soon enough to take over a dead
        holder's lease within about a TTL plus a third."""
        return min(interval, self.renew_every)

    def renew_all(self) -> None:
        """The background renewal: a failure drops the spec before its lease can run out."""
        if self.lease is None:
            return
        for name in self.lease.names():
            try:
                renewed = self.lease.renew(name)
            except aws.ERRORS as exc:
                self.log.warning("lease renewal failed", name=name, error=str(exc))
                continue  # held() stops acting at the margin if this keeps failing
            if not renewed:
                self.log.warning("lease lost: another replica drives this spec now", name=name)

    def release_all(self) -> None:
        """A clean stop: give the leases up so another replica takes over at once."""
        if self.lease is None:
            return
        for name in self.lease.names():
            try:
                self.lease.release(name)
            except aws.ERRORS as exc:
                self.log.warning("lease release failed; it will expire", name=name, error=str(exc))
