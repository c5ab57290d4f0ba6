"""The fleet view: every spec of one account and region observed from reads they share.

Rules of this file (docs/decisions/0008-fleet-observation.md):
- Per (region, role) one paged DescribeStacks (batch.py), one paged
  DescribeAutoScalingGroups, the images of their instances (DescribeInstances, 200 ids a
  call, only when some spec verifies), and per record location one paged ListObjectsV2 serve
  every spec that steps in the same tick. Only what a single stack has is read per stack:
  its records when their ETag changed (GetObject), its load balancers' health when the
  planner verifies (`with_health`), its resources once (DescribeStackResources, cached:
  logical ids do not move).
- Fresh enough to act on: a read serves a step only if it is at most `fresh` old (one
  tick, `--active-interval`) and began after the daemon's own last update or scaling call to
  that stack (`touched`). So a step never decides on a stack as it was before our update,
  and CloudFormation itself refuses an update to a stack that became busy meanwhile.
- Paced: a shared read begins at most once per DUTY times its last duration (batch.py); a
  step that wants a newer one meanwhile gets NotYet and waits for the next tick, deciding
  nothing. At 50 stacks that rarely bites (a listing takes a tenth of the tick); at 1000 it
  keeps the listings from crowding out the updates.
- A group that CloudFormation replaced (emulators replace a group on every image change and
  tag none) is found without a per-stack call: by the tags `aws:cloudformation:stack-name`
  and `aws:cloudformation:logical-id` where AWS sets them, else as the one unclaimed group
  attached to the load balancers the stack's API group had; else the resources are read
  again. What cannot be settled from shared reads returns None: the engine then observes
  that stack alone (observe.py), as it always did.
- Alarms (rollout.alarms, `with_alarms`): per (region, role) one DescribeAlarms of up to
  100 names serves every spec that asks within `fresh`. It reads the names every spec of the
  account asked for lately (a spec observed here is counted as asking), so the specs of one
  tick share one read; a spec whose names the last read did not cover reads again, with
  everyone's, paced like the listings. An alarm's state does not depend on our updates to a
  stack: `touched` does not apply.
- Drift (`judge_drift`, docs/decisions/0014-drift.md): the managed groups as the same
  groups listing shows them, at most one interval old while idle. A listing counts only if
  it was read wholly while the stack stood settled under one LastUpdatedTime: begun after
  a look showed it settled, ended before a later look still did. No per-stack call: the
  groups are found by their tags, else by the resources read once (`warm`).
- Read only; nothing here changes AWS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import structlog

from reconciler import drift, model, spec
from reconciler.aws import records
from reconciler.aws.batch import Key, NotYet, StackCache, stack_view, too_soon
from reconciler.aws.clients import Clients

# Names, not the module: the package's `observe` is the function of that module.
from reconciler.aws.observe import (
    GROUP_TYPE,
    ROLLED_BACK,
    STABLE,
    Problem,
    Resources,
    api_group_name,
    health,
    images,
    instances,
    resources,
)

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import AutoScalingGroupTypeDef

K = TypeVar("K")
T = TypeVar("T")
Clock = Callable[[], float]

GROUPS_PAGE = 100  # DescribeAutoScalingGroups' largest page
ALARM_NAMES = 100  # the most names one DescribeAlarms takes
# Names no spec asked for this long leave the shared alarm reads (a rollout that finished).
ALARMS_FORGOTTEN = 600.0  # seconds
RECORDS_PAGE = 1000  # ListObjectsV2's largest page
STACK_NAME_TAG = "aws:cloudformation:stack-name"
LOGICAL_ID_TAG = "aws:cloudformation:logical-id"
NEVER = float("-inf")


@dataclasses.dataclass
class _Entry(Generic[T]):
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    value: T | None = None
    started: float = NEVER  # when the read that made `value` began
    at: float = NEVER  # ... and ended


class Shared(Generic[K, T]):
    """One value per key, read by one thread while the others wait for its answer, and
    served again while it is young enough and began after `not_before`."""

    def __init__(self, read: Callable[[K], T], clock: Clock) -> None:
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[K, _Entry[T]] = {}

    def started(self, key: K) -> float:
        """When the read now served for `key` began (NEVER before the first)."""
        with self._lock:
            entry = self._entries.get(key)
        return entry.started if entry is not None else NEVER

    def get(self, key: K, max_age: float, not_before: float = NEVER) -> T:
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        with entry.lock:
            now = self._clock()
            stale = now - entry.at > max_age or entry.started < not_before
            if entry.value is not None and stale and too_soon(now, entry.started, entry.at):
                raise NotYet("read moments ago")
            if entry.value is None or stale:
                started = self._clock()
                entry.value = self._read(key)
                entry.started, entry.at = started, self._clock()
            return entry.value


@dataclasses.dataclass(frozen=True)
class Groups:
    """Every Auto Scaling group of one account and region."""

    by_name: Mapping[str, AutoScalingGroupTypeDef]
    by_tag: Mapping[tuple[str, str], str]  # (stack name, logical id) -> group name
    started: float = NEVER  # when the listing began (monotonic): it shows what came before
    at: float = NEVER  # ... and ended: it shows nothing that came after


RecordsKey = tuple[str, str | None, str, str]  # (region, role, bucket, prefix)


@dataclasses.dataclass
class _Alarms:
    """The alarms of one account and region, as the last shared DescribeAlarms found them."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    asked: dict[str, float] = dataclasses.field(default_factory=dict)  # name -> last asked
    found: Mapping[str, model.Alarm] = dataclasses.field(default_factory=dict)
    covered: frozenset[str] = frozenset()  # the names the last read asked for
    started: float = NEVER
    at: float = NEVER


@dataclasses.dataclass
class _StackMemo:
    """What one stack's steps learned that no listing repeats."""

    resources: Resources
    attached: frozenset[str] = frozenset()  # load balancers and target groups of its API group


Seen = tuple[float, float]  # when a read of a stack began and ended (monotonic)


@dataclasses.dataclass(frozen=True)
class _GroupFacts:
    """The managed groups of one stack as one groups listing showed them."""

    started: float
    at: float
    groups: Mapping[str, drift.Group]


@dataclasses.dataclass
class _Watch:
    """What judging one stack's drift remembers between its steps (docs/decisions/
    0014-drift.md). Everything is per `key`: the stack's LastUpdatedTime and our own last
    update or scaling call to it; a new key starts afresh."""

    key: tuple[dt.datetime | None, float] | None = None
    # When the first look that showed the stack settled under `key` ended: CloudFormation's
    # last update had finished by then, so a groups listing begun later shows its result.
    since: float = NEVER
    baseline: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Facts from a listing newer than the look at the stack they came with: judged once a
    # later look, begun after the listing ended, shows the stack still settled under `key`.
    candidate: _GroupFacts | None = None

    def restart(self, key: tuple[dt.datetime | None, float], since: float) -> None:
        self.key, self.since, self.baseline, self.candidate = key, since, {}, None

    def consistent(self, found: _GroupFacts, seen: Seen) -> Mapping[str, drift.Group] | None:
        """The facts read wholly while the stack stood settled under `key`: begun after
        `since`, ended before the look `seen` began (any update in between would have
        changed LastUpdatedTime); None when neither this listing nor the one kept is."""
        after = found.started >= self.since
        if after and found.at <= seen[0]:
            self.candidate = None
            return found.groups
        kept = self.candidate
        self.candidate = found if after else None
        if kept is not None and kept.started >= self.since and kept.at <= seen[0]:
            return kept.groups
        return None


class Fleet:
    """Observations served from shared reads; None where a stack must be read alone."""

    def __init__(self, clients: Clients, clock: Clock = time.monotonic) -> None:
        self._clients = clients
        self._clock = clock
        self.stacks = StackCache(clients, clock)
        self._groups: Shared[Key, Groups] = Shared(self._read_groups, clock)
        # Instance id -> AMI of every grouped instance: only a verification needs them.
        self._images: Shared[Key, Mapping[str, str]] = Shared(self._read_images, clock)
        self._records: Shared[RecordsKey, Mapping[str, str]] = Shared(self._list_records, clock)
        self._lock = threading.Lock()
        self._touched: dict[tuple[Key, str], float] = {}
        self._memos: dict[tuple[Key, str], _StackMemo] = {}
        self._bodies: dict[str, tuple[str, bytes | None]] = {}  # S3 key -> (ETag, body)
        self._alarms: dict[Key, _Alarms] = {}
        self._watches: dict[tuple[Key, str], _Watch] = {}
        self._log = structlog.get_logger("reconciler.fleet")

    # --- what the engine calls ----------------------------------------------------------

    def touched(self, sp: spec.Spec) -> None:
        """We just changed this stack or its group: older reads no longer serve it."""
        with self._lock:
            self._touched[(_key(sp), sp.stack_name)] = self._clock()

    def listed(self, sp: spec.Spec, max_age: dt.timedelta, managed: int) -> model.StackView | None:
        """The stack as the account's listing shows it (no events), or None."""
        listed = self.listed_at(sp, max_age, managed)
        return listed[0] if listed is not None else None

    def listed_at(
        self, sp: spec.Spec, max_age: dt.timedelta, managed: int
    ) -> tuple[model.StackView, Seen] | None:
        """As `listed`, with when the listing that shows it began and ended."""
        read = self.stacks.read(_key(sp), sp.stack_name, max_age, managed, self._not_before(sp))
        if read is None or read.stack is None:
            return None
        return stack_view(read.stack), (read.started, read.at)

    def now(self) -> float:
        """The clock that times the shared reads, for a caller that times a read of its own."""
        return self._clock()

    def warm(self, sp: spec.Spec) -> None:
        """Read the stack's resources once while it is idle, so a rollout does not pay it."""
        self._memo(sp)

    def observe(
        self, sp: spec.Spec, image: str, fresh: dt.timedelta, managed: int
    ) -> model.Observed | None:
        """A partial observation (see model.Observed) fresh enough to act on, or None;
        NotYet when the shared reads it needs may not be repeated yet."""
        # Counted as asking for its alarms before it does: the specs of a tick share a read.
        self._ask(sp)
        listed = self.stacks.lookup(
            _key(sp), sp.stack_name, fresh, managed, self._not_before(sp), paced=True
        )
        if listed is None or listed["StackStatus"] in ROLLED_BACK:
            return None  # not batched, not found, or its events hold why it rolled back
        view = stack_view(listed)
        record = self._record(sp, image, view, fresh)
        if view.status not in STABLE:
            return model.Observed(stack=view, migration_record=record, partial=True)
        named = api_group_name(self._memo(sp).resources, sp)
        if isinstance(named, Problem):
            self._forget(sp)  # a person may fix the template: read it again next time
            return model.Observed(
                stack=view, migration_record=record, problem=named.message, partial=True
            )
        # The groups are read when a rule asks (Decision.needs): phase 1 and the gate do not.
        return model.Observed(stack=view, migration_record=record, partial=True)

    def with_groups(
        self, sp: spec.Spec, observed: model.Observed, fresh: dt.timedelta
    ) -> model.Observed | None:
        """`observed` with the API group's capacity and scaling processes, from the shared
        groups listing. None: read the stack alone."""
        group = self._api_group(sp, fresh)
        if group is None:
            return None
        return dataclasses.replace(
            observed,
            api_desired_capacity=group["DesiredCapacity"],
            api_group=group["AutoScalingGroupName"],
            api_suspended=frozenset(p["ProcessName"] for p in group.get("SuspendedProcesses", [])),
        )

    def with_health(
        self, sp: spec.Spec, observed: model.Observed, fresh: dt.timedelta
    ) -> model.Observed | None:
        """`observed` with the API instances and their health: the one per-stack read a
        verification costs (one call per load balancer). None: read the stack alone."""
        group = self._api_group(sp, fresh)
        if group is None:
            return None
        members = group.get("Instances", [])
        ids = [m["InstanceId"] for m in members]
        known = self._images.get(_key(sp), fresh.total_seconds(), self._not_before(sp))
        if any(i not in known for i in ids):
            # Instances newer than the images read (a replaced group): read them again,
            # rather than spend this stack's health read on instances not yet known.
            listed = self._groups.started(_key(sp))
            known = self._images.get(_key(sp), fresh.total_seconds(), listed)
        healthy = health(self._clients, sp, group, ids)
        found = instances(members, known, healthy)
        grouped = self.with_groups(sp, observed, fresh)  # the same listing: no request
        return None if grouped is None else dataclasses.replace(grouped, api_instances=found)

    def with_alarms(
        self, sp: spec.Spec, observed: model.Observed, fresh: dt.timedelta
    ) -> model.Observed:
        """`observed` with the spec's rollout.alarms by name (an alarm that does not exist
        is absent), from a shared DescribeAlarms at most `fresh` old; NotYet when that read
        is due but began moments ago."""
        names = sp.rollout.alarms
        if not names:
            return dataclasses.replace(observed, alarms={})
        book = self._ask(sp)
        with book.lock:  # one thread reads; the others wait for its answer
            now = self._clock()
            stale = now - book.at > fresh.total_seconds() or not book.covered.issuperset(names)
            if stale and book.at != NEVER and too_soon(now, book.started, book.at):
                raise NotYet("the alarms were read moments ago")
            if stale:
                wanted = self._wanted(book, now)
                started = self._clock()
                book.found = self._read_alarms(_key(sp), sorted(wanted))
                book.covered, book.started, book.at = wanted, started, self._clock()
            found = {n: book.found[n] for n in names if n in book.found}
        return dataclasses.replace(observed, alarms=found)

    def prefetch_groups(self, sp: spec.Spec, max_age: dt.timedelta) -> None:
        """Have the groups listing at most `max_age` old, unless the pace forbids a read now
        (then the listing there is judged as it is, or not at all). Read before the stacks,
        a look at the stack that follows vouches for it (`judge_drift`)."""
        with contextlib.suppress(NotYet):
            self._groups.get(_key(sp), max_age.total_seconds(), self._not_before(sp))

    def judge_drift(
        self,
        sp: spec.Spec,
        view: model.StackView,
        seen: Seen,
        memory: model.Memory,
        max_age: dt.timedelta,
        once: bool = False,
    ) -> tuple[model.Drift, ...] | None:
        """The spec's managed groups' drift (reconciler.drift) from the shared groups listing
        at most `max_age` old; None: not judged this time. `view` is the stack as a read
        that began and ended at `seen` showed it. `once` (plan): no earlier look to build
        on, so the first look counts as settled throughout and the launch templates are
        taken as the baseline."""
        pending = memory.pending is not None
        rolling_out = memory.rollout is not None and memory.rollout.active
        watch = self._watch(sp)
        if not drift.settled(view, pending, rolling_out):
            return None  # our own update or CloudFormation's changes the key before it ends
        key = (view.last_updated, self._not_before(sp))
        if watch.key != key:
            watch.restart(key, NEVER if once else seen[1])
        try:
            groups = self._groups.get(_key(sp), max_age.total_seconds(), self._not_before(sp))
        except NotYet:
            return None
        found = _GroupFacts(groups.started, groups.at, self._managed_groups(sp, groups))
        consistent = watch.consistent(found, seen)
        if consistent is None:
            return None
        facts = drift.Facts(view, consistent, pending, rolling_out, memory.scaling_owned)
        verdict = drift.judge(sp, facts, watch.baseline)
        watch.baseline = verdict.baseline
        return verdict.drift

    def _watch(self, sp: spec.Spec) -> _Watch:
        with self._lock:
            return self._watches.setdefault((_key(sp), sp.stack_name), _Watch())

    def _managed_groups(self, sp: spec.Spec, groups: Groups) -> dict[str, drift.Group]:
        """The spec's two groups as `groups` lists them, by logical id; one not found is
        left out (not judged)."""
        found = {}
        for logical in (sp.resource_names.api_group, sp.resource_names.migration_group):
            group = self._group_of(sp, groups, logical)
            if group is not None:
                found[logical] = _group_facts(group)
        return found

    def _group_of(
        self, sp: spec.Spec, groups: Groups, logical: str
    ) -> AutoScalingGroupTypeDef | None:
        """By CloudFormation's tags, as AWS sets them; else by the stack's resources (read
        once, as `warm` does), the API group also by its load balancers. Not read again
        for drift: where tags are missing (plain moto replaces an untagged group on every
        image change), a migration group so replaced is not judged until they are."""
        name = groups.by_tag.get((sp.stack_name, logical))
        if name is None:
            name = self._physical(sp, logical)
            if name not in groups.by_name and logical == sp.resource_names.api_group:
                name = self._replacement(sp, groups) or name
        return groups.by_name.get(name)

    # --- alarms ---------------------------------------------------------------------------

    def _ask(self, sp: spec.Spec) -> _Alarms:
        """Count the spec's alarms in its account's next read."""
        with self._lock:
            book = self._alarms.setdefault(_key(sp), _Alarms())
            now = self._clock()
            for name in sp.rollout.alarms:
                book.asked[name] = now
        return book

    def _wanted(self, book: _Alarms, now: float) -> frozenset[str]:
        """The names asked for lately in the book's account; the others are forgotten."""
        with self._lock:
            book.asked = {n: t for n, t in book.asked.items() if now - t < ALARMS_FORGOTTEN}
            return frozenset(book.asked)

    def _read_alarms(self, key: Key, names: list[str]) -> Mapping[str, model.Alarm]:
        region, role = key
        cloudwatch = self._clients.cloudwatch(region, role)
        found: dict[str, model.Alarm] = {}
        for first in range(0, len(names), ALARM_NAMES):
            pages = cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNames=names[first : first + ALARM_NAMES],
                AlarmTypes=["MetricAlarm", "CompositeAlarm"],
            )
            for page in pages:
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    name = alarm["AlarmName"]
                    found[name] = model.Alarm(name, alarm["AlarmArn"], _state(alarm))
        return found

    # --- groups -------------------------------------------------------------------------

    def _api_group(self, sp: spec.Spec, fresh: dt.timedelta) -> AutoScalingGroupTypeDef | None:
        groups = self._groups.get(_key(sp), fresh.total_seconds(), self._not_before(sp))
        logical = sp.resource_names.api_group
        name = groups.by_tag.get((sp.stack_name, logical)) or self._physical(sp, logical)
        if name not in groups.by_name:
            name = self._replacement(sp, groups) or self._physical(sp, logical, reread=True)
        group = groups.by_name.get(name)
        if group is None:
            return None  # gone, or newer than the listing: the stack is read alone
        with self._lock:
            memo = self._memos.get((_key(sp), sp.stack_name))
            if memo is not None:
                memo.resources[logical] = (GROUP_TYPE, name)
                memo.attached = _attachments(group)
        return group

    def _physical(self, sp: spec.Spec, logical: str, reread: bool = False) -> str:
        if reread:
            self._forget(sp)
        physical: str = self._memo(sp).resources.get(logical, ("", ""))[1]
        return physical

    def _replacement(self, sp: spec.Spec, groups: Groups) -> str | None:
        """The group that replaced the stack's API group: the only one attached to the same
        load balancers that no managed stack claims. A group on our stack's load balancer
        serves our stack's traffic, whatever its name."""
        with self._lock:
            memo = self._memos.get((_key(sp), sp.stack_name))
            if memo is None or not memo.attached:
                return None
            claimed = {
                physical
                for (key, _), m in self._memos.items()
                if key == _key(sp)
                for _, physical in m.resources.values()
            }
            attached = memo.attached
        found = [
            name
            for name, group in groups.by_name.items()
            if name not in claimed and _attachments(group) == attached
        ]
        return found[0] if len(found) == 1 else None

    def _read_groups(self, key: Key) -> Groups:
        region, role = key
        started = self._clock()
        asg = self._clients.autoscaling(region, role)
        by_name: dict[str, AutoScalingGroupTypeDef] = {}
        by_tag: dict[tuple[str, str], str] = {}
        pages = asg.get_paginator("describe_auto_scaling_groups").paginate(
            PaginationConfig={"PageSize": GROUPS_PAGE}
        )
        for page in pages:
            for group in page["AutoScalingGroups"]:
                name = group["AutoScalingGroupName"]
                by_name[name] = group
                tags = {t.get("Key"): t.get("Value") for t in group.get("Tags", [])}
                stack, logical = tags.get(STACK_NAME_TAG), tags.get(LOGICAL_ID_TAG)
                if stack and logical:
                    by_tag[(stack, logical)] = name
        return Groups(by_name, by_tag, started, self._clock())

    def _read_images(self, key: Key) -> Mapping[str, str]:
        """The images of the instances of the groups as last listed (the caller listed them
        within the same tick): an instance launched since shows as not yet on an image."""
        groups = self._groups.get(key, float("inf"))
        ids = [m["InstanceId"] for g in groups.by_name.values() for m in g.get("Instances", [])]
        return images(self._clients, *key, ids) if ids else {}

    # --- the migration record -------------------------------------------------------------

    def _record(
        self, sp: spec.Spec, image: str, view: model.StackView, fresh: dt.timedelta
    ) -> model.MigrationRecord | None:
        """As observe() reads it, from the location's listing: a GetObject only for a
        record whose ETag changed since we last read it."""
        if sp.migration.check == "none":
            return None
        if view.parameters.get(sp.parameter_names.api_image) == image:
            return None  # once the API runs the image, no decision needs its record
        key = records.record_key(sp.migration, sp.stack_name, image)
        try:
            if key.store != "s3" or key.bucket is None:
                return records.read_record(self._clients, sp, image)  # SSM: one read each
            etags = self._records.get(
                (sp.region, sp.role_arn, key.bucket, _prefix(key.key)),
                fresh.total_seconds(),
                self._not_before(sp),
            )
            raw = self._body(sp, key, etags.get(key.key))
            return None if raw is None else records.parse_record(raw, image, str(key))
        except records.RecordInvalid as exc:
            # `stack`, not `name`: the spec's name comes bound from the engine's step.
            self._log.warning("migration record ignored", stack=sp.stack_name, error=str(exc))
            return None

    def _body(self, sp: spec.Spec, key: records.RecordKey, etag: str | None) -> bytes | None:
        if etag is None:
            return None
        with self._lock:
            cached = self._bodies.get(key.key)
        if cached is not None and cached[0] == etag:
            return cached[1]
        body = records.read_s3(self._clients, sp, key)
        with self._lock:
            self._bodies[key.key] = (etag, body)
        return body

    def _list_records(self, where: RecordsKey) -> Mapping[str, str]:
        region, role, bucket, prefix = where
        s3 = self._clients.s3(region, role)
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": RECORDS_PAGE}
        )
        return {
            obj["Key"]: obj.get("ETag", "") for page in pages for obj in page.get("Contents", [])
        }

    # --- per-stack memory -----------------------------------------------------------------

    def _not_before(self, sp: spec.Spec) -> float:
        with self._lock:
            return self._touched.get((_key(sp), sp.stack_name), NEVER)

    def _memo(self, sp: spec.Spec) -> _StackMemo:
        ident = (_key(sp), sp.stack_name)
        with self._lock:
            memo = self._memos.get(ident)
        if memo is None:
            cfn = self._clients.cloudformation(sp.region, sp.role_arn)
            memo = _StackMemo(resources(cfn, sp.stack_name))
            with self._lock:
                memo = self._memos.setdefault(ident, memo)
        return memo

    def _forget(self, sp: spec.Spec) -> None:
        with self._lock:
            memo = self._memos.pop((_key(sp), sp.stack_name), None)
        if memo is not None and memo.attached:
            # Keep what the group was attached to: it finds the group's replacement.
            fresh = _StackMemo(self._memo(sp).resources, memo.attached)
            with self._lock:
                self._memos[(_key(sp), sp.stack_name)] = fresh


def _key(sp: spec.Spec) -> Key:
    return (sp.region, sp.role_arn)


def _state(alarm: Mapping[str, Any]) -> model.AlarmState:
    state = alarm.get("StateValue")
    if state in ("OK", "ALARM"):
        return cast("model.AlarmState", state)
    # AWS knows no other state; anything else is as good as no data.
    return "INSUFFICIENT_DATA"


def _prefix(record_key: str) -> str:
    """The listing that holds every stack's records of one location: PREFIX/."""
    parts = record_key.split("/")
    return "/".join(parts[:-2]) + "/" if len(parts) > 2 else ""


def _attachments(group: AutoScalingGroupTypeDef) -> frozenset[str]:
    return frozenset([*group.get("LoadBalancerNames", []), *group.get("TargetGroupARNs", [])])


def _group_facts(group: AutoScalingGroupTypeDef) -> drift.Group:
    return drift.Group(
        _launch(group),
        group["DesiredCapacity"],
        frozenset(p["ProcessName"] for p in group.get("SuspendedProcesses", [])),
    )


def _launch(group: AutoScalingGroupTypeDef) -> str | None:
    """The group's launch template (its own, or its mixed instances policy's), else its
    launch configuration. A mixed policy's per-instance-type overrides are skipped: the
    template under the policy is the one an image rollout moves, and so the one that
    matters when someone points the group elsewhere."""
    template = group.get("LaunchTemplate")
    if template is None:
        template = (
            group.get("MixedInstancesPolicy", {})
            .get("LaunchTemplate", {})
            .get("LaunchTemplateSpecification")
        )
    if template is not None:
        ident = template.get("LaunchTemplateId") or template.get("LaunchTemplateName", "?")
        return drift.launch_template(ident, template.get("Version", "$Default"))
    name = group.get("LaunchConfigurationName")
    return drift.launch_configuration(name) if name else None
