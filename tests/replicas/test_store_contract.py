"""DynamoStore keeps the SQLite store's contract: the same behavioral cases as
tests/unit/test_store.py pass against it, and for any sequence of effect batches and
controls both stores answer load() and history() alike (rollout ids aside: DynamoDB
numbers rollouts per spec, SQLite across the file)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from reconciler import model
from reconciler.store import DynamoStore, Store, StoreError, create_table
from tests.unit import test_store as cases

# Cases that hold the behavior any backend owes; the rest test SQLite itself (WAL, schema
# versions, file durability, the state-dir flock, SQLite's own CHECK constraints).
CASES: list[Callable[[Any], None]] = [
    cases.test_empty_store_loads_empty_memory,
    cases.test_start_rollout_round_trips,
    cases.test_mark_rollout_sets_only_given_fields,
    cases.test_finish_rollout_keeps_it_as_latest,
    cases.test_mark_or_finish_without_active_rollout_raises,
    cases.test_pending_round_trips_and_clears,
    cases.test_failure_round_trips_and_clears,
    cases.test_clear_runtime_pause_effect,
    cases.test_specs_are_isolated,
    cases.test_planner_bug_mid_batch_writes_nothing,
    cases.test_start_rollout_supersedes_active_one,
    cases.test_finish_then_start_in_one_batch_is_not_superseded,
    cases.test_pause_and_resume,
    cases.test_approve_sets_approved_image,
    cases.test_retry_makes_failure_due_now,
    cases.test_history_is_newest_first_and_limited,
    cases.test_naive_datetime_is_refused,
    cases.test_threads_share_one_store,
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


def _without_ids(history: list[model.RolloutMemory]) -> list[model.RolloutMemory]:
    return [dataclasses.replace(r, id=0) for r in history]


@given(steps=cases.steps)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_dynamo_and_sqlite_stores_agree_on_any_sequence(
    dynamodb: Any, steps: list[tuple[str, list[model.Effect] | tuple[object, ...]]]
) -> None:
    """The same batches and controls leave both stores with the same memory and history;
    a batch one refuses as a planner bug the other refuses too."""
    table = f"contract-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table)
    dynamo = DynamoStore(dynamodb, table)
    with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "db") as sqlite:
        for name, step in steps:
            if isinstance(step, list):
                outcomes = [_apply(s, name, step) for s in (sqlite, dynamo)]
                assert outcomes[0] == outcomes[1]
            else:
                assert cases.run_control(sqlite, name, step) == cases.run_control(
                    dynamo,
                    name,
                    step,  # type: ignore[arg-type]
                )
        for n in ("api", "worker"):
            assert _strip(sqlite.load(n)) == _strip(dynamo.load(n))
            assert _without_ids(sqlite.history(n, 1000)) == _without_ids(dynamo.history(n, 1000))
        assert sqlite.names() == dynamo.names()
    dynamodb.delete_table(TableName=table)


def _apply(store: Store | DynamoStore, name: str, step: list[model.Effect]) -> str:
    try:
        store.apply(name, step)
    except StoreError:
        return "refused"
    return "applied"


def _strip(memory: model.Memory) -> model.Memory:
    rollout = memory.rollout
    return dataclasses.replace(
        memory, rollout=None if rollout is None else _without_ids([rollout])[0]
    )
