"""The SQLite store: per spec, the little the planner cannot observe (failures, approvals,
runtime pauses, the pending update, rollout history), in `--state-dir/reconciler.sqlite3`.

Rules of this file:
- It speaks only `reconciler.model` values; it never decides anything. `apply()` folds the
  effects into the stored memory with the one fold (`reconciler.fold`) and writes exactly
  the records the fold reports changed, in the layout of `store.records`.
- One `apply()` is one transaction: all of its effects are written, or none. It returns
  only after the commit is durable (WAL, `synchronous=FULL`), because the engine sends the
  stack update right after, and a restart must find what was recorded before it.
- Datetimes are stored as fixed-width ISO-8601 UTC text (`store.records`).
- One connection shared by the daemon's threads, serialised by a lock; other processes
  (the CLI's `history`) may read the same file while the daemon writes.
- Schema changes are numbered migrations in `_MIGRATIONS`, recorded in `schema_version`;
  a database written by a newer reconciler is refused, never downgraded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from reconciler import crashpoints, fold, model
from reconciler.store import records
from reconciler.store.records import StoreError

DB_FILE = "reconciler.sqlite3"
LOCK_FILE = "lock"


def _code_failures(db: sqlite3.Connection) -> None:
    """Add failures.code; a failure stored before it gets the code its wording gives."""
    db.execute("ALTER TABLE failures ADD COLUMN code TEXT")
    for name, reason in db.execute("SELECT name, reason FROM failures").fetchall():
        code = records.legacy_code(reason)
        db.execute("UPDATE failures SET code = ? WHERE name = ?", (str(code), name))


# Each entry moves the schema from version i to i + 1: a script, or a function for what
# SQL alone cannot do. Append only: released databases already carry the earlier versions.
_MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    """
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        image TEXT NOT NULL,
        revision TEXT NOT NULL,
        from_image TEXT,
        started_at TEXT NOT NULL,
        phase1_started_at TEXT,
        migrated_at TEXT,
        approved_at TEXT,
        switch_started_at TEXT,
        switched_at TEXT,
        finished_at TEXT,
        result TEXT CHECK (result IN ('succeeded', 'failed', 'superseded')),
        reason TEXT,
        CHECK ((result IS NULL) = (finished_at IS NULL))
    );
    -- At most one active rollout per spec: the database itself refuses a second one.
    CREATE UNIQUE INDEX rollouts_one_active ON rollouts (name) WHERE result IS NULL;
    CREATE INDEX rollouts_by_name ON rollouts (name, id);
    CREATE TABLE pending (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('migrate', 'switch', 'scale')),
        image TEXT NOT NULL,
        revision TEXT NOT NULL,
        token TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        expected TEXT NOT NULL
    );
    CREATE TABLE failures (
        name TEXT PRIMARY KEY,
        count INTEGER NOT NULL CHECK (count >= 0),
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        next_retry_at TEXT NOT NULL,
        revision TEXT NOT NULL,
        image TEXT NOT NULL
    );
    CREATE TABLE approvals (
        name TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE runtime_pauses (
        name TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        until TEXT
    );
    """,
    # Notifications owed to webhooks (reconciler.notify). The primary key is what makes a
    # transition go out once per sink: a key already here, delivered or not, is not added
    # again, whatever restarts or repeated steps tell it twice.
    """
    CREATE TABLE outbox (
        key TEXT NOT NULL,
        sink TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at TEXT,
        delivered_at TEXT,
        last_error TEXT,
        PRIMARY KEY (key, sink)
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
    """,
    """
    CREATE TABLE window_overrides (
        name TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        until TEXT NOT NULL
    );
    """,
    # rollout.suspendScaling: which processes are ours to resume, and when, in history.
    """
    ALTER TABLE rollouts ADD COLUMN scaling_suspended_at TEXT;
    ALTER TABLE rollouts ADD COLUMN scaling_resumed_at TEXT;
    CREATE TABLE scaling_owned (
        name TEXT PRIMARY KEY,
        processes TEXT NOT NULL
    );
    """,
    # Rollout ids count per spec, as the fold numbers them (the latest id + 1), so the store
    # writes the fold's rows as they are. Ids already given keep their values (they only
    # ever grew within a spec); the unique index still refuses a second active rollout.
    """
    CREATE TABLE rollouts_v5 (
        name TEXT NOT NULL,
        id INTEGER NOT NULL CHECK (id > 0),
        image TEXT NOT NULL,
        revision TEXT NOT NULL,
        from_image TEXT,
        started_at TEXT NOT NULL,
        phase1_started_at TEXT,
        migrated_at TEXT,
        approved_at TEXT,
        switch_started_at TEXT,
        switched_at TEXT,
        finished_at TEXT,
        result TEXT CHECK (result IN ('succeeded', 'failed', 'superseded')),
        reason TEXT,
        scaling_suspended_at TEXT,
        scaling_resumed_at TEXT,
        CHECK ((result IS NULL) = (finished_at IS NULL)),
        PRIMARY KEY (name, id)
    );
    INSERT INTO rollouts_v5 (name, id, image, revision, from_image, started_at,
        phase1_started_at, migrated_at, approved_at, switch_started_at, switched_at,
        finished_at, result, reason, scaling_suspended_at, scaling_resumed_at)
    SELECT name, id, image, revision, from_image, started_at, phase1_started_at,
        migrated_at, approved_at, switch_started_at, switched_at, finished_at, result,
        reason, scaling_suspended_at, scaling_resumed_at FROM rollouts;
    DROP TABLE rollouts;
    ALTER TABLE rollouts_v5 RENAME TO rollouts;
    CREATE UNIQUE INDEX rollouts_one_active ON rollouts (name) WHERE result IS NULL;
    """,
    # A failure's reason code (reconciler.reasons): what programs read, not its wording.
    _code_failures,
    # Issue 13: when a rollout became irreversible and when its API group was healthy (the
    # bake starts there); rows written before read them as NULL. Fleets: a halt (all four
    # halt_ columns or none) and the epoch of the last lift; the holders of each step's
    # slots, with the start of the rollout holding each.
    """
    ALTER TABLE rollouts ADD COLUMN irreversible_at TEXT;
    ALTER TABLE rollouts ADD COLUMN healthy_at TEXT;
    CREATE TABLE fleets (
        name TEXT PRIMARY KEY,
        halt_reason TEXT,
        halt_at TEXT,
        halt_by TEXT CHECK (halt_by IN ('budget', 'operator')),
        halt_images TEXT,
        epoch TEXT,
        CHECK ((halt_at IS NULL) = (halt_by IS NULL)),
        CHECK ((halt_at IS NULL) = (halt_reason IS NULL)),
        CHECK ((halt_at IS NULL) = (halt_images IS NULL))
    );
    CREATE TABLE fleet_slots (
        fleet TEXT NOT NULL,
        step INTEGER NOT NULL CHECK (step >= 0),
        member TEXT NOT NULL,
        started_at TEXT NOT NULL,
        PRIMARY KEY (fleet, step, member)
    );
    """,
    # 8: the change-set guard's verdicts (reconciler/aws/guard.py), kept across restarts
    # and for `plan`.
    """
    CREATE TABLE verdicts (
        key TEXT PRIMARY KEY,
        changes TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
)

_ROLLOUT_COLUMNS = ", ".join(records.ROLLOUT_FIELDS)
# The table of each single record of a spec's memory (fold.Record), keyed by name.
_TABLES: dict[fold.Record, str] = {
    "pending": "pending",
    "failure": "failures",
    "approved_image": "approvals",
    "runtime_pause": "runtime_pauses",
    "window_override": "window_overrides",
    "scaling_owned": "scaling_owned",
}


class StateDirLocked(StoreError):
    """Another process holds the state directory (a second daemon on the same state)."""


# --- single instance ------------------------------------------------------------------


class StateDirLock:
    """An exclusive, non-blocking `flock` on `state_dir/lock`, held until `release()`.

    flock (not a pid file) because the kernel drops it when the holder dies, even by
    SIGKILL, so a crashed daemon never leaves a stale lock behind.
    """

    def __init__(self, state_dir: pathlib.Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirLocked(
                f"state dir {state_dir} is in use by another reconciler process "
                f"(pid {holder}); stop it or choose another --state-dir"
            ) from None
        # The pid is only for the message above; the flock is what excludes.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- the store ------------------------------------------------------------------------


class Store:
    """Memory per spec, backed by one SQLite file; safe to share between threads."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch of effects is
        # exactly one transaction and nothing is committed behind our back.
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    @classmethod
    def in_state_dir(cls, state_dir: pathlib.Path) -> Store:
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(state_dir / DB_FILE)

    @staticmethod
    def lock_state_dir(state_dir: pathlib.Path) -> StateDirLock:
        """Take the state dir for this process, or raise `StateDirLocked`."""
        return StateDirLock(state_dir)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions -----------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, what: str = "write") -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so no other writer interleaves."""
        with self._lock:
            crashpoints.hit(f"store.{what}.before")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            crashpoints.hit(f"store.{what}.commit")  # written, not yet committed
            self._db.execute("COMMIT")
            crashpoints.hit(f"store.{what}.after")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so a load sees a single consistent snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write("migrate") as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(row[0])
            if version > len(_MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this reconciler "
                    f"knows ({len(_MIGRATIONS)}); upgrade the reconciler"
                )
            for step in _MIGRATIONS[version:]:
                if callable(step):
                    step(db)
                    continue
                # executescript would COMMIT our transaction; run statement by statement.
                for statement in _statements(step):
                    db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(_MIGRATIONS),))

    # --- reading ----------------------------------------------------------------------

    def load(self, name: str) -> model.Memory:
        with self._read() as db:
            return _load(db, name)

    def history(self, name: str, limit: int = 50) -> list[model.RolloutMemory]:
        """Past and current rollouts of one spec, newest first."""
        if limit < 0:
            # SQLite reads a negative LIMIT as "no limit"; a caller meant something else.
            raise ValueError(f"history limit must be >= 0, not {limit}")
        with self._read() as db:
            cursor = db.execute(
                f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE name = ? "  # noqa: S608 constant
                "ORDER BY id DESC LIMIT ?",
                (name, limit),
            )
            return [records.rollout(row) for row in _dicts(cursor)]

    # --- effects ----------------------------------------------------------------------

    def apply(self, name: str, effects: Sequence[model.Effect]) -> None:
        """Fold the planner's effects into the stored memory, in one durable transaction."""
        if not effects:
            return
        with self._write("apply") as db:
            _persist(db, name, fold.apply_all(_load(db, name), effects))

    # --- runtime controls -------------------------------------------------------------

    def pause(
        self, name: str, reason: str, at: dt.datetime, until: dt.datetime | None = None
    ) -> None:
        with self._write("pause") as db:
            db.execute(
                "INSERT OR REPLACE INTO runtime_pauses (name, reason, at, until) "
                "VALUES (?, ?, ?, ?)",
                (name, reason, records.ts(at), records.ts_opt(until)),
            )

    def resume(self, name: str) -> bool:
        """Lift a runtime pause; False if there was none (a spec pause is git's to lift)."""
        with self._write("resume") as db:
            return db.execute("DELETE FROM runtime_pauses WHERE name = ?", (name,)).rowcount > 0

    def override_window(self, name: str, reason: str, at: dt.datetime, until: dt.datetime) -> None:
        """Let `name` start a rollout outside its windows until `until` (recorded)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO window_overrides (name, reason, at, until) "
                "VALUES (?, ?, ?, ?)",
                (name, reason, records.ts(at), records.ts(until)),
            )

    def approve(self, name: str, image: str, at: dt.datetime) -> None:
        with self._write("approve") as db:
            db.execute(
                "INSERT OR REPLACE INTO approvals (name, image, at) VALUES (?, ?, ?)",
                (name, image, records.ts(at)),
            )

    def retry(self, name: str, now: dt.datetime) -> bool:
        """Make a backing-off spec due now; False if it has no failure to retry."""
        with self._write("retry") as db:
            cursor = db.execute(
                "UPDATE failures SET next_retry_at = ? WHERE name = ?", (records.ts(now), name)
            )
            return cursor.rowcount > 0

    # --- fleets -----------------------------------------------------------------------

    def fleet(self, name: str) -> model.FleetMemory:
        with self._read() as db:
            return _fleet(db, name)

    def start_member(self, name: str, effects: Sequence[model.Effect], claim: model.Claim) -> bool:
        """Start `name`'s rollout only if fleet `claim.fleet` is not halted and fewer than
        `claim.limit` other members hold a slot of `claim.step`: the slot and the effects
        in one transaction, so no other start (this process or another) counts between.
        False: nothing was written. ValueError: no StartRollout among `effects`."""
        at = records.start_of(effects)
        with self._write("start_member") as db:
            if _halt(db, claim.fleet) is not None:
                return False
            held = {
                member: records.parse_ts(started)
                for member, started in db.execute(
                    "SELECT member, started_at FROM fleet_slots WHERE fleet = ? AND step = ?",
                    (claim.fleet, claim.step),
                )
            }
            latest = {m: _latest(db, m) for m in held if m != name}
            taken = records.take_slot(held, latest, name, at, claim.limit)
            if taken is None:
                return False
            db.execute(
                "DELETE FROM fleet_slots WHERE fleet = ? AND step = ?", (claim.fleet, claim.step)
            )
            db.executemany(
                "INSERT INTO fleet_slots (fleet, step, member, started_at) VALUES (?, ?, ?, ?)",
                [(claim.fleet, claim.step, m, records.ts(s)) for m, s in taken.items()],
            )
            _persist(db, name, fold.apply_all(_load(db, name), effects))
        return True

    def halt_fleet(self, name: str, halt: model.Halt) -> bool:
        """Halt the fleet unless it is halted already (the first halt's reason stands)."""
        fields = records.halt_fields(halt)
        with self._write("halt_fleet") as db:
            if _halt(db, name) is not None:
                return False
            db.execute("INSERT OR IGNORE INTO fleets (name) VALUES (?)", (name,))
            sets = ", ".join(f"{c} = ?" for c in fields)
            db.execute(
                f"UPDATE fleets SET {sets} WHERE name = ?",  # noqa: S608 constant columns
                (*fields.values(), name),
            )
            return True

    def lift_fleet(self, name: str, at: dt.datetime) -> bool:
        """Clear the halt, if any, and start a new epoch at `at`; True if a halt was cleared."""
        with self._write("lift_fleet") as db:
            halted = _halt(db, name) is not None
            db.execute(
                "INSERT INTO fleets (name, epoch) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET epoch = excluded.epoch, halt_reason = NULL, halt_at = NULL, "
                "halt_by = NULL, halt_images = NULL",
                (name, records.ts(at)),
            )
            return halted

    # --- change-set verdicts -----------------------------------------------------------

    def verdict(self, key: str) -> tuple[model.ResourceChange, ...] | None:
        with self._read() as db:
            row = db.execute("SELECT changes FROM verdicts WHERE key = ?", (key,)).fetchone()
        return None if row is None else records.parse_changes(row[0])

    def save_verdict(
        self, key: str, changes: Sequence[model.ResourceChange], at: dt.datetime
    ) -> None:
        with self._write("save_verdict") as db:
            db.execute(
                "INSERT OR REPLACE INTO verdicts (key, changes, at) VALUES (?, ?, ?)",
                (key, records.changes_text(changes), records.ts(at)),
            )

    # --- notification outbox ------------------------------------------------------------

    def enqueue(self, entries: Sequence[model.OutboxEntry]) -> int:
        """Owe each entry to its sink, unless that (key, sink) was ever owed; how many were new."""
        if not entries:
            return 0
        with self._write() as db:
            added = 0
            for e in entries:
                added += db.execute(
                    "INSERT OR IGNORE INTO outbox (key, sink, payload, created_at, attempts, "
                    "next_attempt_at) VALUES (?, ?, ?, ?, 0, ?)",
                    (e.key, e.sink, e.payload, records.ts(e.created_at), records.ts(e.created_at)),
                ).rowcount
            return added

    def due(self, now: dt.datetime, limit: int = 50) -> list[model.OutboxEntry]:
        """Undelivered entries whose next attempt is due, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT key, sink, payload, created_at, attempts FROM outbox "
                "WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?",
                (records.ts(now), limit),
            ).fetchall()
        return [
            model.OutboxEntry(key, sink, payload, records.parse_ts(created), int(attempts))
            for key, sink, payload, created, attempts in rows
        ]

    def delivered(self, key: str, sink: str, at: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, "
                "next_attempt_at = NULL, last_error = NULL WHERE key = ? AND sink = ?",
                (records.ts(at), key, sink),
            )

    def deferred(
        self, key: str, sink: str, attempts: int, next_at: dt.datetime | None, error: str
    ) -> None:
        """Record a failed attempt; `next_at` None gives the entry up (kept, never retried)."""
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
                "WHERE key = ? AND sink = ?",
                (attempts, records.ts_opt(next_at), error, key, sink),
            )


def _statements(script: str) -> list[str]:
    # Migration scripts hold no semicolons inside literals, so a plain split is exact.
    body = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


# --- reading and writing one spec's memory ---------------------------------------------


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _one(db: sqlite3.Connection, table: str, name: str) -> dict[str, Any] | None:
    # Table names come from the constant _TABLES, never from input.
    rows = _dicts(db.execute(f"SELECT * FROM {table} WHERE name = ?", (name,)))  # noqa: S608
    return rows[0] if rows else None


def _load(db: sqlite3.Connection, name: str) -> model.Memory:
    row = {record: _one(db, table, name) for record, table in _TABLES.items()}
    pending, failure = row["pending"], row["failure"]
    approval, pause, override = row["approved_image"], row["runtime_pause"], row["window_override"]
    return model.Memory(
        rollout=_latest(db, name),
        pending=None if pending is None else records.pending(pending),
        failure=None if failure is None else records.failure(failure),
        approved_image=None if approval is None else approval["image"],
        runtime_pause=None if pause is None else records.pause(pause),
        window_override=None if override is None else records.override(override),
        scaling_owned=records.owned(row["scaling_owned"]),
    )


def _latest(db: sqlite3.Connection, name: str) -> model.RolloutMemory | None:
    rows = _dicts(
        db.execute(
            f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE name = ? "  # noqa: S608 constant
            "ORDER BY id DESC LIMIT 1",
            (name,),
        )
    )
    return records.rollout(rows[0]) if rows else None


def _halt(db: sqlite3.Connection, fleet: str) -> model.Halt | None:
    return records.halt(_one(db, "fleets", fleet))


def _fleet(db: sqlite3.Connection, name: str) -> model.FleetMemory:
    row = _one(db, "fleets", name)
    holders: dict[int, dict[str, dt.datetime]] = {}
    for step, member, started in db.execute(
        "SELECT step, member, started_at FROM fleet_slots WHERE fleet = ? ORDER BY step, member",
        (name,),
    ):
        holders.setdefault(int(step), {})[member] = records.parse_ts(started)
    return model.FleetMemory(
        halt=records.halt(row),
        epoch=None if row is None else records.parse_ts_opt(row["epoch"]),
        holders=holders,
    )


def _persist(db: sqlite3.Connection, name: str, folded: fold.Folded) -> None:
    """Write what the fold changed: its rollout rows by (name, id), then single records."""
    for rollout in folded.rollouts:  # oldest first: a superseded row ends before the next
        _upsert_rollout(db, name, records.rollout_fields(rollout))
    for record, fields in records.writes(folded):
        table = _TABLES[record]
        db.execute(f"DELETE FROM {table} WHERE name = ?", (name,))  # noqa: S608 constant
        if fields is not None:
            columns = ", ".join(["name", *fields])
            marks = ", ".join("?" * (len(fields) + 1))
            db.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 constant
                (name, *fields.values()),
            )


def _upsert_rollout(db: sqlite3.Connection, name: str, fields: records.Fields) -> None:
    # An upsert on the primary key only: a second active rollout still breaks the unique
    # index and fails the transaction, where INSERT OR REPLACE would delete the other row.
    columns = ", ".join(["name", *fields])
    marks = ", ".join("?" * (len(fields) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in fields if c != "id")
    db.execute(
        f"INSERT INTO rollouts ({columns}) VALUES ({marks}) "  # noqa: S608 constant columns
        f"ON CONFLICT (name, id) DO UPDATE SET {updates}",
        (name, *fields.values()),
    )
