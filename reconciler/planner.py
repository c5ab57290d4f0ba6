"""The planner: every rule of CONTRACT.md section 2, and nothing else.

Rules of this file:
- `plan(...)` is a pure function of its arguments: no I/O, no clock, no randomness.
  Time comes in as `now`; what AWS looks like comes in as `Observed`; what only we know
  comes in as `Memory`. The engine carries the returned Decision out.
- Rules run in a fixed order (RULES). Each returns a Decision (the first one wins), or
  Continue(effects): store these, and let the later rules decide on the memory they
  leave; or None: not mine. `plan()` is the one loop that folds and chains them.
  Safety rules (stack missing, broken, paused, busy) come before anything that could
  send an update.
- "Settled" means one thing: an update we sent is no longer in progress (applied,
  rolled back, or never arrived); `_settled` judges which.
- The API image parameter is only ever set to an image whose migration passed the gate.
- Every update names every template parameter (unchanged ones as UsePreviousValue).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping

from reconciler import fold, model, settings, spec, windows
from reconciler.model import Phase
from reconciler.reasons import Reason

# Stable and updatable; UPDATE_ROLLBACK_COMPLETE means the last update failed, which the
# pending-update check below tells apart from a stack that simply rolled back long ago.
STABLE = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
    }
)
NEEDS_PERSON = frozenset(
    {
        "UPDATE_ROLLBACK_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "DELETE_FAILED",
        "DELETE_COMPLETE",
        "UPDATE_FAILED",
        "CREATE_FAILED",
        "IMPORT_ROLLBACK_FAILED",
    }
)

# Auto Scaling processes that would fight a rolling update (rollout.suspendScaling).
SCALING_PROCESSES = frozenset({"AlarmNotification", "ScheduledActions", "AZRebalance"})

# The retry time of a failure that waits for a person (a new revision, or `retry`).
HELD = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)

# Clocks of AWS and of this host disagree a little; an update's LastUpdatedTime earlier
# than our send time by less than this still belongs to our update.
CLOCK_SKEW = dt.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Retry policy: exponential backoff from `backoff_base`, doubling, capped; the values
    are settings.SchedulingSettings' (`Policy.of`), which holds their defaults."""

    backoff_base: dt.timedelta
    backoff_cap: dt.timedelta

    @classmethod
    def of(cls, scheduling: settings.SchedulingSettings) -> Policy:
        return cls(scheduling.backoff_base, scheduling.backoff_cap)

    def backoff(self, count: int) -> dt.timedelta:
        exponent = min(max(count - 1, 0), 20)
        delay: dt.timedelta = self.backoff_base * (2**exponent)
        return min(delay, self.backoff_cap)


DEFAULT_POLICY = Policy.of(settings.SchedulingSettings())


@dataclasses.dataclass(frozen=True)
class Context:
    """The arguments of one plan() call, with what every rule derives from them."""

    name: str
    revision: str
    want: spec.Spec  # the desired state: the spec part of the document
    observed: model.Observed
    memory: model.Memory
    now: dt.datetime
    policy: Policy

    @property
    def stack(self) -> model.StackView:
        assert self.observed.stack is not None  # checked first by _missing
        return self.observed.stack

    @property
    def names(self) -> spec.ParameterNames:
        return self.want.parameter_names

    @property
    def params(self) -> Mapping[str, str]:
        return self.stack.parameters

    @property
    def image(self) -> str:
        return self.want.image

    @property
    def live_api_image(self) -> str | None:
        return self.params.get(self.names.api_image)

    @property
    def rollout(self) -> model.RolloutMemory | None:
        """The active rollout toward the desired image, if any."""
        r = self.memory.rollout
        return r if r is not None and r.active and r.image == self.image else None

    def api_capacity(self) -> str:
        """The API capacity to send: the spec's, or for `live` the group's current one."""
        if self.want.capacity.api != "live":
            return str(self.want.capacity.api)
        if self.observed.api_desired_capacity is not None:
            return str(self.observed.api_desired_capacity)
        return self.params.get(self.names.api_capacity, "0")

    def attempt(self) -> int:
        f = self.memory.failure
        return f.count if f is not None and f.image == self.image else 0


@dataclasses.dataclass(frozen=True)
class Continue:
    """A rule's outcome short of a decision: store `effects`, then let the later rules
    decide on the memory they leave. `resume`: scaling processes to resume if no later
    rule sends or scales anything (one action per step)."""

    effects: tuple[model.Effect, ...] = ()
    resume: model.ScalingChange | None = None


Outcome = model.Decision | Continue | None
Rule = Callable[[Context], Outcome]


def plan(
    deployment: spec.StackDeployment,
    revision: str,
    observed: model.Observed,
    memory: model.Memory,
    now: dt.datetime,
    policy: Policy = DEFAULT_POLICY,
) -> model.Decision:
    """Decide the next step for one spec from what is observed and remembered now."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = Context(deployment.name, revision, deployment.spec, observed, memory, now, policy)
    try:
        return _run(ctx)
    except _Lacking as lacking:
        # Whatever was decided on the way is void: the engine reads more and plans again.
        message = f"reading the {lacking.need} this step needs"
        return model.Decision(
            Phase.WAITING,
            message,
            reason=Reason.READING,
            requeue="active",
            needs=frozenset({lacking.need}),
        )


def _run(ctx: Context) -> model.Decision:
    """The one loop: try the rules in order; fold what a rule continues with into the
    memory the later rules see, and store it ahead of the decision's own effects."""
    stored: list[model.Effect] = []
    resume: model.ScalingChange | None = None
    for rule in RULES:
        outcome = rule(ctx)
        if isinstance(outcome, Continue):
            ctx = _with_marks(ctx, outcome.effects)
            stored.extend(outcome.effects)
            resume = outcome.resume or resume
        elif outcome is not None:
            return _finish(outcome, tuple(stored), resume)
    raise AssertionError("the last rule always decides")  # pragma: no cover


def _finish(
    decision: model.Decision,
    stored: tuple[model.Effect, ...],
    resume: model.ScalingChange | None,
) -> model.Decision:
    if decision.needs:
        return decision  # void, with all it continued from: the engine reads and plans again
    decision = dataclasses.replace(decision, effects=(*stored, *decision.effects))
    if resume is None or decision.update is not None or decision.scaling is not None:
        return decision  # one action per step; the resume comes next
    return dataclasses.replace(decision, scaling=resume, requeue="active")


class _Lacking(Exception):
    """A rule reads what a partial observation does not hold (see model.Observed)."""

    def __init__(self, need: model.Need) -> None:
        super().__init__(need)
        self.need = need


def _groups_read(ctx: Context) -> None:
    """Updates of the API group, and scaling changes, are decided on its observed state:
    a partial observation holds the groups only when it says so (api_group)."""
    if ctx.observed.partial and ctx.observed.api_group is None:
        raise _Lacking("groups")


def failure(
    deployment: spec.StackDeployment,
    revision: str,
    memory: model.Memory,
    now: dt.datetime,
    code: Reason,
    reason: str,
    policy: Policy = DEFAULT_POLICY,
) -> model.Decision:
    """The decision for a step that failed outside the planner's sight (a refused update):
    the same backoff, the same history, one home for retries."""
    ctx = Context(
        deployment.name, revision, deployment.spec, model.Observed(None), memory, now, policy
    )
    blocked = code in _BLOCKING  # a person decides when to try again: `retry`
    return _fail(
        ctx, code, reason, sticky=blocked, phase=Phase.BLOCKED if blocked else Phase.FAILED
    )


# --- the rules, in the order they are tried ------------------------------------------


def _missing(ctx: Context) -> model.Decision | None:
    if ctx.observed.stack is None:
        return model.Decision(
            Phase.BLOCKED,
            f"stack {ctx.want.stack_name} not found in {ctx.want.region}: create it, "
            "or fix spec.stackName (the daemon never creates stacks)",
            reason=Reason.MISSING_STACK,
        )
    return None


def _broken(ctx: Context) -> model.Decision | None:
    status = ctx.stack.status
    r = ctx.memory.rollout
    if status == "UPDATE_FAILED" and r is not None and r.irreversible_at is not None:
        # Our switch was sent with rollback disabled, and failed: say why, and what to do.
        return model.Decision(
            Phase.BLOCKED,
            f"the switch of {ctx.want.stack_name} to {r.image} failed and was not rolled "
            f"back ({ctx.stack.status_reason or 'no reason given'}): the migration for "
            f"{r.image} says the image before cannot run on the migrated schema "
            "(rollbackSafe: false). Fix forward with a new image, or restore the schema "
            "and roll back by hand, then `reconciler retry`",
            reason=Reason.ROLLBACK_UNSAFE,
        )
    if status in NEEDS_PERSON:
        reason = f" ({ctx.stack.status_reason})" if ctx.stack.status_reason else ""
        return model.Decision(
            Phase.BLOCKED,
            f"stack {ctx.want.stack_name} is {status}{reason}: it needs a person "
            "(e.g. continue-update-rollback) before the daemon can update it",
            reason=Reason.STACK_BROKEN,
        )
    if status not in STABLE and not status.endswith("_IN_PROGRESS"):
        return model.Decision(
            Phase.BLOCKED,
            f"stack is in unknown status {status}",
            reason=Reason.UNKNOWN_STACK_STATUS,
        )
    return None


def _bad_names(ctx: Context) -> model.Decision | None:
    wanted = list(ctx.names.managed()) + sorted(ctx.want.parameters)
    absent = [n for n in wanted if n not in ctx.params]
    if absent:
        return model.Decision(
            Phase.BLOCKED,
            f"template of {ctx.want.stack_name} has no parameter(s) {', '.join(absent)}: "
            "fix spec.parameterNames or spec.parameters",
            reason=Reason.BAD_PARAMETER_NAMES,
        )
    if ctx.observed.problem is not None:
        return model.Decision(Phase.BLOCKED, ctx.observed.problem, reason=Reason.RESOURCE_PROBLEM)
    return None


def _paused(ctx: Context) -> Outcome:
    pause = ctx.want.paused
    if pause is not None and (pause.until is None or ctx.now < pause.until):
        until = f" until {pause.until.isoformat()}" if pause.until else ""
        return model.Decision(
            Phase.PAUSED,
            f"paused in the spec{until}: {pause.reason}",
            reason=Reason.PAUSED_IN_SPEC,
        )
    runtime = ctx.memory.runtime_pause
    if runtime is None:
        return None
    if runtime.until is not None and ctx.now >= runtime.until:
        return Continue((model.ClearRuntimePause(),))
    until = f" until {runtime.until.isoformat()}" if runtime.until else ""
    return model.Decision(
        Phase.PAUSED,
        f"paused by an operator{until}: {runtime.reason}",
        reason=Reason.PAUSED_BY_OPERATOR,
    )


def _busy(ctx: Context) -> model.Decision | None:
    status = ctx.stack.status
    if not status.endswith("_IN_PROGRESS"):
        return None
    pending = ctx.memory.pending
    if pending is None:
        return model.Decision(
            Phase.WAITING,
            f"stack is {status}: an operation not started by the daemon is under way",
            reason=Reason.BUSY_FOREIGN,
            requeue="active",
        )
    if ctx.now - pending.sent_at > ctx.want.rollout.timeout:
        return _fail(
            ctx,
            Reason.UPDATE_TIMED_OUT,
            f"{pending.kind} update has been {status} for longer than "
            f"{spec.format_duration(ctx.want.rollout.timeout)}",
            extra=(model.ClearPending(),),
        )
    # The API image the update sets: the rollout's, or the one a rollback returns to.
    target = pending.expected.get(ctx.names.api_image, pending.image)
    return model.Decision(
        _PHASE_OF_KIND[pending.kind],
        f"{pending.kind} update to {target} is {status}",
        reason=Reason.UPDATE_IN_PROGRESS,
        requeue="active",
    )


def _settled(ctx: Context) -> Outcome:
    """Judge a pending update now that the stack is stable: applied, rolled back, or lost."""
    pending = ctx.memory.pending
    if pending is None:
        return None
    applied = all(ctx.params.get(k) == v for k, v in pending.expected.items())
    if applied:
        return Continue((model.ClearPending(), *_marks_on_applied(ctx, pending)))
    ours = ctx.stack.last_updated is None or ctx.stack.last_updated >= pending.sent_at - CLOCK_SKEW
    if ctx.stack.status == "UPDATE_ROLLBACK_COMPLETE" and ours:
        # Sticky: CloudFormation judged this image (an alarm fired, a resource failed);
        # trying it again by itself would only repeat that.
        reason = ctx.stack.status_reason or "no reason given"
        return _fail(
            ctx,
            Reason.UPDATE_ROLLED_BACK,
            f"{pending.kind} update rolled back: {reason}",
            extra=(model.ClearPending(),),
            sticky=True,
        )
    # The update never reached the stack (a crash between recording and sending, or a
    # refused call): forget it and decide afresh; the same token makes a resend harmless.
    return Continue((model.ClearPending(),))


# Failures a person must look at: shown as Blocked, with their own code, until a retry.
_BLOCKING = frozenset({Reason.ROLLBACK_UNSAFE, Reason.CHANGE_REFUSED})


def _backing_off(ctx: Context) -> Outcome:
    failure = ctx.memory.failure
    if failure is None:
        return None
    if failure.revision != ctx.revision or failure.image != ctx.image:
        # A new git revision retries at once.
        return Continue((model.ClearFailure(),))
    if (
        failure.code in _STOPS_MIGRATION
        and ctx.rollout is None
        and ctx.params.get(ctx.names.migration_capacity, "0") != "0"
    ):
        # The stop _fail_migration sends is lost if the process dies after storing the
        # failure; a halted fleet would never retry, so the failed group would run on.
        return _stop_migration(ctx, failure.code, failure.reason)
    if ctx.now < failure.next_retry_at:
        blocked = failure.code in _BLOCKING  # waits for a person, not a clock
        return model.Decision(
            Phase.BLOCKED if blocked else Phase.FAILED,
            f"{failure.reason}; attempt {failure.count} failed, "
            f"{_when_retried(failure.next_retry_at)}",
            reason=failure.code if blocked else Reason.BACKING_OFF,
            requeue="retry",
        )
    return None


def _heal_scaling(ctx: Context) -> Outcome:
    """Resume the processes we suspended once no switch needs them frozen: after success,
    after failure, and after a crash between suspending and resuming."""
    owned = ctx.memory.scaling_owned
    r = ctx.memory.rollout
    holding = r is not None and r.active and r.scaling_suspended_at is not None
    if owned and not holding:
        _groups_read(ctx)
    if not owned or holding or ctx.observed.api_suspended is None:
        return None
    still = owned & ctx.observed.api_suspended
    if not still:
        return Continue((model.DisownScaling(ctx.now),))
    if ctx.observed.api_group is None:
        return None
    return Continue(resume=model.ScalingChange("resume", ctx.observed.api_group, frozenset(still)))


_PHASE_OF_KIND: Mapping[model.UpdateKind, Phase] = {
    "migrate": Phase.MIGRATING,
    "switch": Phase.UPDATING_API,
    "scale": Phase.UPDATING_API,
}


# --- the rollout proper: stack stable, nothing pending, not backing off --------------
# Toward an image the API group does not run yet: phase 1, adopt, gate, approval,
# suspend scaling, switch. Each rule leaves the other branch alone (_converging).


def _converging(ctx: Context) -> bool:
    """The API group runs the desired image: the rules after _switch decide."""
    return ctx.live_api_image == ctx.image


def _phase1(ctx: Context) -> Outcome:
    """Start phase 1 unless it is live or its migrations already passed."""
    rollout = ctx.rollout
    migrated = rollout is not None and rollout.migrated_at is not None
    if _converging(ctx) or migrated or _phase1_applied(ctx):
        return None
    return _start_phase1(ctx)


def _adopt(ctx: Context) -> Outcome:
    """Phase 1 is live but we hold no record of it (the store was lost, or a person ran
    it): adopt it, counting records from the stack's last update."""
    if _converging(ctx) or ctx.rollout is not None:
        return None
    if ctx.observed.partial and ctx.stack.last_updated is None:
        return _needs(ctx, "events", Phase.MIGRATING, "reading when phase 1 started")
    since = ctx.stack.last_updated or ctx.now
    return Continue((_start_rollout(ctx, phase1_started_at=since),))


def _phase1_applied(ctx: Context) -> bool:
    """The migration group runs the image. More instances than the spec asks is fine:
    resending only to change the count would not rerun migrations, and phase 2 stops it."""
    n = ctx.names
    capacity = ctx.params.get(n.migration_capacity, "0")
    running = capacity.isdigit() and int(capacity) >= 1
    return running and ctx.params.get(n.migration_image) == ctx.image


def _start_phase1(ctx: Context) -> model.Decision:
    held = (
        _promotion_gate(ctx)
        or _window_gate(ctx)
        or _fleet_gate(ctx)
        or _drift_gate(ctx)
        or _alarm_gate(ctx, f"the rollout of {ctx.image}")
    )
    if held is not None:
        return held
    n = ctx.names
    changes = {
        n.migration_image: ctx.image,
        n.migration_capacity: str(ctx.want.capacity.migration),
    }
    effects: list[model.Effect] = []
    rollout = ctx.memory.rollout
    if rollout is None or not rollout.active or rollout.image != ctx.image:
        if rollout is not None and rollout.active:
            effects.append(
                model.FinishRollout("superseded", ctx.now, f"target changed to {ctx.image}")
            )
        effects.append(_start_rollout(ctx, phase1_started_at=ctx.now))
    else:
        effects.append(model.MarkRollout(phase1_started_at=ctx.now))
    return _update(
        ctx,
        "migrate",
        changes,
        Phase.MIGRATING,
        Reason.MIGRATING,
        f"phase 1: starting migrations for {ctx.image} on the migration group "
        f"(revision {ctx.revision[:12]})",
        effects,
        guarded=True,
    )


def _promotion_gate(ctx: Context) -> model.Decision | None:
    """A promoted spec starts a rollout only of an image its upstream runs, baked."""
    promotion = ctx.want.promotion
    if promotion is None or ctx.rollout is not None:
        return None  # a rollout under way finishes whatever the upstream does meanwhile
    up = ctx.observed.upstream
    if up is None:
        return model.Decision(
            Phase.WAITING,
            f"promotion: waiting for {promotion.after}, which this daemon does not manage",
            reason=Reason.AWAITING_UPSTREAM,
        )
    if not up.in_sync or up.image != ctx.image:
        return model.Decision(
            Phase.WAITING,
            f"promotion: waiting for {promotion.after} to run {ctx.image} in sync "
            f"(it {'is in sync on' if up.in_sync else 'is rolling out'} {up.image})",
            reason=Reason.AWAITING_UPSTREAM,
        )
    if up.since is not None and ctx.now < up.since + promotion.bake:
        ready = up.since + promotion.bake
        return model.Decision(
            Phase.WAITING,
            f"promotion: {ctx.image} bakes on {promotion.after} until {ready.isoformat()}",
            reason=Reason.BAKING,
            requeue="active",
        )
    return None


def _window_gate(ctx: Context) -> model.Decision | None:
    """A new rollout starts only when its windows allow; one under way always finishes."""
    if not ctx.want.windows or ctx.rollout is not None:
        return None
    override = ctx.memory.window_override
    if override is not None and ctx.now < override.until:
        return None
    verdict = windows.verdict(ctx.want.windows, ctx.now)
    if verdict.allowed:
        return None
    return model.Decision(
        Phase.WAITING,
        f"rollout of {ctx.image} waits: {verdict.reason}",
        reason=Reason.OUTSIDE_WINDOW,
    )


def _fleet_gate(ctx: Context) -> model.Decision | None:
    """A fleet member starts only in its turn (reconciler.waves; the engine judged it from
    the whole fleet and takes the slot atomically when it stores the start)."""
    turn = ctx.observed.turn
    if turn is None or turn.go or ctx.rollout is not None:
        return None
    return model.Decision(
        Phase.WAITING,
        turn.message,
        reason=Reason.FLEET_HALTED if turn.halted else Reason.FLEET_TURN,
        # A halt ends by a commit or a control, each of which steps every member at once.
        requeue="idle" if turn.halted else "active",
    )


def _drift_gate(ctx: Context) -> model.Decision | None:
    """rollout.onDrift hold: a rollout does not start on a stack whose managed groups were
    changed outside CloudFormation, since its update would silently overwrite the change;
    nor before the groups were judged at all (the first look after a start judges nothing).
    One under way finishes: its own updates are what move those fields."""
    drift = ctx.observed.drift
    if ctx.want.rollout.on_drift != "hold" or drift == () or ctx.rollout is not None:
        return None
    if drift is None:
        return model.Decision(
            Phase.WAITING,
            f"rollout of {ctx.image} waits for a first judgement of the managed groups' "
            "drift (rollout.onDrift: hold)",
            reason=Reason.READING,
            requeue="idle",  # the next look that can judge is an interval away
        )
    return model.Decision(
        Phase.BLOCKED,
        f"rollout of {ctx.image} held (rollout.onDrift: hold): changed outside "
        f"CloudFormation: {'; '.join(d.describe() for d in drift)}. Undo the change, or set "
        "rollout.onDrift: report to let the update overwrite it",
        reason=Reason.DRIFTED,
        requeue="idle",  # drift is judged once per interval: looking sooner sees the same
    )


@dataclasses.dataclass(frozen=True)
class _Alarms:
    missing: tuple[str, ...] = ()
    firing: tuple[str, ...] = ()
    arns: tuple[str, ...] = ()


def _alarms(ctx: Context) -> _Alarms:
    """rollout.alarms as observed: only the ALARM state counts."""
    names = ctx.want.rollout.alarms
    if not names:
        return _Alarms()
    seen = ctx.observed.alarms
    if seen is None:
        raise _Lacking("alarms")
    return _Alarms(
        tuple(n for n in names if n not in seen),
        tuple(n for n in names if n in seen and seen[n].state == "ALARM"),
        tuple(seen[n].arn for n in names if n in seen),
    )


def _alarm_gate(ctx: Context, what: str) -> model.Decision | None:
    """An alarm that does not exist blocks; one in ALARM holds `what`."""
    alarms = _alarms(ctx)
    if alarms.missing:
        return model.Decision(
            Phase.BLOCKED,
            f"alarm(s) {', '.join(alarms.missing)} of rollout.alarms not found in "
            f"{ctx.want.region}: create them, or fix spec.rollout.alarms",
            reason=Reason.MISSING_ALARM,
        )
    if alarms.firing:
        return model.Decision(
            Phase.WAITING,
            f"alarm(s) {', '.join(alarms.firing)} in ALARM: {what} waits until they are not",
            reason=Reason.ALARM_HOLDING,
            requeue="idle",
        )
    return None


def _gate(ctx: Context) -> Outcome:
    """Phase 1 is live: wait for the migration to report success."""
    rollout = ctx.rollout
    if _converging(ctx) or rollout is None or rollout.migrated_at is not None:
        return None
    started = rollout.phase1_started_at or rollout.started_at
    if ctx.want.migration.check == "none":
        # The stack update itself gated (cfn-signal); it has completed.
        return _passed(ctx)
    record = ctx.observed.migration_record
    valid = record is not None and record.image == ctx.image and record.updated_at >= started
    if valid and record is not None and record.status == "succeeded":
        return _passed(ctx, record.rollback_safe)
    if valid and record is not None and record.status == "failed":
        detail = f": {record.detail}" if record.detail else ""
        return _fail_migration(
            ctx, Reason.MIGRATION_FAILED, f"migration for {ctx.image} failed{detail}"
        )
    if ctx.now - started > ctx.want.migration.timeout:
        return _fail_migration(
            ctx,
            Reason.MIGRATION_TIMED_OUT,
            f"migration for {ctx.image} did not succeed within "
            f"{spec.format_duration(ctx.want.migration.timeout)}",
        )
    progress = ""
    if valid and record is not None:
        progress = f" ({record.status}, progress {record.progress or '?'})"
    return model.Decision(
        Phase.MIGRATING,
        f"waiting for the migration record of {ctx.image}{progress}",
        reason=Reason.AWAITING_MIGRATION,
        requeue="active",
    )


def _passed(ctx: Context, rollback_safe: bool = True) -> Continue:
    # A migration the image before cannot run on makes this rollout irreversible.
    irreversible = None if rollback_safe else ctx.now
    return Continue((model.MarkRollout(migrated_at=ctx.now, irreversible_at=irreversible),))


def _migrated(ctx: Context) -> model.RolloutMemory | None:
    """The active rollout, once its migrations passed (the rules after _gate)."""
    rollout = ctx.rollout
    if _converging(ctx) or rollout is None or rollout.migrated_at is None:
        return None
    return rollout


def _approval(ctx: Context) -> Outcome:
    """rollout.approveAfterMigration: hold the switch until a person approves it."""
    rollout = _migrated(ctx)
    if rollout is None or not ctx.want.rollout.approve_after_migration:
        return None
    if rollout.approved_at is not None:
        return None
    if ctx.memory.approved_image != ctx.image:
        return model.Decision(
            Phase.AWAITING_APPROVAL,
            f"migrations for {ctx.image} succeeded; approve to switch the API group "
            f"(reconciler approve {ctx.name})",
            reason=Reason.AWAITING_APPROVAL,
        )
    return Continue((model.MarkRollout(approved_at=ctx.now), model.ConsumeApproval()))


def _suspend_scaling(ctx: Context) -> Outcome:
    """With rollout.suspendScaling, freeze the autoscaler before the switch, so it does not
    fight the rolling update; only processes not already suspended become ours to resume."""
    rollout = _migrated(ctx)
    if rollout is None or not ctx.want.rollout.suspend_scaling:
        return None
    _groups_read(ctx)
    suspended, group = ctx.observed.api_suspended, ctx.observed.api_group
    if suspended is None or group is None:
        return model.Decision(
            Phase.UPDATING_API,
            "waiting to read the API group's scaling processes before suspending them",
            reason=Reason.SUSPENDING_SCALING,
            requeue="active",
        )
    if rollout.scaling_suspended_at is not None and ctx.memory.scaling_owned <= suspended:
        return None
    owned = (SCALING_PROCESSES - suspended) | ctx.memory.scaling_owned
    marks: tuple[model.Effect, ...] = (
        model.OwnScaling(owned),
        model.MarkRollout(scaling_suspended_at=ctx.now),
    )
    if not owned - suspended:
        return Continue(marks)
    todo = owned - suspended
    return model.Decision(
        Phase.UPDATING_API,
        f"suspending {', '.join(sorted(todo))} on the API group before the switch",
        reason=Reason.SUSPENDING_SCALING,
        effects=marks,
        requeue="active",
        scaling=model.ScalingChange("suspend", group, frozenset(todo)),
    )


def _switch(ctx: Context) -> Outcome:
    """Phase 2: the API group gets the image, with the alarms as CloudFormation's rollback
    triggers; after an irreversible migration with none, and rollback disabled."""
    rollout = _migrated(ctx)
    if rollout is None:
        return None
    n = ctx.names
    held = _alarm_gate(ctx, f"the switch to {ctx.image}")
    if held is not None:
        if held.reason != Reason.ALARM_HOLDING or ctx.params.get(n.migration_capacity) == "0":
            return held
        # Migrations passed; the migration group has nothing left to do while we hold.
        return _update(
            ctx,
            "migrate",
            {n.migration_capacity: "0"},
            Phase.WAITING,
            Reason.ALARM_HOLDING,
            f"{held.message}; stopping the migration group meanwhile",
            [],
            step="hold-migration",
        )
    irreversible = rollout.irreversible_at is not None
    triggers = () if irreversible else _alarms(ctx).arns
    changes = {
        n.api_image: ctx.image,
        n.api_capacity: ctx.api_capacity(),
        n.migration_capacity: "0",
        **ctx.want.parameters,
    }
    return _update(
        ctx,
        "switch",
        changes,
        Phase.UPDATING_API,
        Reason.SWITCHING,
        f"phase 2: switching the API group to {ctx.image} (revision {ctx.revision[:12]})",
        [model.MarkRollout(switch_started_at=ctx.now)],
        triggers=triggers,
        disable_rollback=irreversible,
        guarded=True,
    )


# The API group runs the desired image: end a rollout toward another image, bring
# capacities and pins to the spec, mark the switch, then verify.


def _supersede(ctx: Context) -> Outcome:
    """A revert to the image the API group still runs ends the other rollout."""
    stale = ctx.memory.rollout
    if not _converging(ctx) or stale is None or not stale.active or stale.image == ctx.image:
        return None
    end = model.FinishRollout("superseded", ctx.now, f"target changed to {ctx.image}")
    return Continue((end,))


def _converge(ctx: Context) -> Outcome:
    """Bring capacities and pins to the spec; without a rollout, that is all."""
    if not _converging(ctx):
        return None
    n = ctx.names
    wanted = {n.migration_capacity: "0", **ctx.want.parameters}
    if ctx.want.capacity.api != "live":
        wanted[n.api_capacity] = str(ctx.want.capacity.api)
    changes = {k: v for k, v in wanted.items() if ctx.params.get(k) != v}
    rollout = ctx.rollout
    if changes:
        kind: model.UpdateKind = "switch" if rollout is not None else "scale"
        return _update(
            ctx,
            kind,
            changes,
            Phase.UPDATING_API,
            Reason.APPLYING_PARAMETERS,
            f"applying {', '.join(sorted(changes))} to {ctx.want.stack_name}",
            [],
            guarded=True,
        )
    if rollout is None:
        return _in_sync(ctx, ())
    return None


def _switched(ctx: Context) -> Outcome:
    """The API group runs the image: the switch is done, whoever sent it."""
    rollout = ctx.rollout
    if not _converging(ctx) or rollout is None or rollout.switched_at is not None:
        return None
    return Continue((model.MarkRollout(switched_at=ctx.now),))


def _verified(ctx: Context) -> Outcome:
    """The rollout ends when the API group is healthy on the image (or at once)."""
    rollout = ctx.rollout
    assert rollout is not None and _converging(ctx)  # _switch or _converge decided else
    if ctx.want.rollout.verify_health:
        return _verify(ctx, rollout)
    return _bake(ctx, rollout)


RULES: tuple[Rule, ...] = (
    # safety first: nothing below may send an update to a stack these stop
    _missing,
    _broken,
    _bad_names,
    _paused,
    _busy,
    # what we remember: a pending update, scaling we hold, a failure's backoff
    _settled,
    _heal_scaling,
    _backing_off,
    # toward an image the API group does not run yet
    _phase1,
    _adopt,
    _gate,
    _approval,
    _suspend_scaling,
    _switch,
    # the API group runs the image
    _supersede,
    _converge,
    _switched,
    _verified,
)


def _verify(ctx: Context, rollout: model.RolloutMemory) -> model.Decision:
    if rollout.healthy_at is not None:
        return _bake(ctx, rollout)  # healthy once: the bake watches the alarms from here
    instances = ctx.observed.api_instances
    if instances is None and ctx.observed.partial:
        return _needs(ctx, "health", Phase.VERIFYING, "reading the API instances' health")
    want = int(ctx.api_capacity())
    if instances is not None:
        live = [i for i in instances if i.lifecycle not in ("Terminating", "Terminated")]
        wrong = [i.id for i in live if i.image != ctx.image]
        unhealthy = [i.id for i in live if i.lifecycle != "InService" or i.healthy is False]
        if not wrong and not unhealthy and len(live) >= want:
            return _bake(ctx, rollout)
        detail = f"{len(live) - len(wrong) - len(unhealthy)}/{want} healthy on {ctx.image}"
    else:
        detail = "instances not observed yet"
    since = rollout.switched_at or rollout.switch_started_at or rollout.started_at
    if ctx.now - since > ctx.want.rollout.timeout:
        reason = (
            f"API group not healthy on {ctx.image} within "
            f"{spec.format_duration(ctx.want.rollout.timeout)} ({detail})"
        )
        return _switch_failed(ctx, rollout, Reason.UNHEALTHY, reason)
    return model.Decision(
        Phase.VERIFYING,
        f"verifying the API group: {detail}",
        reason=Reason.VERIFYING,
        requeue="active",
    )


def _bake(ctx: Context, rollout: model.RolloutMemory) -> model.Decision:
    """rollout.bake: healthy on the image, watch the alarms this long before succeeding
    (not part of rollout.timeout). An alarm in ALARM fails the rollout."""
    bake = ctx.want.rollout.bake
    if bake is None:
        return _succeed(ctx, rollout)
    marks: tuple[model.Effect, ...] = ()
    if rollout.healthy_at is None:
        marks = (model.MarkRollout(healthy_at=ctx.now),)
    since = rollout.healthy_at or ctx.now
    alarms = _alarms(ctx)
    if alarms.firing:
        reason = (
            f"alarm(s) {', '.join(alarms.firing)} went into ALARM during the bake of {ctx.image}"
        )
        failed = _switch_failed(ctx, rollout, Reason.ALARM_IN_BAKE, reason)
        return dataclasses.replace(failed, effects=(*marks, *failed.effects))
    if alarms.missing:
        held = _alarm_gate(ctx, "the bake")
        assert held is not None
        return dataclasses.replace(held, effects=marks)
    if ctx.now >= since + bake:
        succeeded = _succeed(ctx, rollout)
        return dataclasses.replace(succeeded, effects=(*marks, *succeeded.effects))
    return model.Decision(
        Phase.VERIFYING,
        f"baking {ctx.image}: watching {', '.join(ctx.want.rollout.alarms)} until "
        f"{(since + bake).isoformat()}",
        reason=Reason.BAKING_ALARMS,
        effects=marks,
        # Alarms move on CloudWatch's minute, not ours: a look per interval keeps a long
        # bake to a few shared reads.
        requeue="idle",
    )


def _switch_failed(
    ctx: Context, rollout: model.RolloutMemory, code: Reason, reason: str
) -> model.Decision:
    """The switched image failed its checks: roll back when allowed and safe, else hold.
    An alarm's verdict is sticky, like an automatic rollback's."""
    if rollout.irreversible_at is not None:
        return _fail(
            ctx,
            Reason.ROLLBACK_UNSAFE,
            f"{reason}; not rolled back: the migration for {ctx.image} says the image "
            "before cannot run on the migrated schema (rollbackSafe: false). Fix forward "
            "with a new image, or restore the schema and roll back by hand, then "
            "`reconciler retry`",
            sticky=True,
            phase=Phase.BLOCKED,
        )
    if ctx.want.rollout.auto_rollback and rollout.from_image not in (None, ctx.image):
        cause = Reason.ALARM_IN_BAKE if code == Reason.ALARM_IN_BAKE else Reason.ROLLED_BACK
        return _roll_back(ctx, rollout, reason, cause=cause)
    return _fail(ctx, code, reason, sticky=code == Reason.ALARM_IN_BAKE)


def _roll_back(
    ctx: Context, rollout: model.RolloutMemory, reason: str, cause: Reason = Reason.ROLLED_BACK
) -> model.Decision:
    """rollout.autoRollback: put the API group back on the image it ran before. No migration
    phase: that older code already ran against the migrated schema. The failure holds until
    a new revision or an explicit retry, so a bad image is not rolled out again by itself."""
    assert rollout.from_image is not None
    n = ctx.names
    back = f"{reason}; rolled the API group back to {rollout.from_image}"
    failed = _fail(ctx, Reason.ROLLED_BACK, back, sticky=True)
    failed = dataclasses.replace(failed, reason=cause)
    undo = _update(
        ctx,
        "switch",
        {n.api_image: rollout.from_image, n.api_capacity: ctx.api_capacity()},
        Phase.FAILED,
        Reason.ROLLED_BACK,
        "",
        [],
        step="rollback",
    )
    return dataclasses.replace(
        failed, update=undo.update, effects=failed.effects + undo.effects, requeue="active"
    )


def _succeed(ctx: Context, rollout: model.RolloutMemory) -> model.Decision:
    effects: list[model.Effect] = [model.FinishRollout("succeeded", ctx.now)]
    if ctx.memory.failure is not None:
        effects.append(model.ClearFailure())
    return model.Decision(
        Phase.IN_SYNC,
        f"rollout of {ctx.image} succeeded (revision {ctx.revision[:12]})",
        reason=Reason.ROLLOUT_SUCCEEDED,
        effects=tuple(effects),
    )


def _in_sync(ctx: Context, effects: tuple[model.Effect, ...]) -> model.Decision:
    if ctx.memory.failure is not None:
        effects = (*effects, model.ClearFailure())
    return model.Decision(
        Phase.IN_SYNC,
        f"{ctx.want.stack_name} runs {ctx.image} as specified",
        reason=Reason.IN_SYNC,
        effects=effects,
    )


# --- failures -------------------------------------------------------------------------


def _fail(
    ctx: Context,
    code: Reason,
    reason: str,
    extra: tuple[model.Effect, ...] = (),
    sticky: bool = False,
    phase: Phase = Phase.FAILED,
) -> model.Decision:
    previous = ctx.memory.failure
    same = previous is not None and previous.revision == ctx.revision
    count = previous.count + 1 if same and previous is not None else 1
    retry_at = HELD if sticky else ctx.now + ctx.policy.backoff(count)
    failure = model.Failure(count, reason, ctx.now, retry_at, ctx.revision, ctx.image, code)
    effects: list[model.Effect] = [*extra, model.RecordFailure(failure)]
    if ctx.rollout is not None:
        effects.append(model.FinishRollout("failed", ctx.now, reason))
    return model.Decision(
        phase,
        f"{reason}; attempt {count} failed, {_when_retried(retry_at)}",
        reason=code,
        effects=tuple(effects),
        requeue="retry",
    )


def _when_retried(retry_at: dt.datetime) -> str:
    if retry_at >= HELD:
        return "held until a new revision or `reconciler retry`"
    return f"next retry at {retry_at.isoformat()}"


# Failures that leave nothing for the migration group to do: a retry starts a fresh one.
_STOPS_MIGRATION = frozenset(
    {Reason.MIGRATION_FAILED, Reason.MIGRATION_TIMED_OUT, Reason.CHANGE_REFUSED}
)


def _fail_migration(ctx: Context, code: Reason, reason: str) -> model.Decision:
    """A failed migration also stops the migration group, so a retry starts a fresh one."""
    decision = _fail(ctx, code, reason)
    if ctx.params.get(ctx.names.migration_capacity) == "0":
        return decision
    stop = _stop_migration(ctx, code, "")
    return dataclasses.replace(
        decision, update=stop.update, effects=decision.effects + stop.effects
    )


def _stop_migration(ctx: Context, code: Reason, message: str) -> model.Decision:
    n = ctx.names
    return _update(
        ctx,
        "migrate",
        {n.migration_capacity: "0"},
        Phase.FAILED,
        code,
        message and f"{message}; stopping the migration group",
        [],
        step="stop-migration",
    )


# --- building blocks ------------------------------------------------------------------


def _start_rollout(ctx: Context, phase1_started_at: dt.datetime) -> model.StartRollout:
    previous = ctx.memory.rollout
    # A retry of the same image whose migrations already passed needs no second migration.
    carried = (
        previous is not None
        and previous.image == ctx.image
        and previous.migrated_at is not None
        and previous.result == "failed"
    )
    return model.StartRollout(
        image=ctx.image,
        revision=ctx.revision,
        from_image=ctx.live_api_image,
        at=ctx.now,
        phase1_started_at=previous.phase1_started_at if carried and previous else phase1_started_at,
        migrated_at=previous.migrated_at if carried and previous else None,
    )


def _update(
    ctx: Context,
    kind: model.UpdateKind,
    changes: Mapping[str, str],
    phase: Phase,
    reason: Reason,
    message: str,
    effects: list[model.Effect],
    step: str | None = None,
    triggers: tuple[str, ...] = (),
    disable_rollback: bool = False,
    guarded: bool = False,
) -> model.Decision:
    """A full-parameter UpdateStack, recorded as pending before it is sent. Its rollback
    triggers are explicit (`triggers`, usually none), since CloudFormation would otherwise
    keep the previous update's."""
    if kind != "migrate":  # it changes the API group: decide on the group as it is
        _groups_read(ctx)
    parameters = tuple((name, changes.get(name)) for name in sorted(ctx.params))
    # The token names this step in this situation: the same observation gives the same
    # token (a resend after a crash is harmless), a different one a new token.
    situation = ",".join(f"{k}:{ctx.params.get(k)}>{v}" for k, v in sorted(changes.items()))
    token = client_request_token(
        ctx.name, step or kind, ctx.image, ctx.revision, ctx.attempt(), situation
    )
    update = model.StackUpdate(kind, parameters, token, triggers, disable_rollback, guarded)
    pending = model.Pending(kind, ctx.image, ctx.revision, token, ctx.now, dict(changes))
    return model.Decision(
        phase,
        message,
        reason=reason,
        update=update,
        effects=(*effects, model.SetPending(pending)),
        requeue="active",
    )


def client_request_token(
    name: str, step: str, image: str, revision: str, attempt: int, situation: str = ""
) -> str:
    """Deterministic per (spec, step, image, revision, attempt, situation)."""
    key = f"{name}|{step}|{image}|{revision}|{attempt}|{situation}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"reconciler-{step}-{image}-{digest[:20]}"[:128]


def _needs(ctx: Context, need: model.Need, phase: Phase, message: str) -> model.Decision:
    """No decision yet: a partial observation lacks what this rule reads (see Observed)."""
    return model.Decision(
        phase, message, reason=Reason.READING, requeue="active", needs=frozenset({need})
    )


def _with_marks(ctx: Context, effects: tuple[model.Effect, ...]) -> Context:
    """The context as it will be once `effects` are stored (so one plan() can chain)."""
    return dataclasses.replace(ctx, memory=fold.apply_all(ctx.memory, effects).memory)


def apply_effect(memory: model.Memory, effect: model.Effect) -> model.Memory:
    """The memory once `effect` is stored: the one fold (reconciler.fold), as stores do it."""
    return fold.apply(memory, effect).memory


def _marks_on_applied(ctx: Context, pending: model.Pending) -> tuple[model.Effect, ...]:
    """What an applied update means for the rollout's record."""
    rollout = ctx.rollout
    if rollout is None or pending.image != ctx.image:
        return ()
    if pending.kind == "switch" and ctx.live_api_image == ctx.image:
        return (model.MarkRollout(switched_at=ctx.now),)
    return ()
