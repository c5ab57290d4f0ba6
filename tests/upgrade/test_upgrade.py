"""A state dir written by the previous release (commit 7d4fa44, schema 4) is migrated on
open, loads as the same memory, and a daemon upgraded in the middle of its rollout
resumes that rollout rather than starting another.

The fixture store-v4.sql is a dump of a store the old code wrote (make_store_v4.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from reconciler import fold, model, planner, reasons
from reconciler.store import StateStore, Store
from tests.unit import plannerkit as kit

DUMP = pathlib.Path(__file__).with_name("store-v4.sql")
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
API, WORKER = "biglearn-api", "worker"


def m(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


@pytest.fixture
def old_state(tmp_path: pathlib.Path) -> pathlib.Path:
    """A state dir holding the old release's database, replayed from its dump."""
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "reconciler.sqlite3")
    db.executescript(DUMP.read_text())
    db.close()
    return state


@pytest.fixture
def store(old_state: pathlib.Path) -> Iterator[Store]:
    with Store.in_state_dir(old_state) as s:
        yield s


ACTIVE = model.RolloutMemory(
    id=3,
    image=kit.NEW,
    revision=kit.REV,
    from_image=kit.OLD,
    started_at=m(-10),
    phase1_started_at=m(-10),
)
API_MEMORY = model.Memory(
    rollout=ACTIVE,
    pending=model.Pending(
        kind="migrate",
        image=kit.NEW,
        revision=kit.REV,
        token="reconciler-migrate-ami-00000002-0123456789abcdef0123",
        sent_at=m(-10),
        expected={"MigrationLcImageId": kit.NEW, "MigrationDesiredCapacity": "1"},
    ),
    failure=model.Failure(
        count=1,
        reason="migrate update rolled back: Resource creation cancelled",
        at=m(-30),
        next_retry_at=m(-20),
        revision=kit.REV,
        image=kit.NEW,
        code=reasons.Reason.UPDATE_ROLLED_BACK,
    ),
    approved_image=kit.NEW,
)
WORKER_MEMORY = model.Memory(
    rollout=model.RolloutMemory(
        id=2,
        image=kit.OLD,
        revision="0" * 40,
        from_image=None,
        started_at=m(-2000),
        scaling_suspended_at=m(-1990),
        finished_at=m(-1980),
        result="failed",
        reason="API group not healthy: i-1",
    ),
    runtime_pause=model.RuntimePause("incident 42", m(-100), m(600)),
    window_override=model.WindowOverride("hotfix", m(-90), m(30)),
    scaling_owned=frozenset({"Launch", "AZRebalance"}),
)


def test_old_store_is_migrated_to_the_current_schema(store: Store) -> None:
    """Opening the old database moves it to the newest schema version."""
    version = sqlite3.connect(store.path).execute("SELECT version FROM schema_version")
    assert version.fetchone()[0] == 8


def test_old_rollouts_gain_the_issue_13_times_unset_and_can_mark_them(store: Store) -> None:
    """Rows from before schema 7 read irreversible_at and healthy_at as None; the active
    one takes them by MarkRollout and history shows them, older rows untouched."""
    assert all(
        (r.irreversible_at, r.healthy_at) == (None, None)
        for name in (API, WORKER)
        for r in store.history(name)
    )
    store.apply(API, [model.MarkRollout(irreversible_at=m(1), healthy_at=m(2))])
    latest, older = store.history(API)
    assert (latest.id, latest.irreversible_at, latest.healthy_at) == (3, m(1), m(2))
    assert (older.irreversible_at, older.healthy_at) == (None, None)


def test_old_store_gains_empty_fleets(store: Store) -> None:
    """After the migration fleets exist, empty, and a member of one starts: the old active
    rollout is superseded and its spec holds the slot."""
    assert store.fleet("web") == model.FleetMemory()
    start = model.StartRollout(kit.NEWER, kit.REV2, kit.NEW, m(5))
    assert store.start_member(API, [start], model.Claim("web", 0, 1)) is True
    assert store.fleet("web").holders == {0: {API: m(5)}}
    assert [r.result for r in store.history(API)] == [None, "superseded", "succeeded"]


def test_old_store_loads_the_same_memory(store: Store) -> None:
    """Every record the old release wrote loads as it was; the failure gains the code its
    wording gives."""
    assert store.load(API) == API_MEMORY
    assert store.load(WORKER) == WORKER_MEMORY
    assert [r.id for r in store.history(API)] == [3, 1]
    assert store.history(API)[1].result == "succeeded"
    assert [e.key for e in store.due(m(0))] == [f"{API}|{kit.REV}|rollout_started"]


def test_upgraded_daemon_resumes_the_rollout(store: StateStore) -> None:
    """With the migration applied and its record succeeded, the new planner on the old
    memory goes on to phase 2 of the same rollout; the store keeps what the fold gives."""
    memory = store.load(API)
    assert memory.rollout is not None
    rollout_id = memory.rollout.id
    observed = kit.observed(kit.stack(mig=kit.NEW, mig_cap=1), record=kit.record(at=m(-2)))
    decision = planner.plan(kit.deployment(), kit.REV, observed, memory, m(0))
    assert decision.update is not None and decision.update.kind == "switch"
    assert not any(isinstance(e, model.StartRollout) for e in decision.effects)
    store.apply(API, decision.effects)
    resumed = store.load(API)
    assert resumed == fold.apply_all(memory, decision.effects).memory
    assert resumed.rollout is not None
    assert (resumed.rollout.id, resumed.rollout.migrated_at) == (rollout_id, m(0))


def test_new_rollouts_number_on_per_spec(store: Store) -> None:
    """After the upgrade a spec's next rollout takes its own latest id + 1, the old rows
    keep theirs, and a start over the active rollout supersedes it."""
    store.apply(API, [model.StartRollout(kit.NEWER, kit.REV2, kit.OLD, m(5))])
    store.apply(WORKER, [model.StartRollout(kit.NEW, kit.REV, kit.OLD, m(5))])
    assert [r.id for r in store.history(API)] == [4, 3, 1]
    assert [r.id for r in store.history(WORKER)] == [3, 2]
    superseded = store.history(API)[1]
    assert superseded == dataclasses.replace(
        ACTIVE,
        result="superseded",
        finished_at=m(5),
        reason=f"superseded by a rollout to {kit.NEWER} (revision {kit.REV2})",
    )
