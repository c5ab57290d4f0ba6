"""The DynamoDB store and the per-spec leases, for several replicas sharing the work.

Rules of this file:
- One table, single-table design: `pk` is the spec name, `sk` the kind of item
  (`approval`, `failure`, `lease`, `override`, `owned`, `pause`, `pending`, and
  `rollout#0000000042`; the single kinds all sort before `rollout#`, so one key-range
  query reads a spec's memory without its history). The notification outbox lives under
  `pk = "~outbox"`, a fleet under `pk = "~fleet#NAME"` (`fleet` for its halt and epoch,
  `slot#0000000000` per step; a spec name is `[a-z0-9-]`, so neither can clash). Schema
  and setup: `docs/replicas.md`; `create_table()` makes it.
- It speaks only `reconciler.model` values and decides nothing, exactly like the SQLite
  store: `apply()` folds the effects into the stored memory with the one fold
  (`reconciler.fold`) and writes the items the fold reports changed, each laid out as
  `store.records` says (tests/replicas/test_store_contract.py holds both to the fold).
- One `apply()` is one `TransactWriteItems`: all of its effects or none. With a `Lease`,
  every spec write also carries a `ConditionCheck` that this replica's fence is still the
  spec's current one, so a replica that lost its lease changes nothing (`LeaseLost`).
- Datetimes are the SQLite store's fixed-width UTC text, so both stores read the same.
  Items go on the wire through boto3's TypeSerializer and TypeDeserializer.
- Times in leases are epoch seconds from each replica's clock: replicas need clocks
  within the lease's safety margin of each other (NTP gives milliseconds).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from reconciler import fold, model
from reconciler.store import records
from reconciler.store.records import StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]  # a DynamoDB item in the low-level wire format
OUTBOX = "~outbox"
LEASE = "lease"
ROLLOUT = "rollout#"
FLEET = "~fleet#"  # + the fleet's name: its items' pk
HALT = "fleet"  # the fleet's halt (halt_* attributes, absent when not halted) and epoch
SLOT = "slot#"  # + the 0-based step, fixed width: `holders` (JSON) and `version`
VERDICT = "~verdict#"  # + the guard's key: one item, `changes` (JSON) and `at`
# A start that loses the race for its step's slot item reads again and retries; this many
# losses in a row is contention no fleet's maxConcurrent should see.
SLOT_ATTEMPTS = 8
# The sort key of each single record of a spec's memory (fold.Record); all sort < ROLLOUT.
_SK: dict[fold.Record, str] = {
    "approved_image": "approval",
    "failure": "failure",
    "window_override": "override",
    "scaling_owned": "owned",
    "runtime_pause": "pause",
    "pending": "pending",
}
_SINGLES = frozenset(_SK.values())
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


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


def _wire(value: str | float) -> Any:
    """One attribute value in DynamoDB's wire format (numbers travel as Decimal)."""
    number = decimal.Decimal(repr(value)) if isinstance(value, float) else value
    return _SERIALIZER.serialize(number)


def _key(pk: str, sk: str) -> Item:
    return {"pk": _wire(pk), "sk": _wire(sk)}


def _encode(pk: str, sk: str, fields: Mapping[str, str | int | None]) -> Item:
    """An item from text and integer fields; None fields are left out (absent = NULL)."""
    item = _key(pk, sk)
    item.update({name: _wire(v) for name, v in fields.items() if v is not None})
    return item


def _decode(item: Item) -> dict[str, Any]:
    """An item's attributes as plain values: text, and numbers as int where whole."""
    out: dict[str, Any] = {}
    for name, value in item.items():
        plain = _DESERIALIZER.deserialize(value)
        if isinstance(plain, decimal.Decimal):
            plain = int(plain) if plain == plain.to_integral_value() else float(plain)
        out[name] = plain
    return out


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
                    ":me": _wire(self.holder_id),
                    ":exp": _wire(now + self.ttl),
                    ":now": _wire(now),
                    ":one": _wire(1),
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
        fence = int(_decode(cast(Item, answer["Attributes"]))["fence"])
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
                    ":me": _wire(self.holder_id),
                    ":f": _wire(fence),
                    ":exp": _wire(expires_at),
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


# --- the store ------------------------------------------------------------------------


class DynamoStore:
    """Memory per spec in one DynamoDB table; fenced by `lease` when one is given."""

    def __init__(self, client: DynamoDBClient, table: str, lease: Lease | None = None) -> None:
        self.client, self.table, self.lease = client, table, lease
        # One writer per process at a time, as the SQLite store: apply() reads then writes,
        # and the fence only orders writers of different replicas.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Nothing to close: the client's connections go with the process."""

    # --- reading ----------------------------------------------------------------------

    def _query(self, name: str, prefix: str = "", newest_first: bool = False) -> Iterator[Item]:
        paginator = self.client.get_paginator("query")
        values = {":pk": _wire(name)}
        condition = "pk = :pk"
        if prefix:  # DynamoDB refuses an empty key value, even to begins_with
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = _wire(prefix)
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=not newest_first,
            ConsistentRead=True,
        )
        for page in pages:
            yield from cast(list[Item], page.get("Items", []))

    def _singles(self, name: str) -> dict[str, dict[str, Any]]:
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk < :rollouts",
            ExpressionAttributeValues={":pk": _wire(name), ":rollouts": _wire(ROLLOUT)},
            ConsistentRead=True,
        )
        items = cast(list[Item], answer.get("Items", []))  # a handful: never a second page
        rows = [_decode(i) for i in items]
        return {row["sk"]: row for row in rows if row["sk"] in _SINGLES}

    def _latest(self, name: str) -> dict[str, Any] | None:
        for item in self._query(name, ROLLOUT, newest_first=True):
            return _decode(item)
        return None

    def load(self, name: str) -> model.Memory:
        singles = self._singles(name)
        latest = self._latest(name)
        pending, failure = singles.get("pending"), singles.get("failure")
        pause, override = singles.get("pause"), singles.get("override")
        return model.Memory(
            rollout=None if latest is None else records.rollout(latest),
            pending=None if pending is None else records.pending(pending),
            failure=None if failure is None else records.failure(failure),
            approved_image=singles["approval"]["image"] if "approval" in singles else None,
            runtime_pause=None if pause is None else records.pause(pause),
            window_override=None if override is None else records.override(override),
            scaling_owned=records.owned(singles.get("owned")),
        )

    def history(self, name: str, limit: int = 50) -> list[model.RolloutMemory]:
        """Past and current rollouts of one spec, newest first."""
        if limit < 0:
            raise ValueError(f"history limit must be >= 0, not {limit}")
        found: list[model.RolloutMemory] = []
        for item in self._query(name, ROLLOUT, newest_first=True):
            if len(found) >= limit:
                break
            found.append(records.rollout(_decode(item)))
        return found

    # --- writing ----------------------------------------------------------------------

    def _transact(self, name: str, actions: list[dict[str, Any]], control: bool = False) -> bool:
        """Write `actions` atomically under this replica's fence for `name`.

        False when one of the actions' own conditions failed; `LeaseLost` when the fence did.
        A `control` (a person's pause, approval, retry) from a replica that holds no lease
        for the spec is written unfenced: it is an intent, not state derived from a stale
        observation, and any replica's HTTP API must accept it. Held, it is fenced.
        """
        return self._attempt(name, actions, control) is None

    def _attempt(
        self,
        name: str,
        actions: list[dict[str, Any]],
        control: bool = False,
        tolerated: frozenset[str] = frozenset({"ConditionalCheckFailed"}),
    ) -> list[str] | None:
        """`_transact`, telling which action failed: None when written, else the
        cancellation code of each of `actions` when one of them is `tolerated` (any other
        cancellation is raised as it came)."""
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
            if tolerated.intersection(codes):
                return codes[1:] if fence is not None else codes
            raise
        return None

    def _fence_check(self, name: str, holder: str, fence: int) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": _key(name, LEASE),
                "ConditionExpression": "holder = :me AND fence = :f",
                "ExpressionAttributeValues": {":me": _wire(holder), ":f": _wire(fence)},
            }
        }

    def apply(self, name: str, effects: Sequence[model.Effect]) -> None:
        """Fold the planner's effects into the stored memory, in one transaction."""
        if not effects:
            return
        with self._lock:
            memory = self.load(name)
            actions = self._writes(name, memory, fold.apply_all(memory, effects))
            if actions and not self._transact(name, actions):
                raise StoreError(
                    f"{name}: another writer started a rollout while this one was folding "
                    "effects (no lease held?); nothing was written"
                )

    def _writes(self, name: str, before: model.Memory, folded: fold.Folded) -> list[dict[str, Any]]:
        """The fold's changes as TransactWriteItems actions: single records, then rollouts."""
        actions: list[dict[str, Any]] = []
        for record, fields in records.writes(folded):
            if fields is None:
                key = _key(name, _SK[record])
                actions.append({"Delete": {"TableName": self.table, "Key": key}})
            else:
                item = _encode(name, _SK[record], fields)
                actions.append({"Put": {"TableName": self.table, "Item": item}})
        latest = before.rollout.id if before.rollout is not None else 0
        for rollout in folded.rollouts:
            put: dict[str, Any] = {
                "TableName": self.table,
                "Item": _encode(name, _rollout_sk(rollout.id), records.rollout_fields(rollout)),
            }
            if rollout.id > latest:
                # A new rollout's row must be new: two writers folding from the same memory
                # (no lease) cannot both start one and leave two active.
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            actions.append({"Put": put})
        return actions

    # --- fleets -----------------------------------------------------------------------
    # Not fenced but for start_member's spec writes: a fleet belongs to no one replica.
    # Halt and lift are single conditional updates; the count of a step's slots is guarded
    # by the slot item's version, so two replicas that read the same holders cannot both
    # write theirs.

    def _item(self, pk: str, sk: str) -> dict[str, Any] | None:
        answer = self.client.get_item(TableName=self.table, Key=_key(pk, sk), ConsistentRead=True)
        item = answer.get("Item")
        return None if item is None else _decode(cast(Item, item))

    def fleet(self, name: str) -> model.FleetMemory:
        rows = [_decode(item) for item in self._query(FLEET + name)]
        head = next((r for r in rows if r["sk"] == HALT), None)
        holders = {
            int(r["sk"].removeprefix(SLOT)): records.holders(r.get("holders"))
            for r in rows
            if r["sk"].startswith(SLOT)
        }
        return model.FleetMemory(
            halt=records.halt(head),
            epoch=None if head is None else records.parse_ts_opt(head.get("epoch")),
            holders={step: held for step, held in holders.items() if held},
        )

    def start_member(self, name: str, effects: Sequence[model.Effect], claim: model.Claim) -> bool:
        """Start `name`'s rollout only if fleet `claim.fleet` is not halted and fewer than
        `claim.limit` other members hold a slot of `claim.step`: the slot, a check that the
        fleet is not halted, the effects and the fence in one transaction, the slot item
        conditioned on the version its holders were read at.

        False: nothing was written. ValueError: no StartRollout among `effects`. LeaseLost:
        as `apply`. StoreError: the slot was lost to other writers SLOT_ATTEMPTS times in a
        row, or another writer started a rollout of `name` meanwhile (as `apply`).
        """
        at = records.start_of(effects)
        pk, sk = FLEET + claim.fleet, f"{SLOT}{claim.step:010d}"
        with self._lock:
            for _ in range(SLOT_ATTEMPTS):
                if records.halt(self._item(pk, HALT)) is not None:
                    return False
                slot = self._item(pk, sk)
                held = records.holders(None if slot is None else slot["holders"])
                latest = {m: self._latest(m) for m in held if m != name}
                taken = records.take_slot(
                    held,
                    {m: None if r is None else records.rollout(r) for m, r in latest.items()},
                    name,
                    at,
                    claim.limit,
                )
                if taken is None:
                    return False
                version = 0 if slot is None else int(slot["version"])
                fields: dict[str, str | int] = {
                    "holders": records.holders_text(taken),
                    "version": version + 1,
                }
                put: dict[str, Any] = {
                    "TableName": self.table,
                    "Item": _encode(pk, sk, fields),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
                if slot is not None:
                    put["ConditionExpression"] = "version = :v"
                    put["ExpressionAttributeValues"] = {":v": _wire(version)}
                not_halted = {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": _key(pk, HALT),
                        "ConditionExpression": "attribute_not_exists(halt_at)",
                    }
                }
                memory = self.load(name)
                writes = self._writes(name, memory, fold.apply_all(memory, effects))
                codes = self._attempt(
                    name,
                    [not_halted, {"Put": put}, *writes],
                    tolerated=frozenset({"ConditionalCheckFailed", "TransactionConflict"}),
                )
                if codes is None:
                    return True
                if "ConditionalCheckFailed" in codes[2:]:  # a new rollout row already exists
                    raise StoreError(
                        f"{name}: another writer started a rollout while this one was folding "
                        "effects (no lease held?); nothing was written"
                    )
                # Halted or the slot moved since we read it (or a transaction in flight on
                # one of the items): read again.
        raise StoreError(
            f"{name}: lost the race for a slot of step {claim.step + 1} of fleet "
            f"{claim.fleet} {SLOT_ATTEMPTS} times; nothing was written"
        )

    def halt_fleet(self, name: str, halt: model.Halt) -> bool:
        """Halt the fleet unless it is halted already (the first halt's reason stands)."""
        fields = records.halt_fields(halt)
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(FLEET + name, HALT),
                UpdateExpression="SET " + ", ".join(f"#{i} = :{i}" for i in range(len(fields))),
                ConditionExpression="attribute_not_exists(halt_at)",
                ExpressionAttributeNames={f"#{i}": f for i, f in enumerate(fields)},
                ExpressionAttributeValues={
                    f":{i}": _wire(cast(str, v)) for i, v in enumerate(fields.values())
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def lift_fleet(self, name: str, at: dt.datetime) -> bool:
        """Clear the halt, if any, and start a new epoch at `at`; True if a halt was cleared."""
        answer = self.client.update_item(
            TableName=self.table,
            Key=_key(FLEET + name, HALT),
            UpdateExpression="SET #epoch = :at REMOVE halt_reason, halt_at, halt_by, halt_images",
            ExpressionAttributeNames={"#epoch": "epoch"},
            ExpressionAttributeValues={":at": _wire(records.ts(at))},
            ReturnValues="ALL_OLD",
        )
        return "halt_at" in answer.get("Attributes", {})

    # --- change-set verdicts -----------------------------------------------------------
    # Not fenced: a verdict is a fact about a template, the same whoever wrote it.

    def verdict(self, key: str) -> tuple[model.ResourceChange, ...] | None:
        item = self._item(VERDICT + key, "verdict")
        return None if item is None else records.parse_changes(item["changes"])

    def save_verdict(
        self, key: str, changes: Sequence[model.ResourceChange], at: dt.datetime
    ) -> None:
        fields = {"changes": records.changes_text(changes), "at": records.ts(at)}
        self.client.put_item(TableName=self.table, Item=_encode(VERDICT + key, "verdict", fields))

    # --- runtime controls -------------------------------------------------------------

    def _put(self, name: str, sk: str, fields: Mapping[str, str | int | None]) -> None:
        item = _encode(name, sk, fields)
        with self._lock:
            self._transact(name, [{"Put": {"TableName": self.table, "Item": item}}], control=True)

    def pause(
        self, name: str, reason: str, at: dt.datetime, until: dt.datetime | None = None
    ) -> None:
        self._put(
            name, "pause", {"reason": reason, "at": records.ts(at), "until": records.ts_opt(until)}
        )

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
            name, "override", {"reason": reason, "at": records.ts(at), "until": records.ts(until)}
        )

    def approve(self, name: str, image: str, at: dt.datetime) -> None:
        self._put(name, "approval", {"image": image, "at": records.ts(at)})

    def retry(self, name: str, now: dt.datetime) -> bool:
        """Make a backing-off spec due now; False if it has no failure to retry."""
        update = {
            "Update": {
                "TableName": self.table,
                "Key": _key(name, "failure"),
                "UpdateExpression": "SET next_retry_at = :now",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":now": _wire(records.ts(now))},
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
            created = records.ts(e.created_at)
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
            ExpressionAttributeValues={":pk": _wire(OUTBOX), ":now": _wire(records.ts(now))},
            ConsistentRead=True,
        )
        rows = [_decode(item) for page in pages for item in page.get("Items", [])]
        rows.sort(key=lambda r: (r["next_attempt_at"], r["created_at"]))
        return [
            model.OutboxEntry(
                r["key"],
                r["sink"],
                r["payload"],
                records.parse_ts(r["created_at"]),
                int(r["attempts"]),
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
            ExpressionAttributeValues={":at": _wire(records.ts(at)), ":one": _wire(1)},
        )

    def deferred(
        self, key: str, sink: str, attempts: int, next_at: dt.datetime | None, error: str
    ) -> None:
        """Record a failed attempt; `next_at` None gives the entry up (kept, never retried)."""
        values: dict[str, Any] = {":n": _wire(attempts), ":e": _wire(error)}
        expression = "SET attempts = :n, last_error = :e"
        if next_at is None:
            expression += " REMOVE next_attempt_at"
        else:
            expression += ", next_attempt_at = :next"
            values[":next"] = _wire(records.ts(next_at))
        self.client.update_item(
            TableName=self.table,
            Key=_key(OUTBOX, self._outbox_sk(key, sink)),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=values,
        )
