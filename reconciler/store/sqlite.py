"""The SQLite store: per spec, the little the planner cannot observe (failures, approvals,
runtime pauses, the pending update, rollout history), in `--state-dir/reconciler.sqlite3`.

Rules of this file:
- It speaks only `reconciler.model` values; it never decides anything. Effects are applied
  exactly as the planner sent them, in order; an effect that makes no sense for the stored
  state (marking a rollout when none is active) is a planner bug and raises `StoreError`.
- One `apply()` is one transaction: all of its effects are written, or none. It returns
  only after the commit is durable (WAL, `synchronous=FULL`), because the engine sends the
  stack update right after, and a restart must find what was recorded before it.
- Datetimes are stored as fixed-width ISO-8601 UTC text (`2026-11-26T10:00:00.000000Z`),
  so text order is time order, and come back as aware UTC datetimes, exact to the
  microsecond. A naive datetime is refused rather than guessed at.
- One connection shared by the daemon's threads, serialised by a lock; other processes
  (the CLI's `history`) may read the same file while the daemon writes.
- Schema changes are numbered migrations in `_MIGRATIONS`, recorded in `schema_version`;
  a database written by a newer reconciler is refused, never downgraded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any, cast

from reconciler import crashpoints, model

DB_FILE = "reconciler.sqlite3"
LOCK_FILE = "lock"
SUPERSEDED_REASON = "superseded by a rollout to {image} (revision {revision})"

# Each entry moves the schema from version i to i + 1. Append only: released databases
# already carry the earlier versions.
_MIGRATIONS: tuple[str, ...] = (
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
)

_ROLLOUT_COLUMNS = (
    "id, image, revision, from_image, started_at, phase1_started_at, migrated_at, "
    "approved_at, switch_started_at, switched_at, finished_at, result, reason, "
    "scaling_suspended_at, scaling_resumed_at"
)
_MARK_FIELDS = model.MARK_TIMES


class StoreError(Exception):
    """The store was asked for something its state does not allow."""


class StateDirLocked(StoreError):
    """Another process holds the state directory (a second daemon on the same state)."""


# --- datetimes ------------------------------------------------------------------------


def _ts(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps only aware UTC times")
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def _ts_opt(value: dt.datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _dt(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def _dt_opt(text: str | None) -> dt.datetime | None:
    return None if text is None else _dt(text)


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
            for script in _MIGRATIONS[version:]:
                # executescript would COMMIT our transaction; run statement by statement.
                for statement in _statements(script):
                    db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(_MIGRATIONS),))

    # --- reading ----------------------------------------------------------------------

    def load(self, name: str) -> model.Memory:
        with self._read() as db:
            rollout = db.execute(
                f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE name = ? "  # noqa: S608 constant
                "ORDER BY id DESC LIMIT 1",
                (name,),
            ).fetchone()
            pending = db.execute(
                "SELECT kind, image, revision, token, sent_at, expected FROM pending "
                "WHERE name = ?",
                (name,),
            ).fetchone()
            failure = db.execute(
                "SELECT count, reason, at, next_retry_at, revision, image FROM failures "
                "WHERE name = ?",
                (name,),
            ).fetchone()
            approval = db.execute("SELECT image FROM approvals WHERE name = ?", (name,)).fetchone()
            pause = db.execute(
                "SELECT reason, at, until FROM runtime_pauses WHERE name = ?", (name,)
            ).fetchone()
            override = db.execute(
                "SELECT reason, at, until FROM window_overrides WHERE name = ?", (name,)
            ).fetchone()
            owned = db.execute(
                "SELECT processes FROM scaling_owned WHERE name = ?", (name,)
            ).fetchone()
        return model.Memory(
            rollout=None if rollout is None else _rollout(rollout),
            pending=None if pending is None else _pending(pending),
            failure=None if failure is None else _failure(failure),
            approved_image=None if approval is None else approval[0],
            runtime_pause=None if pause is None else _pause(pause),
            window_override=None
            if override is None
            else model.WindowOverride(override[0], _dt(override[1]), _dt(override[2])),
            scaling_owned=frozenset(json.loads(owned[0])) if owned else frozenset(),
        )

    def history(self, name: str, limit: int = 50) -> list[model.RolloutMemory]:
        """Past and current rollouts of one spec, newest first."""
        if limit < 0:
            # SQLite reads a negative LIMIT as "no limit"; a caller meant something else.
            raise ValueError(f"history limit must be >= 0, not {limit}")
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE name = ? "  # noqa: S608 constant
                "ORDER BY id DESC LIMIT ?",
                (name, limit),
            ).fetchall()
        return [_rollout(row) for row in rows]

    def names(self) -> list[str]:
        """Every spec name the store holds anything for, sorted."""
        with self._read() as db:
            rows = db.execute(
                "SELECT name FROM rollouts UNION SELECT name FROM pending "
                "UNION SELECT name FROM failures UNION SELECT name FROM approvals "
                "UNION SELECT name FROM runtime_pauses ORDER BY name"
            ).fetchall()
        return [str(row[0]) for row in rows]

    # --- effects ----------------------------------------------------------------------

    def apply(self, name: str, effects: Sequence[model.Effect]) -> None:
        """Apply the planner's effects in order, all in one durable transaction."""
        if not effects:
            return
        with self._write("apply") as db:
            for effect in effects:
                _apply_one(db, name, effect)

    # --- runtime controls -------------------------------------------------------------

    def pause(
        self, name: str, reason: str, at: dt.datetime, until: dt.datetime | None = None
    ) -> None:
        with self._write("pause") as db:
            db.execute(
                "INSERT OR REPLACE INTO runtime_pauses (name, reason, at, until) "
                "VALUES (?, ?, ?, ?)",
                (name, reason, _ts(at), _ts_opt(until)),
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
                (name, reason, _ts(at), _ts(until)),
            )

    def approve(self, name: str, image: str, at: dt.datetime) -> None:
        with self._write("approve") as db:
            db.execute(
                "INSERT OR REPLACE INTO approvals (name, image, at) VALUES (?, ?, ?)",
                (name, image, _ts(at)),
            )

    def retry(self, name: str, now: dt.datetime) -> bool:
        """Make a backing-off spec due now; False if it has no failure to retry."""
        with self._write("retry") as db:
            cursor = db.execute(
                "UPDATE failures SET next_retry_at = ? WHERE name = ?", (_ts(now), name)
            )
            return cursor.rowcount > 0

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
                    (e.key, e.sink, e.payload, _ts(e.created_at), _ts(e.created_at)),
                ).rowcount
            return added

    def due(self, now: dt.datetime, limit: int = 50) -> list[model.OutboxEntry]:
        """Undelivered entries whose next attempt is due, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT key, sink, payload, created_at, attempts FROM outbox "
                "WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
        return [
            model.OutboxEntry(key, sink, payload, _dt(created), int(attempts))
            for key, sink, payload, created, attempts in rows
        ]

    def delivered(self, key: str, sink: str, at: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, "
                "next_attempt_at = NULL, last_error = NULL WHERE key = ? AND sink = ?",
                (_ts(at), key, sink),
            )

    def deferred(
        self, key: str, sink: str, attempts: int, next_at: dt.datetime | None, error: str
    ) -> None:
        """Record a failed attempt; `next_at` None gives the entry up (kept, never retried)."""
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
                "WHERE key = ? AND sink = ?",
                (attempts, _ts_opt(next_at), error, key, sink),
            )


def _statements(script: str) -> list[str]:
    # Migration scripts hold no semicolons inside literals, so a plain split is exact.
    body = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


# --- applying one effect --------------------------------------------------------------


def _apply_one(db: sqlite3.Connection, name: str, effect: model.Effect) -> None:
    match effect:
        case model.StartRollout():
            _start_rollout(db, name, effect)
        case model.MarkRollout():
            _mark_rollout(db, name, effect)
        case model.FinishRollout():
            _finish_active(db, name, effect.result, effect.at, effect.reason)
        case model.SetPending(pending=p):
            db.execute(
                "INSERT OR REPLACE INTO pending "
                "(name, kind, image, revision, token, sent_at, expected) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, p.kind, p.image, p.revision, p.token, _ts(p.sent_at), _json(p.expected)),
            )
        case model.ClearPending():
            db.execute("DELETE FROM pending WHERE name = ?", (name,))
        case model.RecordFailure(failure=f):
            db.execute(
                "INSERT OR REPLACE INTO failures "
                "(name, count, reason, at, next_retry_at, revision, image) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, f.count, f.reason, _ts(f.at), _ts(f.next_retry_at), f.revision, f.image),
            )
        case model.ClearFailure():
            db.execute("DELETE FROM failures WHERE name = ?", (name,))
        case model.ClearRuntimePause():
            db.execute("DELETE FROM runtime_pauses WHERE name = ?", (name,))
        case model.ConsumeApproval():
            db.execute("DELETE FROM approvals WHERE name = ?", (name,))
        case model.OwnScaling(processes=processes):
            db.execute(
                "INSERT OR REPLACE INTO scaling_owned (name, processes) VALUES (?, ?)",
                (name, json.dumps(sorted(processes))),
            )
        case model.DisownScaling(at=at):
            db.execute("DELETE FROM scaling_owned WHERE name = ?", (name,))
            db.execute(
                "UPDATE rollouts SET scaling_resumed_at = ? WHERE id = (SELECT MAX(id) FROM "
                "rollouts WHERE name = ? AND scaling_suspended_at IS NOT NULL) "
                "AND scaling_resumed_at IS NULL",
                (_ts(at), name),
            )
        case _:
            raise StoreError(f"unknown effect {effect!r}")


def _start_rollout(db: sqlite3.Connection, name: str, effect: model.StartRollout) -> None:
    # A new target replaces an unfinished one; history must say so rather than show two
    # active rollouts (the unique index would refuse that anyway).
    if _active_id(db, name) is not None:
        reason = SUPERSEDED_REASON.format(image=effect.image, revision=effect.revision)
        _finish_active(db, name, "superseded", effect.at, reason)
    db.execute(
        "INSERT INTO rollouts (name, image, revision, from_image, started_at, "
        "phase1_started_at, migrated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            name,
            effect.image,
            effect.revision,
            effect.from_image,
            _ts(effect.at),
            _ts_opt(effect.phase1_started_at),
            _ts_opt(effect.migrated_at),
        ),
    )


def _mark_rollout(db: sqlite3.Connection, name: str, effect: model.MarkRollout) -> None:
    active = _require_active(db, name, "MarkRollout")
    changes: dict[str, str] = {
        field: _ts(value)
        for field in _MARK_FIELDS
        if (value := cast(dt.datetime | None, getattr(effect, field))) is not None
    }
    if effect.revision is not None:
        changes["revision"] = effect.revision
    if not changes:
        return
    # Column names come from the constant _MARK_FIELDS, never from input.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    db.execute(
        f"UPDATE rollouts SET {assignments} WHERE id = ?",  # noqa: S608
        (*changes.values(), active),
    )


def _finish_active(
    db: sqlite3.Connection, name: str, result: str, at: dt.datetime, reason: str | None
) -> None:
    active = _require_active(db, name, "FinishRollout")
    db.execute(
        "UPDATE rollouts SET result = ?, finished_at = ?, reason = ? WHERE id = ?",
        (result, _ts(at), reason, active),
    )


def _active_id(db: sqlite3.Connection, name: str) -> int | None:
    row = db.execute(
        "SELECT id FROM rollouts WHERE name = ? AND result IS NULL", (name,)
    ).fetchone()
    return None if row is None else int(row[0])


def _require_active(db: sqlite3.Connection, name: str, effect: str) -> int:
    active = _active_id(db, name)
    if active is None:
        raise StoreError(
            f"{effect} for {name!r} but it has no active rollout "
            "(a planner bug: the batch was not applied)"
        )
    return active


def _json(expected: object) -> str:
    return json.dumps(dict(cast(Any, expected)), sort_keys=True, separators=(",", ":"))


# --- rows to model values -------------------------------------------------------------


def _rollout(row: tuple[Any, ...]) -> model.RolloutMemory:
    (id_, image, revision, from_image, started, p1, migrated, approved, sw_start, switched,
     finished, result, reason, suspended, resumed) = row  # fmt: skip
    return model.RolloutMemory(
        id=int(id_),
        image=image,
        revision=revision,
        from_image=from_image,
        started_at=_dt(started),
        phase1_started_at=_dt_opt(p1),
        migrated_at=_dt_opt(migrated),
        approved_at=_dt_opt(approved),
        switch_started_at=_dt_opt(sw_start),
        switched_at=_dt_opt(switched),
        finished_at=_dt_opt(finished),
        result=result,
        reason=reason,
        scaling_suspended_at=_dt_opt(suspended),
        scaling_resumed_at=_dt_opt(resumed),
    )


def _pending(row: tuple[Any, ...]) -> model.Pending:
    kind, image, revision, token, sent_at, expected = row
    return model.Pending(
        kind=kind,
        image=image,
        revision=revision,
        token=token,
        sent_at=_dt(sent_at),
        expected=json.loads(expected),
    )


def _failure(row: tuple[Any, ...]) -> model.Failure:
    count, reason, at, next_retry_at, revision, image = row
    return model.Failure(
        count=int(count),
        reason=reason,
        at=_dt(at),
        next_retry_at=_dt(next_retry_at),
        revision=revision,
        image=image,
    )


def _pause(row: tuple[Any, ...]) -> model.RuntimePause:
    reason, at, until = row
    return model.RuntimePause(reason=reason, at=_dt(at), until=_dt_opt(until))
