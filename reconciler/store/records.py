"""How both stores write model values as flat records, and read them back.

Rules of this file:
- One flat record per model value: field names are the SQLite columns and the DynamoDB
  attributes alike, values are text or integers, None is an absent value. So a row
  written by either store reads back through the same function.
- Datetimes are fixed-width ISO-8601 UTC text (`2026-11-26T10:00:00.000000Z`), so text
  order is time order, and come back as aware UTC datetimes, exact to the microsecond.
  A naive datetime is refused rather than guessed at.
- Reading accepts every layout a released version wrote (a failure without `code`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler import fold, model, reasons

Value = str | int | None
Fields = dict[str, Value]


class StoreError(Exception):
    """The store was asked for something its state does not allow."""


ROLLOUT_FIELDS: tuple[str, ...] = (
    "id",
    "image",
    "revision",
    "from_image",
    "started_at",
    "phase1_started_at",
    "migrated_at",
    "approved_at",
    "switch_started_at",
    "switched_at",
    "finished_at",
    "result",
    "reason",
    "scaling_suspended_at",
    "scaling_resumed_at",
    "irreversible_at",
    "healthy_at",
)


# --- datetimes ------------------------------------------------------------------------


def ts(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps only aware UTC times")
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def ts_opt(value: dt.datetime | None) -> str | None:
    return None if value is None else ts(value)


def parse_ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def parse_ts_opt(text: str | None) -> dt.datetime | None:
    return None if text is None else parse_ts(text)


# --- model values to records ----------------------------------------------------------


def rollout_fields(r: model.RolloutMemory) -> Fields:
    return {
        "id": r.id,
        "image": r.image,
        "revision": r.revision,
        "from_image": r.from_image,
        "started_at": ts(r.started_at),
        "phase1_started_at": ts_opt(r.phase1_started_at),
        "migrated_at": ts_opt(r.migrated_at),
        "approved_at": ts_opt(r.approved_at),
        "switch_started_at": ts_opt(r.switch_started_at),
        "switched_at": ts_opt(r.switched_at),
        "finished_at": ts_opt(r.finished_at),
        "result": r.result,
        "reason": r.reason,
        "scaling_suspended_at": ts_opt(r.scaling_suspended_at),
        "scaling_resumed_at": ts_opt(r.scaling_resumed_at),
        "irreversible_at": ts_opt(r.irreversible_at),
        "healthy_at": ts_opt(r.healthy_at),
    }


def pending_fields(p: model.Pending) -> Fields:
    return {
        "kind": p.kind,
        "image": p.image,
        "revision": p.revision,
        "token": p.token,
        "sent_at": ts(p.sent_at),
        "expected": json.dumps(dict(p.expected), sort_keys=True, separators=(",", ":")),
    }


def failure_fields(f: model.Failure) -> Fields:
    return {
        "count": f.count,
        "reason": f.reason,
        "at": ts(f.at),
        "next_retry_at": ts(f.next_retry_at),
        "revision": f.revision,
        "image": f.image,
        "code": str(f.code),
    }


def pause_fields(p: model.RuntimePause) -> Fields:
    return {"reason": p.reason, "at": ts(p.at), "until": ts_opt(p.until)}


def override_fields(o: model.WindowOverride) -> Fields:
    return {"reason": o.reason, "at": ts(o.at), "until": ts(o.until)}


def owned_fields(processes: frozenset[str]) -> Fields:
    return {"processes": json.dumps(sorted(processes))}


# --- records to model values ----------------------------------------------------------


def rollout(row: Mapping[str, Any]) -> model.RolloutMemory:
    return model.RolloutMemory(
        id=int(row["id"]),
        image=row["image"],
        revision=row["revision"],
        from_image=row.get("from_image"),
        started_at=parse_ts(row["started_at"]),
        phase1_started_at=parse_ts_opt(row.get("phase1_started_at")),
        migrated_at=parse_ts_opt(row.get("migrated_at")),
        approved_at=parse_ts_opt(row.get("approved_at")),
        switch_started_at=parse_ts_opt(row.get("switch_started_at")),
        switched_at=parse_ts_opt(row.get("switched_at")),
        finished_at=parse_ts_opt(row.get("finished_at")),
        result=row.get("result"),
        reason=row.get("reason"),
        scaling_suspended_at=parse_ts_opt(row.get("scaling_suspended_at")),
        scaling_resumed_at=parse_ts_opt(row.get("scaling_resumed_at")),
        irreversible_at=parse_ts_opt(row.get("irreversible_at")),
        healthy_at=parse_ts_opt(row.get("healthy_at")),
    )


def pending(row: Mapping[str, Any]) -> model.Pending:
    return model.Pending(
        kind=row["kind"],
        image=row["image"],
        revision=row["revision"],
        token=row["token"],
        sent_at=parse_ts(row["sent_at"]),
        expected=json.loads(row["expected"]),
    )


def failure(row: Mapping[str, Any]) -> model.Failure:
    return model.Failure(
        count=int(row["count"]),
        reason=row["reason"],
        at=parse_ts(row["at"]),
        next_retry_at=parse_ts(row["next_retry_at"]),
        revision=row["revision"],
        image=row["image"],
        code=reasons.Reason(row["code"]) if row.get("code") else legacy_code(row["reason"]),
    )


def legacy_code(text: str) -> reasons.Reason:
    """The code of a failure written before failures carried one (SQLite schema 5 and
    earlier, DynamoDB items without `code`): read from its message, the one place a
    message is matched, because it reads old data."""
    return reasons.legacy_failure_code(text)


def pause(row: Mapping[str, Any]) -> model.RuntimePause:
    return model.RuntimePause(
        reason=row["reason"], at=parse_ts(row["at"]), until=parse_ts_opt(row.get("until"))
    )


def override(row: Mapping[str, Any]) -> model.WindowOverride:
    return model.WindowOverride(
        reason=row["reason"], at=parse_ts(row["at"]), until=parse_ts(row["until"])
    )


def owned(row: Mapping[str, Any] | None) -> frozenset[str]:
    return frozenset() if row is None else frozenset(json.loads(row["processes"]))


# --- what a fold writes ---------------------------------------------------------------


def writes(folded: fold.Folded) -> list[tuple[fold.Record, Fields | None]]:
    """The single records a fold changed, in a fixed order: each with the fields to write,
    or None to delete it (the rollout rows are `folded.rollouts`, written by id)."""
    m = folded.memory
    out: list[tuple[fold.Record, Fields | None]] = []
    for record in sorted(folded.changed - {"rollout"}):
        out.append((record, _fields(m, record)))
    return out


def _fields(m: model.Memory, record: fold.Record) -> Fields | None:
    match record:
        case "pending":
            return None if m.pending is None else pending_fields(m.pending)
        case "failure":
            return None if m.failure is None else failure_fields(m.failure)
        case "runtime_pause":
            return None if m.runtime_pause is None else pause_fields(m.runtime_pause)
        case "window_override":
            return None if m.window_override is None else override_fields(m.window_override)
        case "scaling_owned":
            return owned_fields(m.scaling_owned) if m.scaling_owned else None
        case "approved_image" if m.approved_image is None:
            return None
    # An approval is a person's (with the time they gave it), never an effect's.
    raise ValueError(f"no effect writes {record} = {getattr(m, record)!r}")


# --- fleets ---------------------------------------------------------------------------
# A fleet's halt is one record (these fields, all absent when not halted) beside its
# `epoch`; the holders of a step's slots are member -> started_at of the rollout that took
# the slot. The rule for taking a slot is here, once, so both stores count alike.


def halt_fields(h: model.Halt) -> Fields:
    return {"halt_reason": h.reason, "halt_at": ts(h.at), "halt_by": h.by, "halt_images": h.images}


def halt(row: Mapping[str, Any] | None) -> model.Halt | None:
    if row is None or row.get("halt_at") is None:
        return None
    return model.Halt(
        reason=row["halt_reason"],
        at=parse_ts(row["halt_at"]),
        by=row["halt_by"],
        images=row.get("halt_images") or "",
    )


def holders_text(holders: Mapping[str, dt.datetime]) -> str:
    return json.dumps({m: ts(at) for m, at in holders.items()}, sort_keys=True)


def holders(text: str | None) -> dict[str, dt.datetime]:
    return {} if text is None else {m: parse_ts(at) for m, at in json.loads(text).items()}


def start_of(effects: Iterable[model.Effect]) -> dt.datetime:
    """When the rollout these effects start begins: the slot is held by that rollout.

    The last StartRollout, since it is the one a batch leaves as the latest rollout.
    """
    starts = [e.at for e in effects if isinstance(e, model.StartRollout)]
    if not starts:
        raise ValueError("start_member needs a StartRollout among its effects")
    return starts[-1]


def holds(latest: model.RolloutMemory | None, started_at: dt.datetime) -> bool:
    """Whether a member still holds the slot its rollout started at `started_at` took: that
    rollout is still its latest and active. Once false it stays false (a rollout never
    becomes active again, and a new one has its own start), so a store may drop it."""
    return latest is not None and latest.active and latest.started_at == started_at


def take_slot(
    held: Mapping[str, dt.datetime],
    latest: Mapping[str, model.RolloutMemory | None],
    name: str,
    at: dt.datetime,
    limit: int,
) -> dict[str, dt.datetime] | None:
    """A step's holders once `name` takes a slot for its rollout starting `at`, or None when
    `limit` others still hold one. `latest` is each other holder's latest rollout; holders
    that let go are dropped, and `name`'s own holding is replaced (its new rollout
    supersedes the old one)."""
    kept = {m: s for m, s in held.items() if m != name and holds(latest.get(m), s)}
    if len(kept) >= limit:
        return None
    return kept | {name: at}


def changes_text(changes: Sequence[model.ResourceChange]) -> str:
    """A change set's resource changes as stored (a verdict of the change-set guard)."""
    return json.dumps([[c.logical_id, c.type, c.action, c.replacement] for c in changes])


def parse_changes(text: str) -> tuple[model.ResourceChange, ...]:
    return tuple(model.ResourceChange(*map(str, row)) for row in json.loads(text))
