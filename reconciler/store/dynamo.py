"""The DynamoDB store and the per-spec leases, for several replicas sharing the work.

Rules of this file:
- One table, single-table design: `pk` is the spec name, `sk` the kind of item
  (`approval`, `failure`, `lease`, `override`, `owned`, `pause`, `pending`, and
  `rollout#0000000042`; the single kinds all sort before `rollout#`, so one key-range
  query reads a spec's memory without its history). The notification outbox lives under
  `pk = "~outbox"` (a spec name is `[a-z0-9-]`, so it cannot clash). Schema and setup:
  `docs/replicas.md`; `create_table()` makes it.
- It speaks only `reconciler.model` values and decides nothing, exactly like the SQLite
  store, and gives the same answers (tests/replicas/test_store_contract.py holds that).
- One `apply()` is one `TransactWriteItems`: all of its effects or none. With a `Lease`,
  every spec write also carries a `ConditionCheck` that this replica's fence is still the
  spec's current one, so a replica that lost its lease changes nothing (`LeaseLost`).
- Datetimes are the SQLite store's fixed-width UTC text, so both stores read the same.
- Times in leases are epoch seconds from each replica's clock: replicas need clocks
  within the lease's safety margin of each other (NTP gives milliseconds).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from reconciler import model
from reconciler.store.sqlite import (
    SUPERSEDED_REASON,
    StateDirLock,
    StoreError,
)
from reconciler.store.sqlite import _dt as parse_ts
from reconciler.store.sqlite import _ts as format_ts

if TYPE_CHECKING:
    import pathlib

    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]  # a DynamoDB item in the low-level wire format
OUTBOX = "~outbox"
LEASE = "lease"
ROLLOUT = "rollout#"
_SINGLES = ("approval", "failure", "override", "owned", "pause", "pending")  # all < ROLLOUT
# Kinds that make a spec appear in `names()`, as the SQLite store's tables do.
_NAMED_KINDS = ("rollout", "pending", "failure", "approval", "pause")
_MARK_FIELDS = model.MARK_TIMES


class LeaseLost(StoreError):
    """This replica's fence for a spec is no longer current: another replica drives it."""


def create_table(client: DynamoDBClient, table: str) -> None:
    """Create the store's table (on-demand billing) and wait until it is active."""
    client.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})


# --- wire format ----------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value)}


def _key(pk: str, sk: str) -> Item:
    return {"pk": _s(pk), "sk": _s(sk)}


def _encode(pk: str, sk: str, fields: Mapping[str, str | int | None]) -> Item:
    """An item from text and integer fields; None fields are left out (absent = NULL)."""
    item = _key(pk, sk)
    for name, value in fields.items():
        if isinstance(value, int):
            item[name] = _n(value)
        elif value is not None:
            item[name] = _s(value)
    return item


def _decode(item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in item.items():
        if "S" in value:
            out[name] = value["S"]
        elif "N" in value:
            number = value["N"]
            out[name] = int(number) if number.lstrip("-").isdigit() else float(number)
    return out


def _ts_opt(value: dt.datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def _dt_opt(text: str | None) -> dt.datetime | None:
    return None if text is None else parse_ts(text)


def _rollout_sk(rollout_id: int) -> str:
    return f"{ROLLOUT}{rollout_id:010d}"  # fixed width: key order is id order


def _cancel_codes(exc: ClientError) -> list[str]:
    reasons = cast(list[dict[str, str]], exc.response.get("CancellationReasons", []))
    return [r.get("Code", "None") for r in reasons]


# --- leases ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Held:
    fence: int
    expires_at: float  # by our clock, counted from before the request that set it


class Lease:
    """Per-spec leases in the store's table: one replica drives a spec at a time.

    The item `(name, "lease")` holds `holder`, `expires_at` (epoch seconds) and `fence`,
    a counter incremented on every acquisition, so writes made under an older acquisition
    can be refused (`DynamoStore` conditions every write on it).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        holder_id: str,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
        margin: float | None = None,
    ) -> None:
        self.client, self.table, self.holder_id, self.ttl = client, table, holder_id, ttl
        self.clock = clock
        # Stop acting a third of a TTL before the lease ends: room for a step in flight and
        # for clock skew, while renewals every TTL/3 keep a healthy holder well inside it.
        self.margin = ttl / 3 if margin is None else margin
        self._held: dict[str, _Held] = {}
        self._holders: dict[str, str] = {}  # who held a spec when we last failed to take it
        self._lock = threading.Lock()

    def acquire(self, name: str) -> int | None:
        """Renew the lease if held, else take it when free or expired; the fence, or None."""
        if self.fence(name) is not None and self.renew(name):
            return self.fence(name)
        now = self.clock()
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key=_key(name, LEASE),
                UpdateExpression="SET holder = :me, expires_at = :exp ADD fence :one",
                ConditionExpression=(
                    "attribute_not_exists(pk) OR expires_at < :now OR holder = :me"
                ),
                ExpressionAttributeValues={
                    ":me": _s(self.holder_id),
                    ":exp": _n(now + self.ttl),
                    ":now": _n(now),
                    ":one": _n(1),
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            holder = _decode(cast(Item, exc.response.get("Item", {}))).get("holder", "unknown")
            with self._lock:
                self._holders[name] = str(holder)
            return None
        fence = int(answer["Attributes"]["fence"]["N"])
        with self._lock:
            self._held[name] = _Held(fence, now + self.ttl)
            self._holders.pop(name, None)
        return fence

    def renew(self, name: str) -> bool:
        """Extend a held lease; False (and forgotten) when another acquisition came since."""
        held = self._get(name)
        if held is None:
            return False
        now = self.clock()
        # The fence, not the expiry: a lapsed lease nobody took is still ours to renew,
        # since any takeover would have moved the fence.
        if not self._set_expiry(name, held.fence, now + self.ttl):
            self.forget(name)
            return False
        with self._lock:
            if name in self._held:
                self._held[name].expires_at = now + self.ttl
        return True

    def release(self, name: str) -> None:
        """Give the lease up now (a clean stop), so another replica need not wait it out."""
        held = self._get(name)
        self.forget(name)
        if held is None:
            return
        self._set_expiry(name, held.fence, 0)  # False: taken over, nothing of ours to release

    def _set_expiry(self, name: str, fence: int, expires_at: float) -> bool:
        """Move our lease's expiry; False when the lease is no longer ours (fence moved)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(name, LEASE),
                UpdateExpression="SET expires_at = :exp",
                ConditionExpression="holder = :me AND fence = :f",
                ExpressionAttributeValues={
                    ":me": _s(self.holder_id),
                    ":f": _n(fence),
                    ":exp": _n(expires_at),
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def forget(self, name: str) -> None:
        """Drop what we know of a lease locally (it was lost)."""
        with self._lock:
            self._held.pop(name, None)

    def fence(self, name: str) -> int | None:
        """The fence of our last acquisition of `name`, if we have not lost it (no I/O)."""
        held = self._get(name)
        return None if held is None else held.fence

    def held(self, name: str) -> int | None:
        """The fence while it is safe to act on `name`: before expiry minus the margin."""
        held = self._get(name)
        if held is None or self.clock() >= held.expires_at - self.margin:
            return None
        return held.fence

    def holder(self, name: str) -> str | None:
        """Which replica held `name` when we last failed to acquire it."""
        with self._lock:
            return self._holders.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def _get(self, name: str) -> _Held | None:
        with self._lock:
            held = self._held.get(name)
            return None if held is None else dataclasses.replace(held)


# --- folding effects into items -------------------------------------------------------


class _Batch:
    """The items one `apply()` changes, folded from the effects in order."""

    def __init__(self, name: str, latest: dict[str, Any] | None) -> None:
        self.name = name
        self.singles: dict[str, Item | None] = {}  # sk -> new item, None to delete
        self.rollouts: dict[int, dict[str, Any]] = {}
        self.next_id = int(latest["id"]) + 1 if latest else 1
        self.active: int | None = None
        if latest is not None and latest.get("result") is None:
            self.active = int(latest["id"])
            self.rollouts[self.active] = dict(latest)
        self.touched: set[int] = set()

    def put(self, sk: str, fields: Mapping[str, str | int | None]) -> None:
        self.singles[sk] = _encode(self.name, sk, fields)

    def delete(self, sk: str) -> None:
        self.singles[sk] = None

    def start(self, effect: model.StartRollout) -> None:
        if self.active is not None:
            reason = SUPERSEDED_REASON.format(image=effect.image, revision=effect.revision)
            self.finish("superseded", effect.at, reason)
        rollout_id, self.next_id = self.next_id, self.next_id + 1
        self.rollouts[rollout_id] = {
            "id": rollout_id,
            "image": effect.image,
            "revision": effect.revision,
            "from_image": effect.from_image,
            "started_at": format_ts(effect.at),
            "phase1_started_at": _ts_opt(effect.phase1_started_at),
            "migrated_at": _ts_opt(effect.migrated_at),
        }
        self.active = rollout_id
        self.touched.add(rollout_id)

    def mark(self, effect: model.MarkRollout) -> None:
        row = self.rollouts[self._require_active("MarkRollout")]
        for field in _MARK_FIELDS:
            value = cast(dt.datetime | None, getattr(effect, field))
            if value is not None:
                row[field] = format_ts(value)
        if effect.revision is not None:
            row["revision"] = effect.revision
        self.touched.add(int(row["id"]))

    def finish(self, result: str, at: dt.datetime, reason: str | None) -> None:
        active = self._require_active("FinishRollout")
        self.rollouts[active].update(result=result, finished_at=format_ts(at), reason=reason)
        self.touched.add(active)
        self.active = None

    def resume_scaling(self, at: dt.datetime, stored: dict[str, Any] | None) -> None:
        """DisownScaling: stamp the newest rollout that suspended scaling, once."""
        candidates = [r for r in self.rollouts.values() if r.get("scaling_suspended_at")]
        if stored is not None and int(stored["id"]) not in self.rollouts:
            candidates.append(dict(stored))
        if not candidates:
            return
        row = max(candidates, key=lambda r: int(r["id"]))
        if row.get("scaling_resumed_at") is None:
            row["scaling_resumed_at"] = format_ts(at)
            self.rollouts[int(row["id"])] = row
            self.touched.add(int(row["id"]))

    def _require_active(self, effect: str) -> int:
        if self.active is None:
            raise StoreError(
                f"{effect} for {self.name!r} but it has no active rollout "
                "(a planner bug: the batch was not applied)"
            )
        return self.active

    def writes(self, table: str) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = []
        for sk, item in self.singles.items():
            if item is None:
                actions.append({"Delete": {"TableName": table, "Key": _key(self.name, sk)}})
            else:
                actions.append({"Put": {"TableName": table, "Item": item}})
        for rollout_id in sorted(self.touched):
            row = self.rollouts[rollout_id]
            item = _encode(self.name, _rollout_sk(rollout_id), row)
            actions.append({"Put": {"TableName": table, "Item": item}})
        return actions


# --- the store ------------------------------------------------------------------------


class DynamoStore:
    """Memory per spec in one DynamoDB table; fenced by `lease` when one is given."""

    def __init__(self, client: DynamoDBClient, table: str, lease: Lease | None = None) -> None:
        self.client, self.table, self.lease = client, table, lease
        # One writer per process at a time, as the SQLite store: apply() reads then writes,
        # and the fence only orders writers of different replicas.
        self._lock = threading.Lock()

    @staticmethod
    def lock_state_dir(state_dir: pathlib.Path) -> StateDirLock:
        """The git clone still lives in the state dir: one process per directory."""
        return StateDirLock(state_dir)

    def close(self) -> None:
        """Nothing to close: the client's connections go with the process."""

    # --- reading ----------------------------------------------------------------------

    def _query(self, name: str, prefix: str = "", newest_first: bool = False) -> Iterator[Item]:
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _s(name), ":prefix": _s(prefix)},
            ScanIndexForward=not newest_first,
            ConsistentRead=True,
        )
        for page in pages:
            yield from cast(list[Item], page.get("Items", []))

    def _singles(self, name: str) -> dict[str, dict[str, Any]]:
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk < :rollouts",
            ExpressionAttributeValues={":pk": _s(name), ":rollouts": _s(ROLLOUT)},
            ConsistentRead=True,
        )
        items = cast(list[Item], answer.get("Items", []))  # a handful: never a second page
        return {i["sk"]["S"]: _decode(i) for i in items if i["sk"]["S"] in _SINGLES}

    def _latest(self, name: str) -> dict[str, Any] | None:
        for item in self._query(name, ROLLOUT, newest_first=True):
            return _decode(item)
        return None

    def _latest_suspended(self, name: str) -> dict[str, Any] | None:
        for item in self._query(name, ROLLOUT, newest_first=True):
            row = _decode(item)
            if row.get("scaling_suspended_at"):
                return row
        return None

    def load(self, name: str) -> model.Memory:
        singles = self._singles(name)
        latest = self._latest(name)
        pending, failure = singles.get("pending"), singles.get("failure")
        pause, override = singles.get("pause"), singles.get("override")
        owned = singles.get("owned")
        return model.Memory(
            rollout=None if latest is None else _rollout(latest),
            pending=None if pending is None else _pending(pending),
            failure=None if failure is None else _failure(failure),
            approved_image=singles["approval"]["image"] if "approval" in singles else None,
            runtime_pause=None
            if pause is None
            else model.RuntimePause(
                pause["reason"], parse_ts(pause["at"]), _dt_opt(pause.get("until"))
            ),
            window_override=None
            if override is None
            else model.WindowOverride(
                override["reason"], parse_ts(override["at"]), parse_ts(override["until"])
            ),
            scaling_owned=frozenset(json.loads(owned["processes"])) if owned else frozenset(),
        )

    def history(self, name: str, limit: int = 50) -> list[model.RolloutMemory]:
        """Past and current rollouts of one spec, newest first."""
        if limit < 0:
            raise ValueError(f"history limit must be >= 0, not {limit}")
        found: list[model.RolloutMemory] = []
        for item in self._query(name, ROLLOUT, newest_first=True):
            if len(found) >= limit:
                break
            found.append(_rollout(_decode(item)))
        return found

    def names(self) -> list[str]:
        """Every spec name the store holds anything for, sorted (a scan: a small table)."""
        names: set[str] = set()
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, ProjectionExpression="pk, sk", ConsistentRead=True
        )
        for page in pages:
            for item in page.get("Items", []):
                pk, sk = item["pk"]["S"], item["sk"]["S"]
                if pk != OUTBOX and sk.startswith(_NAMED_KINDS):
                    names.add(pk)
        return sorted(names)

    # --- writing ----------------------------------------------------------------------

    def _transact(self, name: str, actions: list[dict[str, Any]], control: bool = False) -> bool:
        """Write `actions` atomically under this replica's fence for `name`.

        False when one of the actions' own conditions failed; `LeaseLost` when the fence did.
        A `control` (a person's pause, approval, retry) from a replica that holds no lease
        for the spec is written unfenced: it is an intent, not state derived from a stale
        observation, and any replica's HTTP API must accept it. Held, it is fenced.
        """
        fence = self.lease.fence(name) if self.lease is not None else None
        if self.lease is not None and fence is None and not control:
            raise LeaseLost(
                f"{name}: this replica ({self.lease.holder_id}) holds no lease for it; "
                "nothing was written"
            )
        if self.lease is not None and fence is not None:
            actions = [self._fence_check(name, self.lease.holder_id, fence), *actions]
        try:
            self.client.transact_write_items(TransactItems=cast(Any, actions))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = _cancel_codes(exc)
            if fence is not None and codes[:1] == ["ConditionalCheckFailed"]:
                assert self.lease is not None
                self.lease.forget(name)
                raise LeaseLost(
                    f"{name}: fence {fence} of replica {self.lease.holder_id} is no longer "
                    "current (another replica took the lease); nothing was written"
                ) from exc
            if "ConditionalCheckFailed" in codes:
                return False
            raise
        return True

    def _fence_check(self, name: str, holder: str, fence: int) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": _key(name, LEASE),
                "ConditionExpression": "holder = :me AND fence = :f",
                "ExpressionAttributeValues": {":me": _s(holder), ":f": _n(fence)},
            }
        }

    def apply(self, name: str, effects: Sequence[model.Effect]) -> None:
        """Apply the planner's effects in order, all in one transaction."""
        if not effects:
            return
        with self._lock:
            batch = _Batch(name, self._latest(name))
            for effect in effects:
                self._fold(batch, effect)
            actions = batch.writes(self.table)
            if actions:
                self._transact(name, actions)

    def _fold(self, batch: _Batch, effect: model.Effect) -> None:
        match effect:
            case model.StartRollout():
                batch.start(effect)
            case model.MarkRollout():
                batch.mark(effect)
            case model.FinishRollout():
                batch.finish(effect.result, effect.at, effect.reason)
            case model.SetPending(pending=p):
                expected = json.dumps(dict(p.expected), sort_keys=True, separators=(",", ":"))
                batch.put(
                    "pending",
                    {
                        "kind": p.kind,
                        "image": p.image,
                        "revision": p.revision,
                        "token": p.token,
                        "sent_at": format_ts(p.sent_at),
                        "expected": expected,
                    },
                )
            case model.ClearPending():
                batch.delete("pending")
            case model.RecordFailure(failure=f):
                batch.put(
                    "failure",
                    {
                        "count": f.count,
                        "reason": f.reason,
                        "at": format_ts(f.at),
                        "next_retry_at": format_ts(f.next_retry_at),
                        "revision": f.revision,
                        "image": f.image,
                    },
                )
            case model.ClearFailure():
                batch.delete("failure")
            case model.ClearRuntimePause():
                batch.delete("pause")
            case model.ConsumeApproval():
                batch.delete("approval")
            case model.OwnScaling(processes=processes):
                batch.put("owned", {"processes": json.dumps(sorted(processes))})
            case model.DisownScaling(at=at):
                batch.delete("owned")
                batch.resume_scaling(at, self._latest_suspended(batch.name))
            case _:
                raise StoreError(f"unknown effect {effect!r}")

    # --- runtime controls -------------------------------------------------------------

    def _put(self, name: str, sk: str, fields: Mapping[str, str | int | None]) -> None:
        item = _encode(name, sk, fields)
        with self._lock:
            self._transact(name, [{"Put": {"TableName": self.table, "Item": item}}], control=True)

    def pause(
        self, name: str, reason: str, at: dt.datetime, until: dt.datetime | None = None
    ) -> None:
        self._put(name, "pause", {"reason": reason, "at": format_ts(at), "until": _ts_opt(until)})

    def resume(self, name: str) -> bool:
        """Lift a runtime pause; False if there was none (a spec pause is git's to lift)."""
        delete = {
            "Delete": {
                "TableName": self.table,
                "Key": _key(name, "pause"),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        with self._lock:
            return self._transact(name, [delete], control=True)

    def override_window(self, name: str, reason: str, at: dt.datetime, until: dt.datetime) -> None:
        """Let `name` start a rollout outside its windows until `until` (recorded)."""
        self._put(
            name, "override", {"reason": reason, "at": format_ts(at), "until": format_ts(until)}
        )

    def approve(self, name: str, image: str, at: dt.datetime) -> None:
        self._put(name, "approval", {"image": image, "at": format_ts(at)})

    def retry(self, name: str, now: dt.datetime) -> bool:
        """Make a backing-off spec due now; False if it has no failure to retry."""
        update = {
            "Update": {
                "TableName": self.table,
                "Key": _key(name, "failure"),
                "UpdateExpression": "SET next_retry_at = :now",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":now": _s(format_ts(now))},
            }
        }
        with self._lock:
            return self._transact(name, [update], control=True)

    # --- notification outbox ------------------------------------------------------------
    # Not fenced: entries belong to no spec's rollout state, and a replica that lost a
    # lease may still pay what it owes. Two replicas may both send a due entry before
    # either marks it delivered: delivery is at least once, as a webhook's must be anyway.

    @staticmethod
    def _outbox_sk(key: str, sink: str) -> str:
        return json.dumps([key, sink])

    def enqueue(self, entries: Sequence[model.OutboxEntry]) -> int:
        """Owe each entry to its sink, unless that (key, sink) was ever owed; how many were new."""
        added = 0
        for e in entries:
            created = format_ts(e.created_at)
            item = _encode(
                OUTBOX,
                self._outbox_sk(e.key, e.sink),
                {
                    "key": e.key,
                    "sink": e.sink,
                    "payload": e.payload,
                    "created_at": created,
                    "attempts": 0,
                    "next_attempt_at": created,
                },
            )
            try:
                self.client.put_item(
                    TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                continue
            added += 1
        return added

    def due(self, now: dt.datetime, limit: int = 50) -> list[model.OutboxEntry]:
        """Undelivered entries whose next attempt is due, oldest first."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            FilterExpression="attribute_not_exists(delivered_at) AND next_attempt_at <= :now",
            ExpressionAttributeValues={":pk": _s(OUTBOX), ":now": _s(format_ts(now))},
            ConsistentRead=True,
        )
        rows = [_decode(item) for page in pages for item in page.get("Items", [])]
        rows.sort(key=lambda r: (r["next_attempt_at"], r["created_at"]))
        return [
            model.OutboxEntry(
                r["key"], r["sink"], r["payload"], parse_ts(r["created_at"]), int(r["attempts"])
            )
            for r in rows[:limit]
        ]

    def delivered(self, key: str, sink: str, at: dt.datetime) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=_key(OUTBOX, self._outbox_sk(key, sink)),
            UpdateExpression="SET delivered_at = :at, attempts = attempts + :one "
            "REMOVE next_attempt_at, last_error",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":at": _s(format_ts(at)), ":one": _n(1)},
        )

    def deferred(
        self, key: str, sink: str, attempts: int, next_at: dt.datetime | None, error: str
    ) -> None:
        """Record a failed attempt; `next_at` None gives the entry up (kept, never retried)."""
        values: dict[str, Any] = {":n": _n(attempts), ":e": _s(error)}
        expression = "SET attempts = :n, last_error = :e"
        if next_at is None:
            expression += " REMOVE next_attempt_at"
        else:
            expression += ", next_attempt_at = :next"
            values[":next"] = _s(format_ts(next_at))
        self.client.update_item(
            TableName=self.table,
            Key=_key(OUTBOX, self._outbox_sk(key, sink)),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=values,
        )


# --- items to model values ------------------------------------------------------------


def _rollout(row: Mapping[str, Any]) -> model.RolloutMemory:
    return model.RolloutMemory(
        id=int(row["id"]),
        image=row["image"],
        revision=row["revision"],
        from_image=row.get("from_image"),
        started_at=parse_ts(row["started_at"]),
        phase1_started_at=_dt_opt(row.get("phase1_started_at")),
        migrated_at=_dt_opt(row.get("migrated_at")),
        approved_at=_dt_opt(row.get("approved_at")),
        switch_started_at=_dt_opt(row.get("switch_started_at")),
        switched_at=_dt_opt(row.get("switched_at")),
        finished_at=_dt_opt(row.get("finished_at")),
        result=row.get("result"),
        reason=row.get("reason"),
        scaling_suspended_at=_dt_opt(row.get("scaling_suspended_at")),
        scaling_resumed_at=_dt_opt(row.get("scaling_resumed_at")),
    )


def _pending(row: Mapping[str, Any]) -> model.Pending:
    return model.Pending(
        kind=row["kind"],
        image=row["image"],
        revision=row["revision"],
        token=row["token"],
        sent_at=parse_ts(row["sent_at"]),
        expected=json.loads(row["expected"]),
    )


def _failure(row: Mapping[str, Any]) -> model.Failure:
    return model.Failure(
        count=int(row["count"]),
        reason=row["reason"],
        at=parse_ts(row["at"]),
        next_retry_at=parse_ts(row["next_retry_at"]),
        revision=row["revision"],
        image=row["image"],
    )
