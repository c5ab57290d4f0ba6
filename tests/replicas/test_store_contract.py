"""One store contract for SQLite and DynamoDB: the behavioral cases of
tests/unit/test_store.py pass against DynamoStore, and for any sequence of effect batches
(every effect kind) and controls, each store's load() and history() equal the one fold's
memory and rollout rows, ids included."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from reconciler import model
from reconciler.store import DynamoStore, Store, create_table
from tests.unit import test_store as cases
from tests.upgrade import test_upgrade as upgrade

ITEMS = pathlib.Path(upgrade.__file__).with_name("dynamo-v4.json")

# Cases that hold the behavior any backend owes; the rest test SQLite itself (WAL, schema
# versions, file durability, the state-dir flock, SQLite's own CHECK constraints).
CASES: list[Callable[[Any], None]] = [
    cases.test_empty_store_loads_empty_memory,
    cases.test_start_rollout_round_trips,
    cases.test_mark_rollout_sets_only_given_fields,
    cases.test_finish_rollout_keeps_it_as_latest,
    cases.test_mark_or_finish_without_active_rollout_changes_nothing,
    cases.test_pending_round_trips_and_clears,
    cases.test_failure_round_trips_and_clears,
    cases.test_clear_runtime_pause_effect,
    cases.test_specs_are_isolated,
    cases.test_start_rollout_supersedes_active_one,
    cases.test_finish_then_start_in_one_batch_is_not_superseded,
    cases.test_pause_and_resume,
    cases.test_approve_sets_approved_image,
    cases.test_retry_makes_failure_due_now,
    cases.test_history_is_newest_first_and_limited,
    cases.test_naive_datetime_is_refused,
    cases.test_threads_share_one_store,
    cases.test_unknown_fleet_is_empty,
    cases.test_start_member_takes_slots_up_to_the_limit,
    cases.test_start_member_writes_the_effects_as_apply_does,
    cases.test_start_member_needs_a_start,
    cases.test_a_holder_whose_rollout_ended_frees_its_slot,
    cases.test_a_halted_fleet_refuses_starts_until_lifted,
    cases.test_a_verdict_round_trips_and_a_newer_one_replaces_it,
]


@pytest.fixture
def dynamo_store(dynamodb: Any, table: str) -> DynamoStore:
    return DynamoStore(dynamodb, table)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.removeprefix("test_"))
def test_dynamo_store_passes_the_sqlite_store_case(
    case: Callable[[Any], None], dynamo_store: DynamoStore
) -> None:
    """Each shared case, run as written against DynamoStore."""
    case(dynamo_store)


def test_outbox_owes_once_and_pays_in_order(dynamo_store: DynamoStore) -> None:
    """enqueue ignores a (key, sink) ever owed; due() is oldest first and skips delivered,
    deferred-to-later and given-up entries."""
    t0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
    entries = [
        model.OutboxEntry("k1", "slack", "{}", t0),
        model.OutboxEntry("k2", "slack", "{}", t0 + dt.timedelta(seconds=1)),
        model.OutboxEntry("k1", "default", "{}", t0 + dt.timedelta(seconds=2)),
    ]
    assert dynamo_store.enqueue(entries) == 3
    assert dynamo_store.enqueue(entries[:1]) == 0
    now = t0 + dt.timedelta(minutes=1)
    assert [(e.key, e.sink) for e in dynamo_store.due(now)] == [
        ("k1", "slack"),
        ("k2", "slack"),
        ("k1", "default"),
    ]
    dynamo_store.delivered("k1", "slack", now)
    dynamo_store.deferred("k2", "slack", 1, now + dt.timedelta(minutes=5), "503")
    dynamo_store.deferred("k1", "default", 9, None, "gave up")
    assert dynamo_store.due(now) == []
    later = dynamo_store.due(now + dt.timedelta(minutes=5))
    assert [(e.key, e.attempts) for e in later] == [("k2", 1)]


@pytest.mark.parametrize("backend", ["sqlite", "dynamo"])
@given(steps=cases.steps)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_store_persists_exactly_the_fold(
    dynamodb: Any, backend: str, steps: list[cases.Step]
) -> None:
    """Any batches of any effects and any controls leave the store holding what the fold
    gives: the same memory and the same history, in both backends."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "db") as sqlite:
            cases.check_store_persists_the_fold(sqlite, steps)
        return
    table = f"contract-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table)
    try:
        cases.check_store_persists_the_fold(DynamoStore(dynamodb, table), steps)
    finally:
        dynamodb.delete_table(TableName=table)


@pytest.mark.parametrize("backend", ["sqlite", "dynamo"])
@given(limits=cases.fleet_limits, ops=cases.fleet_ops)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fleet_slots_hold_their_limit(
    dynamodb: Any, backend: str, limits: tuple[int, int], ops: list[tuple[object, ...]]
) -> None:
    """Any starts, finishes, halts and lifts answer as the fleet's model says and never let
    more members of a step run on its slots than its limit, in both backends."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "db") as sqlite:
            cases.check_fleet_slots(sqlite, limits, ops)
        return
    table = f"fleet-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table)
    try:
        cases.check_fleet_slots(DynamoStore(dynamodb, table), limits, ops)
    finally:
        dynamodb.delete_table(TableName=table)


def test_items_written_by_the_previous_release_load_and_resume(
    dynamodb: Any, table: str, dynamo_store: DynamoStore
) -> None:
    """The items 7d4fa44 wrote mid-rollout (tests/upgrade/dynamo-v4.json: no failure
    `code`) load as the same memory as its SQLite store (DynamoDB numbered rollouts per spec
    already), the failure coded from its wording, and the rollout goes on to phase 2."""
    for item in json.loads(ITEMS.read_text()):
        dynamodb.put_item(TableName=table, Item=item)
    api, worker = upgrade.API_MEMORY, upgrade.WORKER_MEMORY
    assert api.rollout is not None and worker.rollout is not None
    assert dynamo_store.load(upgrade.API) == dataclasses.replace(
        api, rollout=dataclasses.replace(api.rollout, id=2)
    )
    assert dynamo_store.load(upgrade.WORKER) == dataclasses.replace(
        worker, rollout=dataclasses.replace(worker.rollout, id=1)
    )
    assert len(dynamo_store.due(upgrade.m(0))) == 1
    upgrade.test_upgraded_daemon_resumes_the_rollout(dynamo_store)  # type: ignore[arg-type]
