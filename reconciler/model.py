"""The values that cross the planner's boundary: what was observed, what is remembered,
what was decided.

Rules of this file:
- Frozen dataclasses, standard library only (and our pure `reasons`): the planner, the
  AWS edge, the store and the engine all speak in these, and none of them may smuggle
  I/O into another.
- Times are timezone-aware UTC datetimes; parameter values are strings, as CloudFormation
  returns them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Literal

from reconciler import reasons

UpdateKind = Literal["migrate", "switch", "scale"]
RecordStatus = Literal["running", "succeeded", "failed"]
RolloutResult = Literal["succeeded", "failed", "superseded"]


class Phase(enum.StrEnum):
    """CONTRACT section 5: the closed set of phases a stack can be in."""

    IN_SYNC = "InSync"
    PAUSED = "Paused"
    MIGRATING = "Migrating"
    AWAITING_APPROVAL = "AwaitingApproval"
    UPDATING_API = "UpdatingApi"
    VERIFYING = "Verifying"
    WAITING = "Waiting"
    FAILED = "Failed"
    BLOCKED = "Blocked"


def _aware(name: str, value: dt.datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


# --- observed -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instance:
    """One instance of the API group as EC2, Auto Scaling and the load balancer see it."""

    id: str
    image: str | None
    lifecycle: str  # Auto Scaling lifecycle state: Pending, InService, Terminating, ...
    healthy: bool | None  # load-balancer health; None when the group has no load balancer


@dataclasses.dataclass(frozen=True)
class MigrationRecord:
    """CONTRACT section 3, as read from S3 or SSM for one (stack, image)."""

    image: str
    status: RecordStatus
    updated_at: dt.datetime
    started_at: dt.datetime | None = None
    progress: str | None = None
    instance_id: str | None = None
    detail: str | None = None
    # False: the image before cannot run on the migrated schema, so nothing may roll back.
    rollback_safe: bool = True

    def __post_init__(self) -> None:
        _aware("updated_at", self.updated_at)
        _aware("started_at", self.started_at)
        if self.status not in ("running", "succeeded", "failed"):
            raise ValueError(f"status {self.status!r} is not running, succeeded or failed")


@dataclasses.dataclass(frozen=True)
class StackView:
    status: str
    parameters: Mapping[str, str]  # every template parameter with its live value
    last_updated: dt.datetime | None = None
    status_reason: str | None = None

    def __post_init__(self) -> None:
        _aware("last_updated", self.last_updated)


@dataclasses.dataclass(frozen=True)
class ResourceChange:
    """One resource a change set says an update would touch."""

    logical_id: str
    type: str
    action: str  # Add, Modify, Remove, Import, Dynamic
    replacement: str = "False"  # True, False, Conditional (Modify only)

    @property
    def destructive(self) -> bool:
        """Replaced (maybe) or removed: what the guard refuses outside the allowed ids."""
        return self.action == "Remove" or self.replacement in ("True", "Conditional")

    def describe(self) -> str:
        return f"{self.logical_id} ({self.type}): {self.action}, replacement {self.replacement}"


@dataclasses.dataclass(frozen=True)
class Drift:
    """A field of a managed group that differs from what the stack's template and
    parameters say: changed outside CloudFormation."""

    resource: str  # the group's logical id
    field: str  # launchTemplate, desiredCapacity, suspendedProcesses
    expected: str
    live: str

    def describe(self) -> str:
        return f"{self.resource}.{self.field}: expected {self.expected}, live {self.live}"


@dataclasses.dataclass(frozen=True)
class Upstream:
    """The spec a promotion follows, as the daemon last saw it."""

    name: str
    image: str  # the image it is in sync on (its desired image)
    in_sync: bool
    since: dt.datetime | None  # when it finished rolling that image out; None: before our time

    def __post_init__(self) -> None:
        _aware("since", self.since)


AlarmState = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]


@dataclasses.dataclass(frozen=True)
class Alarm:
    """One CloudWatch alarm of rollout.alarms, as DescribeAlarms gives it."""

    name: str
    arn: str
    state: AlarmState


@dataclasses.dataclass(frozen=True)
class Turn:
    """A fleet member's turn, as the engine judged it from the whole fleet (reconciler.waves):
    whether its step may start a rollout now, and if not, why."""

    fleet: str
    step: int  # 1-based, as people and the metrics count steps
    go: bool
    message: str  # why not, naming the fleet and the step; empty when go
    halted: bool = False
    limit: int = 1  # the step's maxConcurrent, as a count of its members


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything the planner may know about the outside world, read just now."""

    stack: StackView | None  # None: the stack does not exist
    api_desired_capacity: int | None = None  # the API group's live DesiredCapacity
    api_instances: tuple[Instance, ...] | None = None  # None: not observed this time
    migration_record: MigrationRecord | None = None  # the record for the desired image
    problem: str | None = None  # something a person must fix (e.g. a resource name not found)
    api_group: str | None = None  # the API group's physical name, when observed
    api_suspended: frozenset[str] | None = None  # its suspended scaling processes
    upstream: Upstream | None = None  # with spec.promotion: the spec it follows
    # rollout.alarms by name, read from the shared DescribeAlarms; a name absent here does
    # not exist. None: not read (a rule that needs them asks for "alarms").
    alarms: Mapping[str, Alarm] | None = None
    turn: Turn | None = None  # a fleet member's turn; None: in no fleet, or not judged yet
    # The managed groups' drift from what the stack's template and parameters say (from the
    # shared groups listing); None: not judged this time.
    drift: tuple[Drift, ...] | None = None
    # Read from the fleet's shared listings: no stack events (last_updated may be missing
    # where AWS gives none), the API group only when api_group is set, no load-balancer
    # health (api_instances is None). A rule that needs them says so in Decision.needs.
    partial: bool = False


# --- remembered -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pending:
    """A stack update we sent and have not yet seen settle."""

    kind: UpdateKind
    image: str
    revision: str
    token: str
    sent_at: dt.datetime
    expected: Mapping[str, str]  # the values we set; the rest were UsePreviousValue

    def __post_init__(self) -> None:
        _aware("sent_at", self.sent_at)


@dataclasses.dataclass(frozen=True)
class RolloutMemory:
    """One attempt to bring a stack to one image (a row of `reconciler history`)."""

    id: int
    image: str
    revision: str
    from_image: str | None
    started_at: dt.datetime
    phase1_started_at: dt.datetime | None = None
    migrated_at: dt.datetime | None = None
    approved_at: dt.datetime | None = None
    switch_started_at: dt.datetime | None = None
    switched_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: RolloutResult | None = None
    reason: str | None = None
    scaling_suspended_at: dt.datetime | None = None
    scaling_resumed_at: dt.datetime | None = None
    # When the migration record said rollbackSafe: false (nothing may roll this back).
    irreversible_at: dt.datetime | None = None
    healthy_at: dt.datetime | None = None  # when the API group was healthy: rollout.bake starts

    @property
    def active(self) -> bool:
        return self.result is None


@dataclasses.dataclass(frozen=True)
class Halt:
    """A fleet stopped starting rollouts: by its failure budget, or by a person."""

    reason: str
    at: dt.datetime
    by: Literal["budget", "operator"]
    # The members' desired images when a budget halt began (waves.signature): a commit that
    # changes any lifts it.
    images: str = ""


@dataclasses.dataclass(frozen=True)
class FleetMemory:
    """What the shared store holds for one fleet."""

    halt: Halt | None = None
    epoch: dt.datetime | None = None  # the last lift: failures before it no longer count
    # The slots: step (0-based) -> member -> started_at of the rollout that holds the slot.
    # A holder whose latest rollout is no longer that active one has let its slot go.
    holders: Mapping[int, Mapping[str, dt.datetime]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A member's start needs a slot of its step: taken in the same write as the start."""

    fleet: str
    step: int  # 0-based
    limit: int


@dataclasses.dataclass(frozen=True)
class Failure:
    count: int
    reason: str  # for people; programs read `code`
    at: dt.datetime
    next_retry_at: dt.datetime
    revision: str
    image: str
    code: reasons.Reason  # one of reasons.FAILURES

    def __post_init__(self) -> None:
        if self.code not in reasons.FAILURES:
            raise ValueError(f"{self.code!r} is not a failure code")


@dataclasses.dataclass(frozen=True)
class RuntimePause:
    reason: str
    at: dt.datetime
    until: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class WindowOverride:
    """An operator let one stack start a rollout outside its windows, until `until`."""

    reason: str
    at: dt.datetime
    until: dt.datetime


@dataclasses.dataclass(frozen=True)
class Memory:
    """The little the planner cannot observe, as the store holds it for one spec."""

    rollout: RolloutMemory | None = None  # the latest rollout, active or finished
    pending: Pending | None = None
    failure: Failure | None = None
    approved_image: str | None = None
    runtime_pause: RuntimePause | None = None
    window_override: WindowOverride | None = None
    scaling_owned: frozenset[str] = frozenset()  # processes we suspended, not yet seen resumed


# --- decided --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StackUpdate:
    """One UpdateStack call: every template parameter, None meaning UsePreviousValue."""

    kind: UpdateKind
    parameters: tuple[tuple[str, str | None], ...]
    token: str
    # Sent as RollbackConfiguration on every update (CloudFormation keeps a stack's triggers
    # for later updates unless one says otherwise): alarm ARNs for the switch, else none.
    triggers: tuple[str, ...] = ()
    disable_rollback: bool = False  # a switch after a migration the old image cannot read
    # rollout.guard: a change set says first what it would replace (phase 1, the switch, a
    # scale update; never a stop of the migration group or the daemon's own rollback).
    guarded: bool = False

    def __post_init__(self) -> None:
        names = [n for n, _ in self.parameters]
        if len(names) != len(set(names)):
            raise ValueError("a parameter appears twice in one update")
        if not any(v is not None for _, v in self.parameters):
            raise ValueError("an update must set at least one parameter")

    @property
    def changes(self) -> dict[str, str]:
        return {n: v for n, v in self.parameters if v is not None}


# Effects: what the store must remember, written before the update is sent.


@dataclasses.dataclass(frozen=True)
class StartRollout:
    image: str
    revision: str
    from_image: str | None
    at: dt.datetime
    phase1_started_at: dt.datetime | None = None  # carried over when migrations already passed
    migrated_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class MarkRollout:
    """Set timestamps of the active rollout (only the fields given)."""

    phase1_started_at: dt.datetime | None = None
    migrated_at: dt.datetime | None = None
    approved_at: dt.datetime | None = None
    switch_started_at: dt.datetime | None = None
    switched_at: dt.datetime | None = None
    scaling_suspended_at: dt.datetime | None = None
    irreversible_at: dt.datetime | None = None
    healthy_at: dt.datetime | None = None


# The timestamps MarkRollout may set, in the order a rollout reaches them.
MARK_TIMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(MarkRollout) if f.name.endswith("_at")
)


@dataclasses.dataclass(frozen=True)
class FinishRollout:
    result: RolloutResult
    at: dt.datetime
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class SetPending:
    pending: Pending


@dataclasses.dataclass(frozen=True)
class ClearPending:
    pass


@dataclasses.dataclass(frozen=True)
class RecordFailure:
    failure: Failure


@dataclasses.dataclass(frozen=True)
class ClearFailure:
    pass


@dataclasses.dataclass(frozen=True)
class ClearRuntimePause:
    """A runtime pause whose `until` has passed."""


@dataclasses.dataclass(frozen=True)
class OwnScaling:
    """About to suspend these processes of the API group: ours to resume, whatever happens."""

    processes: frozenset[str]


@dataclasses.dataclass(frozen=True)
class DisownScaling:
    """The processes we suspended are seen resumed."""

    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ConsumeApproval:
    """An approval is spent by the rollout it released: a later one needs its own."""


Effect = (
    StartRollout
    | MarkRollout
    | FinishRollout
    | SetPending
    | ClearPending
    | RecordFailure
    | ClearFailure
    | ClearRuntimePause
    | ConsumeApproval
    | OwnScaling
    | DisownScaling
)

Requeue = Literal["idle", "active", "retry"]
# What a partial observation lacks and a rule may ask for: the stack's events (when it was
# last updated), the API group (capacity, scaling processes), the API instances with their
# load-balancer health.
# And the alarms of rollout.alarms (a shared DescribeAlarms).
Need = Literal["events", "groups", "health", "alarms"]


@dataclasses.dataclass(frozen=True)
class ScalingChange:
    """Suspend or resume Auto Scaling processes of the API group (rollout.suspendScaling)."""

    action: Literal["suspend", "resume"]
    group: str
    processes: frozenset[str]


@dataclasses.dataclass(frozen=True)
class Decision:
    phase: Phase
    message: str  # for people: its wording may change; programs read `reason`
    update: StackUpdate | None = None
    effects: tuple[Effect, ...] = ()
    requeue: Requeue = "idle"  # idle: spec interval; active: soon; retry: at failure.next_retry_at
    scaling: ScalingChange | None = None
    # Non-empty: the rules could not decide from a partial observation; the engine reads
    # these, plans again, and never acts on (or stores) this decision.
    needs: frozenset[Need] = frozenset()
    # Why: the closed code transitions, notifications and status derive from (keyword-only).
    reason: reasons.Reason = dataclasses.field(kw_only=True)


# --- told ---------------------------------------------------------------------------

TransitionKind = Literal[
    "rollout_started",
    "migration_succeeded",
    "migration_failed",
    "awaiting_approval",
    "switched",
    "rollout_succeeded",
    "rollout_failed",
    "rolled_back",
    "blocked",
    "paused",
    "resumed",
    "held_by_alarm",
    "alarm_in_bake",
    "fleet_halted",
    "drifted",
    "bump_opened",
]


@dataclasses.dataclass(frozen=True)
class Transition:
    """Something a person may want to hear about, once per (stack, revision, kind), or once
    per (stack, subject, kind) for a kind told of something other than a revision."""

    name: str
    stack: str
    region: str
    revision: str
    kind: TransitionKind
    image: str
    message: str
    at: dt.datetime
    # What keys it instead of the revision: a drift is told once per what drifted, whatever
    # revision the spec is at (transitions.drifted).
    subject: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}|{self.subject or self.revision}|{self.kind}"


@dataclasses.dataclass(frozen=True)
class OutboxEntry:
    """One notification owed to one sink: a transition's key, rendered for that sink."""

    key: str  # Transition.key: (name, revision or subject, kind): owed at most once per sink
    sink: str  # the sink's name, never its URL (URLs carry secrets)
    payload: str  # the JSON body, rendered when the transition happened
    created_at: dt.datetime
    attempts: int = 0

    def __post_init__(self) -> None:
        _aware("created_at", self.created_at)
