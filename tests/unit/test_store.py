"""The SQLite store: effects round-trip through load(), batches are atomic and durable,
runtime controls, history, and one daemon per state dir.

The property test at the end holds the store to the one fold (reconciler.fold) of the same
effects; tests/replicas/test_store_contract.py runs it against DynamoDB too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import typing
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import fold, model, reasons
from reconciler.store import StateDirLocked, StateStore, Store, StoreError

T0 = dt.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=dt.UTC)


def t(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[Store]:
    s = Store.in_state_dir(tmp_path / "state")
    yield s
    s.close()


def start(image: str = "ami-2", at: dt.datetime = T0, revision: str = "r1") -> model.StartRollout:
    return model.StartRollout(image=image, revision=revision, from_image="ami-1", at=at)


PENDING = model.Pending(
    kind="migrate",
    image="ami-2",
    revision="r1",
    token="tok-1",
    sent_at=t(1),
    expected={"MigrationLcImageId": "ami-2", "MigrationDesiredCapacity": "1"},
)
FAILURE = model.Failure(
    count=2,
    reason="rolled back",
    at=t(5),
    next_retry_at=t(9),
    revision="r1",
    image="ami-2",
    code=reasons.Reason.ROLLED_BACK,
)


# --- effects round-trip ---------------------------------------------------------------


def test_empty_store_loads_empty_memory(store: Store) -> None:
    """A spec the store never heard of has empty memory, and is not listed."""
    assert store.load("api") == model.Memory()
    assert store.history("api") == []


def test_start_rollout_round_trips(store: Store) -> None:
    """StartRollout becomes the active rollout, with carried-over phase times."""
    store.apply(
        "api",
        [
            model.StartRollout(
                image="ami-2",
                revision="r1",
                from_image=None,
                at=t(0),
                phase1_started_at=t(-3),
                migrated_at=t(-1),
            )
        ],
    )
    rollout = store.load("api").rollout
    assert rollout == model.RolloutMemory(
        id=rollout.id if rollout else 0,
        image="ami-2",
        revision="r1",
        from_image=None,
        started_at=t(0),
        phase1_started_at=t(-3),
        migrated_at=t(-1),
    )
    assert rollout is not None and rollout.active


def test_mark_rollout_sets_only_given_fields(store: Store) -> None:
    """MarkRollout changes the fields it names and leaves earlier marks alone."""
    store.apply("api", [start(), model.MarkRollout(phase1_started_at=t(1))])
    store.apply("api", [model.MarkRollout(migrated_at=t(2))])
    store.apply("api", [model.MarkRollout(approved_at=t(3))])
    store.apply("api", [model.MarkRollout(switch_started_at=t(4), switched_at=t(5))])
    rollout = store.load("api").rollout
    assert rollout is not None
    assert (rollout.phase1_started_at, rollout.migrated_at, rollout.approved_at) == (
        t(1),
        t(2),
        t(3),
    )
    assert (rollout.switch_started_at, rollout.switched_at) == (t(4), t(5))
    assert rollout.started_at == T0 and rollout.active
    store.apply("api", [model.MarkRollout(irreversible_at=t(6))])
    store.apply("api", [model.MarkRollout(healthy_at=t(7))])
    [row] = store.history("api")
    assert (row.irreversible_at, row.healthy_at, row.switched_at) == (t(6), t(7), t(5))
    assert store.load("api").rollout == row


def test_finish_rollout_keeps_it_as_latest(store: Store) -> None:
    """A finished rollout is still Memory.rollout (latest), no longer active."""
    store.apply("api", [start(), model.FinishRollout(result="failed", at=t(7), reason="boom")])
    rollout = store.load("api").rollout
    assert rollout is not None
    assert (rollout.result, rollout.finished_at, rollout.reason) == ("failed", t(7), "boom")
    assert not rollout.active


def test_mark_or_finish_without_active_rollout_changes_nothing(store: Store) -> None:
    """Marking or finishing when no rollout is active changes nothing, as in the fold,
    and the rest of the batch is still written."""
    store.apply("api", [model.MarkRollout(migrated_at=t(1)), model.SetPending(PENDING)])
    assert store.load("api") == model.Memory(pending=PENDING)
    store.apply("api", [start(), model.FinishRollout(result="succeeded", at=t(2))])
    finished = store.load("api")
    store.apply("api", [model.FinishRollout(result="failed", at=t(3))])
    store.apply("api", [model.MarkRollout(switched_at=t(4))])
    assert store.load("api") == finished
    assert len(store.history("api")) == 1


def test_pending_round_trips_and_clears(store: Store) -> None:
    """SetPending stores the one pending update (expected as JSON); ClearPending drops it."""
    store.apply("api", [model.SetPending(PENDING)])
    assert store.load("api").pending == PENDING
    replaced = dataclasses.replace(PENDING, kind="switch", token="tok-2", expected={})
    store.apply("api", [model.SetPending(replaced)])
    assert store.load("api").pending == replaced
    store.apply("api", [model.ClearPending()])
    assert store.load("api").pending is None


def test_failure_round_trips_and_clears(store: Store) -> None:
    """RecordFailure replaces the spec's failure; ClearFailure removes it."""
    store.apply("api", [model.RecordFailure(FAILURE)])
    assert store.load("api").failure == FAILURE
    store.apply("api", [model.ClearFailure()])
    assert store.load("api").failure is None


def test_clear_runtime_pause_effect(store: Store) -> None:
    """ClearRuntimePause (an expired `until`) removes the runtime pause."""
    store.pause("api", "incident 42", at=t(0), until=t(60))
    store.apply("api", [model.ClearRuntimePause()])
    assert store.load("api").runtime_pause is None


def test_specs_are_isolated(store: Store) -> None:
    """Effects for one spec never show up in another's memory."""
    store.apply("api", [start(), model.SetPending(PENDING), model.RecordFailure(FAILURE)])
    assert store.load("worker") == model.Memory()


# --- atomicity and superseding --------------------------------------------------------


def test_failed_batch_writes_nothing(store: Store) -> None:
    """A batch whose last effect fails (a constraint) leaves no trace of the earlier ones."""
    store.apply("api", [start("ami-1")])
    before = store.load("api")
    bad = model.RecordFailure(dataclasses.replace(FAILURE, count=-1))  # CHECK count >= 0
    with pytest.raises(sqlite3.IntegrityError):
        store.apply(
            "api",
            [
                model.FinishRollout(result="succeeded", at=t(1)),
                start("ami-2", at=t(2)),
                model.SetPending(PENDING),
                bad,
            ],
        )
    assert store.load("api") == before
    assert len(store.history("api")) == 1
    # The store is still usable after the rollback.
    store.apply("api", [model.SetPending(PENDING)])
    assert store.load("api").pending == PENDING


def test_start_rollout_supersedes_active_one(store: Store) -> None:
    """A new StartRollout finishes the active rollout as superseded, at the new start time."""
    store.apply("api", [start("ami-2", at=t(0))])
    store.apply("api", [start("ami-3", at=t(10), revision="r2")])
    newest, older = store.history("api")
    assert newest.image == "ami-3" and newest.active
    assert older.result == "superseded" and older.finished_at == t(10)
    assert older.reason is not None and "ami-3" in older.reason
    assert store.load("api").rollout == newest


def test_finish_then_start_in_one_batch_is_not_superseded(store: Store) -> None:
    """When the planner finishes the rollout itself before starting the next, its result stands."""
    store.apply("api", [start("ami-2", at=t(0))])
    store.apply(
        "api",
        [
            model.FinishRollout(result="failed", at=t(5), reason="migration failed"),
            start("ami-3", at=t(5), revision="r2"),
        ],
    )
    newest, older = store.history("api")
    assert (older.result, older.reason) == ("failed", "migration failed")
    assert newest.image == "ami-3" and newest.active


# --- runtime controls -----------------------------------------------------------------


def test_pause_and_resume(store: Store) -> None:
    """pause() records a runtime pause; resume() lifts it once and then reports False."""
    assert store.resume("api") is False
    store.pause("api", "incident 42", at=t(0), until=t(30))
    assert store.load("api").runtime_pause == model.RuntimePause("incident 42", t(0), t(30))
    store.pause("api", "longer", at=t(1))  # a second pause replaces the first
    assert store.load("api").runtime_pause == model.RuntimePause("longer", t(1), None)
    assert store.resume("api") is True
    assert store.load("api").runtime_pause is None
    assert store.resume("api") is False


def test_approve_sets_approved_image(store: Store) -> None:
    """approve() makes Memory.approved_image the image approved last."""
    store.approve("api", "ami-2", at=t(0))
    assert store.load("api").approved_image == "ami-2"
    store.approve("api", "ami-3", at=t(1))
    assert store.load("api").approved_image == "ami-3"


def test_retry_makes_failure_due_now(store: Store) -> None:
    """retry() moves next_retry_at to now and keeps the rest; False without a failure."""
    assert store.retry("api", now=t(2)) is False
    store.apply("api", [model.RecordFailure(FAILURE)])
    assert store.retry("api", now=t(2)) is True
    assert store.load("api").failure == dataclasses.replace(FAILURE, next_retry_at=t(2))


def test_history_is_newest_first_and_limited(store: Store) -> None:
    """history() lists rollouts newest first, at most `limit` of them, ids increasing."""
    for i in range(5):
        store.apply("api", [start(f"ami-{i}", at=t(i))])
    history = store.history("api")
    assert [r.image for r in history] == [f"ami-{i}" for i in reversed(range(5))]
    assert [r.id for r in history] == sorted((r.id for r in history), reverse=True)
    assert [r.image for r in store.history("api", limit=2)] == ["ami-4", "ami-3"]
    assert [r.active for r in history] == [True, False, False, False, False]
    assert store.history("api", limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.history("api", limit=-1)


# --- fleets ---------------------------------------------------------------------------

FLEET = "web"
HALT = model.Halt("2 failures, budget 1", t(30), "budget", "api=ami-2")


def claim(step: int = 0, limit: int = 1, fleet: str = FLEET) -> model.Claim:
    return model.Claim(fleet, step, limit)


def test_unknown_fleet_is_empty(store: Store) -> None:
    assert store.fleet(FLEET) == model.FleetMemory()


def test_start_member_takes_slots_up_to_the_limit(store: Store) -> None:
    """Members start while their step has a free slot; the one over the limit is refused
    and nothing of its start is written. Steps and fleets count apart."""
    assert store.start_member("a", [start(at=t(0))], claim(limit=2)) is True
    assert store.start_member("b", [start(at=t(1)), model.SetPending(PENDING)], claim(limit=2))
    assert store.start_member("c", [start(at=t(2)), model.SetPending(PENDING)], claim(limit=2)) is (
        False
    )
    assert store.load("c") == model.Memory() and store.history("c") == []
    assert store.load("b").pending == PENDING
    assert store.start_member("c", [start(at=t(3))], claim(step=1, limit=1)) is True
    assert store.start_member("d", [start(at=t(3))], claim(limit=1, fleet="db")) is True
    assert store.fleet(FLEET) == model.FleetMemory(
        holders={0: {"a": t(0), "b": t(1)}, 1: {"c": t(3)}}
    )
    assert store.fleet("db").holders == {0: {"d": t(3)}}


def test_start_member_writes_the_effects_as_apply_does(store: Store) -> None:
    """A granted start stores its effects as apply() does: the fold's memory and rows,
    the rollout it supersedes included."""
    effects: list[model.Effect] = [
        model.RecordFailure(FAILURE),
        start(at=t(4)),
        model.MarkRollout(phase1_started_at=t(4)),
        model.SetPending(PENDING),
    ]
    store.apply("a", [start("ami-1", at=t(0))])
    before = store.load("a")
    folded = fold.apply_all(before, effects)
    assert store.start_member("a", effects, claim()) is True
    assert store.load("a") == folded.memory
    assert store.history("a") == sorted(folded.rollouts, key=lambda r: -r.id)


def test_start_member_needs_a_start(store: Store) -> None:
    with pytest.raises(ValueError, match="StartRollout"):
        store.start_member("a", [model.SetPending(PENDING)], claim())
    assert store.load("a") == model.Memory() and store.fleet(FLEET) == model.FleetMemory()


def test_a_holder_whose_rollout_ended_frees_its_slot(store: Store) -> None:
    """A holder lets its slot go when its rollout finishes, or when its latest rollout is
    another one (started without the fleet); a restart of the holder itself keeps one."""
    assert store.start_member("a", [start(at=t(0))], claim()) is True
    assert store.start_member("b", [start(at=t(1))], claim()) is False
    assert store.start_member("a", [start("ami-3", at=t(2))], claim()) is True  # its own slot
    store.apply("a", [model.FinishRollout("succeeded", t(3))])
    assert store.start_member("b", [start(at=t(4))], claim()) is True
    assert store.fleet(FLEET).holders == {0: {"b": t(4)}}  # a's stale holding is dropped
    store.apply("b", [start("ami-3", at=t(5))])  # b's slot was for its rollout of t(4)
    assert store.start_member("a", [start(at=t(6))], claim()) is True
    assert store.fleet(FLEET).holders == {0: {"a": t(6)}}


def test_a_halted_fleet_refuses_starts_until_lifted(store: Store) -> None:
    """While halted no member starts and nothing is written; the first halt stands until
    lifted; a lift sets the epoch and says whether it cleared a halt."""
    assert store.halt_fleet(FLEET, HALT) is True
    assert store.halt_fleet(FLEET, dataclasses.replace(HALT, by="operator", at=t(31))) is False
    assert store.fleet(FLEET) == model.FleetMemory(halt=HALT)
    assert store.start_member(
        "a", [start(at=t(32)), model.SetPending(PENDING)], claim(limit=9)
    ) is (False)
    assert store.load("a") == model.Memory() and store.fleet(FLEET).holders == {}
    assert store.start_member("a", [start(at=t(32))], claim(fleet="other")) is True
    assert store.lift_fleet(FLEET, t(40)) is True
    assert store.lift_fleet(FLEET, t(41)) is False
    assert store.fleet(FLEET) == model.FleetMemory(epoch=t(41))
    assert store.start_member("a", [start(at=t(42))], claim()) is True
    operator = model.Halt("incident 7", t(43), "operator")  # images "" when not a budget halt
    assert store.halt_fleet(FLEET, operator) is True
    assert store.fleet(FLEET).halt == operator


# --- datetimes ------------------------------------------------------------------------


@given(
    when=st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.timezones(),
    )
)
@settings(max_examples=50, deadline=None)
def test_datetimes_round_trip_as_utc(when: dt.datetime) -> None:
    """Any aware datetime comes back as the same instant, in UTC, to the microsecond."""
    with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "db") as s:
        s.pause("api", "r", at=when)
        pause = s.load("api").runtime_pause
    assert pause is not None
    # Compared in UTC: Python's cross-zone == is False for DST-ambiguous wall times.
    assert pause.at == when.astimezone(dt.UTC)
    assert pause.at.tzinfo is dt.UTC


def test_naive_datetime_is_refused(store: Store) -> None:
    """A naive datetime is a bug upstream; the store refuses it rather than guess a zone."""
    with pytest.raises(ValueError, match="naive"):
        store.pause("api", "r", at=dt.datetime(2026, 1, 1))


def test_stored_times_are_sortable_utc_text(tmp_path: pathlib.Path) -> None:
    """On disk a time is fixed-width ISO-8601 UTC text (what other tools will read)."""
    path = tmp_path / "db"
    with Store(path) as s:
        s.pause(
            "api",
            "r",
            at=dt.datetime(
                2026, 1, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
            ),
        )
    raw = sqlite3.connect(path).execute("SELECT at FROM runtime_pauses").fetchone()[0]
    assert raw == "2026-01-01T00:00:00.000000Z"


# --- durability, schema, threads ------------------------------------------------------


def test_data_survives_reopening(tmp_path: pathlib.Path) -> None:
    """Everything written is there after the store is closed and opened again."""
    state = tmp_path / "state"
    with Store.in_state_dir(state) as s:
        s.apply("api", [start(), model.SetPending(PENDING), model.RecordFailure(FAILURE)])
        s.approve("api", "ami-2", at=t(0))
        s.pause("api", "p", at=t(0))
        before = s.load("api")
    assert (state / "reconciler.sqlite3").exists()
    with Store.in_state_dir(state) as s:
        assert s.load("api") == before


def test_store_uses_wal_and_full_sync(store: Store) -> None:
    """The durability settings the engine relies on are in force on the shared connection."""
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    """A database written by a newer reconciler is refused instead of being misread."""
    path = tmp_path / "db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_sigkill_after_apply_loses_nothing(tmp_path: pathlib.Path) -> None:
    """A process killed (SIGKILL) right after apply() returns has its effects on disk."""
    script = textwrap.dedent(
        f"""
        import datetime as dt, os, pathlib, signal
        from reconciler import model
        from reconciler.store import Store
        s = Store.in_state_dir(pathlib.Path({str(tmp_path)!r}))
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        s.apply("api", [model.StartRollout("ami-9", "r9", None, at)])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert proc.returncode == -9
    with Store.in_state_dir(tmp_path) as s:
        rollout = s.load("api").rollout
    assert rollout is not None and rollout.image == "ami-9"


def test_threads_share_one_store(store: Store) -> None:
    """Worker threads applying to one Store concurrently lose no writes."""

    def work(n: int) -> None:
        for i in range(20):
            store.apply(f"spec-{n}", [start(f"ami-{i}", at=t(i))])
            store.load(f"spec-{n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(len(store.history(f"spec-{n}", limit=100)) == 20 for n in range(6))


# --- single instance ------------------------------------------------------------------

_HOLD_LOCK = """
import pathlib, sys
from reconciler.store import Store
with Store.lock_state_dir(pathlib.Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_second_process_cannot_lock_state_dir(tmp_path: pathlib.Path) -> None:
    """While one process holds the state dir another is refused, and may take it after."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirLocked, match=rf"in use .*pid {holder.pid}"):
            Store.lock_state_dir(tmp_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with Store.lock_state_dir(tmp_path) as lock:
        assert lock.path == tmp_path / "lock"


def test_lock_is_released_by_a_killed_holder(tmp_path: pathlib.Path) -> None:
    """A daemon killed with SIGKILL leaves no stale lock behind."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(timeout=30)
    Store.lock_state_dir(tmp_path).release()


# --- property: the store persists the fold of its effects ----------------------------


@dataclasses.dataclass(frozen=True)
class Expected:
    """One spec's stored state as the fold gives it: its memory and its rollout history."""

    memory: model.Memory = dataclasses.field(default_factory=model.Memory)
    history: tuple[model.RolloutMemory, ...] = ()  # newest first

    def then(self, effects: list[model.Effect]) -> Expected:
        folded = fold.apply_all(self.memory, effects)
        rows = {r.id: r for r in self.history} | {r.id: r for r in folded.rollouts}
        return Expected(folded.memory, tuple(rows[i] for i in sorted(rows, reverse=True)))


times = st.datetimes(
    min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=st.just(dt.UTC)
)
opt_times = st.none() | times
words = st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=8)
images = st.sampled_from(["ami-1", "ami-2", "ami-3"])

EFFECTS = (
    st.builds(model.StartRollout, images, words, st.none() | images, times, opt_times, opt_times),
    # Every time MarkRollout can set, so a new one the stores forget to keep fails here.
    st.builds(model.MarkRollout, *[opt_times] * len(model.MARK_TIMES)),
    st.builds(
        model.FinishRollout,
        st.sampled_from(["succeeded", "failed", "superseded"]),
        times,
        st.none() | words,
    ),
    st.builds(
        model.SetPending,
        st.builds(
            model.Pending,
            st.sampled_from(["migrate", "switch", "scale"]),
            images,
            words,
            words,
            times,
            st.dictionaries(words, st.text(max_size=5), max_size=3),
        ),
    ),
    st.just(model.ClearPending()),
    st.builds(
        model.RecordFailure,
        st.builds(
            model.Failure,
            st.integers(0, 50),
            st.text(max_size=10),
            times,
            times,
            words,
            images,
            st.sampled_from(sorted(reasons.FAILURES)),
        ),
    ),
    st.just(model.ClearFailure()),
    st.just(model.ClearRuntimePause()),
    st.just(model.ConsumeApproval()),
    st.builds(
        model.OwnScaling, st.frozensets(st.sampled_from(["Launch", "Terminate", "AZRebalance"]))
    ),
    st.builds(model.DisownScaling, times),
)
# One strategy per effect kind, every kind drawn: the contract holds for each of them.
assert len(EFFECTS) == len(typing.get_args(model.Effect))
effects = st.one_of(*EFFECTS)
Control = tuple[str, ...]
controls = st.one_of(
    st.tuples(st.just("pause"), words, times, opt_times),
    st.tuples(st.just("resume")),
    st.tuples(st.just("approve"), images, times),
    st.tuples(st.just("retry"), times),
)
steps = st.lists(
    st.tuples(st.sampled_from(["api", "worker"]), st.lists(effects, max_size=4) | controls),
    max_size=25,
)


def fold_control(state: Expected, control: tuple[object, ...]) -> tuple[Expected, object]:
    """What a runtime control does to the expected state, and what it answers."""
    m = state.memory
    match control:
        case ("pause", str(reason), dt.datetime() as at, until):
            pause = model.RuntimePause(reason, at, until)  # type: ignore[arg-type]
            return dataclasses.replace(
                state, memory=dataclasses.replace(m, runtime_pause=pause)
            ), None
        case ("resume",):
            resumed = dataclasses.replace(m, runtime_pause=None)
            return dataclasses.replace(state, memory=resumed), m.runtime_pause is not None
        case ("approve", str(image), _):
            return dataclasses.replace(
                state, memory=dataclasses.replace(m, approved_image=image)
            ), None
        case ("retry", dt.datetime() as now):
            if m.failure is None:
                return state, False
            failure = dataclasses.replace(m.failure, next_retry_at=now)
            return dataclasses.replace(state, memory=dataclasses.replace(m, failure=failure)), True
    raise AssertionError(control)


def run_control(s: StateStore, name: str, control: tuple[object, ...]) -> object:
    match control:
        case ("pause", str(reason), dt.datetime() as at, until):
            s.pause(name, reason, at, until)  # type: ignore[arg-type]
            return None
        case ("resume",):
            return s.resume(name)
        case ("approve", str(image), dt.datetime() as at):
            s.approve(name, image, at)
            return None
        case ("retry", dt.datetime() as now):
            return s.retry(name, now)
    raise AssertionError(control)


Step = tuple[str, list[model.Effect] | tuple[object, ...]]


def check_store_persists_the_fold(s: StateStore, steps: list[Step]) -> None:
    """Run batches and controls against `s`; after each, every spec's load() and history()
    equal the fold's memory and rows (ids included), and each control answers alike."""
    states: dict[str, Expected] = {}
    for name, step in steps:
        state = states.get(name, Expected())
        if isinstance(step, list):
            s.apply(name, step)
            states[name] = state.then(step)
        else:
            states[name], expected = fold_control(state, step)
            assert run_control(s, name, step) == expected
        for n in ("api", "worker"):
            want = states.get(n, Expected())
            assert s.load(n) == want.memory
            assert s.history(n, limit=1000) == list(want.history)


@given(steps=steps)
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_store_persists_the_fold_of_effects(steps: list[Step]) -> None:
    """For any sequence of batches and controls, load() and history() equal the fold's."""
    with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "db") as s:
        check_store_persists_the_fold(s, steps)


def test_a_consumed_approval_is_gone(tmp_path: pathlib.Path) -> None:
    """ConsumeApproval removes the approval, so a later rollout of that image asks again."""
    store = Store(tmp_path / "s.sqlite3")
    store.approve("a", "ami-00000001", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    store.apply("a", [model.ConsumeApproval()])
    assert store.load("a").approved_image is None


# --- property: a fleet's slots never let more than the limit run ---------------------

MEMBERS = ("m0", "m1", "m2", "m3")
fleet_ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(MEMBERS), st.integers(0, 1)),
        st.tuples(
            st.just("finish"), st.sampled_from(MEMBERS), st.sampled_from(["succeeded", "failed"])
        ),
        # A start outside the fleet: the member's slot, if any, was for another rollout.
        st.tuples(st.just("plain"), st.sampled_from(MEMBERS)),
        st.tuples(st.just("halt"), st.sampled_from(["budget", "operator"])),
        st.tuples(st.just("lift")),
    ),
    max_size=30,
)
fleet_limits = st.tuples(st.integers(1, 3), st.integers(1, 2))  # step 0, step 1


def check_fleet_slots(
    s: StateStore, limits: tuple[int, ...], ops: list[tuple[object, ...]]
) -> None:
    """Run starts, finishes, halts and lifts against `s` and against a model of the fleet:
    each call answers as the model does, fleet() and every member's memory equal the
    model's, and no step ever has more members running on its slots than its limit."""
    memories = {m: model.Memory() for m in MEMBERS}
    halt: model.Halt | None = None
    epoch: dt.datetime | None = None
    holders: dict[int, dict[str, dt.datetime]] = {}

    def running(memory: model.Memory, started: dt.datetime) -> bool:
        r = memory.rollout
        return r is not None and r.active and r.started_at == started

    def stored(member: str, effects: list[model.Effect]) -> None:
        memories[member] = fold.apply_all(memories[member], effects).memory

    for i, op in enumerate(ops):
        at = T0 + dt.timedelta(minutes=i)  # each call its own time: starts never coincide
        match op:
            case ("start", str(member), int(step)):
                effects: list[model.Effect] = [model.StartRollout("ami-2", "r1", "ami-1", at)]
                others = {
                    m: started
                    for m, started in holders.get(step, {}).items()
                    if m != member and running(memories[m], started)
                }
                want = halt is None and len(others) < limits[step]
                granted = s.start_member(member, effects, model.Claim(FLEET, step, limits[step]))
                assert granted is want
                if want:
                    holders[step] = others | {member: at}
                    stored(member, effects)
            case ("finish", str(member), str(result)):
                effects = [model.FinishRollout(result, at)]  # type: ignore[arg-type]
                s.apply(member, effects)
                stored(member, effects)
            case ("plain", str(member)):
                effects = [model.StartRollout("ami-3", "r2", "ami-1", at)]
                s.apply(member, effects)
                stored(member, effects)
            case ("halt", str(by)):
                new = model.Halt(f"halt {i}", at, by, "m0=ami-2" if by == "budget" else "")  # type: ignore[arg-type]
                assert s.halt_fleet(FLEET, new) is (halt is None)
                halt = halt or new
            case ("lift",):
                assert s.lift_fleet(FLEET, at) is (halt is not None)
                halt, epoch = None, at
            case _:
                raise AssertionError(op)
        fleet = s.fleet(FLEET)
        assert fleet == model.FleetMemory(halt, epoch, holders)
        loaded = {m: s.load(m) for m in MEMBERS}
        assert loaded == memories
        for step, limit in enumerate(limits):
            on_slots = [
                m for m, at in fleet.holders.get(step, {}).items() if running(loaded[m], at)
            ]
            assert len(on_slots) <= limit


@given(limits=fleet_limits, ops=fleet_ops)
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fleet_slots_hold_their_limit(
    limits: tuple[int, int], ops: list[tuple[object, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "db") as s:
        check_fleet_slots(s, limits, ops)


def test_a_verdict_round_trips_and_a_newer_one_replaces_it(store: Store) -> None:
    assert store.verdict("k1") is None
    box = model.ResourceChange("Box", "AWS::EC2::Instance", "Modify", "True")
    lt = model.ResourceChange("Lt", "AWS::EC2::LaunchTemplate", "Modify", "False")
    store.save_verdict("k1", [box, lt], T0)
    store.save_verdict("k2", [], T0)
    assert store.verdict("k1") == (box, lt)
    assert store.verdict("k2") == ()  # no changes is a verdict too, not an unknown one
    store.save_verdict("k1", [lt], T0)
    assert store.verdict("k1") == (lt,)
