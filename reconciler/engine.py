"""One reconcile step for one spec: observe, plan, record, act, report.

Rules of this file:
- A step never waits for AWS: waiting is the next step. A step is short, so a restart at
  any moment is harmless.
- What the planner decided is stored before the update is sent; a failure to send is
  stored as a failure (through the planner's own failure rule), never lost.
- Status, metrics and the duration are recorded in a `finally`, so no path forgets them.
- One log line per decision that changes something, not one per idle tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import structlog

from reconciler import aws, catalog, model, planner, reasons, spec, transitions, waves
from reconciler.aws.batch import NotYet
from reconciler.aws.fleet import Fleet
from reconciler.aws.guard import ChangeSetFailed, Checking, Guard, Verdict
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.status import StackStatus
from reconciler.store import StateStore

Clock = Callable[[], dt.datetime]

# Decisions a step may take from a batched (up to one interval old) read of the stack:
# nothing to send, nothing to verify, nothing to store. Anything else reads afresh.
_CHEAP_PHASES = frozenset({Phase.IN_SYNC, Phase.PAUSED})

# Refusals that only mean "not now": the next step sees why and waits.
# `plan --change-set`: AWS makes a change set in seconds; a minute means something is wrong.
CHANGE_SET_TIMEOUT = 60.0
_TRANSIENT_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})


def _account(sp: spec.Spec) -> tuple[str, str | None]:
    return sp.region, sp.role_arn


def _decided_cheaply(decision: model.Decision) -> bool:
    """Nothing to send, store or scale: a batched read of the stack was enough."""
    return (
        decision.update is None
        and not decision.effects
        and getattr(decision, "scaling", None) is None
        and decision.phase in _CHEAP_PHASES
    )


def _about(loaded: catalog.LoadedSpec) -> contextlib.AbstractContextManager[None]:
    """Every line logged inside names the spec (structlog's context variables): the reads,
    the shared listings, boto's own warnings, which do not know it themselves."""
    return structlog.contextvars.bound_contextvars(name=loaded.deployment.name)


def _claim(observed: model.Observed, decision: model.Decision) -> model.Claim | None:
    """A fleet member that starts a rollout needs its step's slot."""
    turn = observed.turn
    if turn is None or not any(isinstance(e, model.StartRollout) for e in decision.effects):
        return None
    return model.Claim(turn.fleet, turn.step - 1, turn.limit)


def _member(
    status: StackStatus,
    fleet: spec.FleetSpec,
    memory: model.Memory,
    now: dt.datetime,
    live: str | None,
) -> waves.Member:
    sp = status.deployment.spec
    pause = sp.paused
    paused = (pause is not None and (pause.until is None or now < pause.until)) or (
        memory.runtime_pause is not None
        and (memory.runtime_pause.until is None or now < memory.runtime_pause.until)
    )
    rollout = memory.rollout
    active = rollout is not None and rollout.active
    if live is not None:
        in_sync = live == sp.image and not active
    else:
        # Not seen at all: its record says.
        in_sync = (
            rollout is not None and rollout.image == sp.image and rollout.result == "succeeded"
        )
    return waves.Member(
        status.name,
        fleet.step_of(status.deployment.metadata.labels),
        sp.image,
        memory,
        in_sync,
        paused,
        blocked=status.phase == Phase.BLOCKED,
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Listener = Callable[[list[model.Transition]], None]


@dataclasses.dataclass(frozen=True)
class StepResult:
    name: str
    phase: Phase
    message: str
    sent: Literal["sent", "noop"] | None
    requeue: model.Requeue
    error: str | None = None


class Engine:
    """Carries decisions out for many specs; safe to call from several threads (one per spec)."""

    def __init__(
        self,
        clients: aws.Clients,
        store: StateStore,
        metrics: Metrics,
        policy: planner.Policy = planner.DEFAULT_POLICY,
        clock: Clock = utcnow,
        listeners: Sequence[Listener] = (),
        fresh: dt.timedelta = dt.timedelta(seconds=1),
    ) -> None:
        self.clients = clients
        self.store = store
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()
        self._status: dict[str, StackStatus] = {}
        # Shared reads: one listing per account serves every spec that steps in one tick.
        self.fleet = Fleet(clients)
        self.guard = Guard(clients, store)  # rollout.guard: verdicts shared by stacks and bumps
        self.fresh = fresh  # how old a shared read a step may act on: one tick
        self._accounts: dict[tuple[str, str | None], int] | None = None  # managed per account
        self._log = structlog.get_logger("reconciler.engine")
        self.listeners = list(listeners)
        self._fleets: dict[str, catalog.LoadedFleet] = {}
        # Members' memories, read for judging turns: at most `fresh` old (the slot itself is
        # taken atomically by the store, so a slightly old view can only hold back).
        self._fleet_reads: dict[str, tuple[float, dict[str, model.Memory]]] = {}

    # --- the set of specs ---------------------------------------------------------------

    def track(self, loaded: catalog.LoadedSpec) -> StackStatus:
        """Start or keep managing a spec; returns its status entry."""
        with self._lock:
            status = self._status.get(loaded.deployment.name)
            if status is None:
                status = StackStatus(
                    loaded.deployment.name, loaded.file, loaded.revision, loaded.deployment
                )
                status.memory = self.store.load(status.name)
                self._status[status.name] = status
                self._accounts = None  # the stacks per account are counted again when needed
            elif _account(status.deployment.spec) != _account(loaded.deployment.spec):
                self._accounts = None
            status.file, status.revision = loaded.file, loaded.revision
            status.deployment, status.stale_spec = loaded.deployment, loaded.stale
            return status

    def forget(self, name: str) -> None:
        """A spec removed from git: stop managing it and drop its series; its stack stays."""
        with self._lock:
            self._status.pop(name, None)
            self._accounts = None
        self.metrics.forget(name)

    def statuses(self) -> list[StackStatus]:
        with self._lock:
            return sorted(self._status.values(), key=lambda s: s.name)

    def status(self, name: str) -> StackStatus | None:
        with self._lock:
            return self._status.get(name)

    # --- one step -----------------------------------------------------------------------

    def preview(self, loaded: catalog.LoadedSpec) -> tuple[model.Observed, model.Decision]:
        """What the next step would do, without storing or sending anything (`plan`)."""
        sp = loaded.deployment.spec
        memory = self.store.load(loaded.deployment.name)
        with _about(loaded):
            self.fleet.prefetch_groups(sp, self.fresh)
            begun = self.fleet.now()
            # judge=False: a fleet's halt is shown as it would be, never stored (plan changes
            # nothing).
            observed = self._observe(sp, loaded.deployment.name, judge=False)
            if observed.stack is not None:
                seen = (begun, self.fleet.now())
                found = self.fleet.judge_drift(
                    sp, observed.stack, seen, memory, self.fresh, once=True
                )
                observed = dataclasses.replace(observed, drift=found)
            if sp.rollout.alarms:  # a full observation lacks only these
                observed = self.fleet.with_alarms(sp, observed, self.fresh)
        decision = planner.plan(
            loaded.deployment, loaded.revision, observed, memory, self.clock(), self.policy
        )
        return observed, decision

    def step(self, loaded: catalog.LoadedSpec) -> StepResult:
        """Observe, plan, record, act, report: one reconcile step for one spec."""
        status = self.track(loaded)
        started = time.monotonic()
        result: StepResult | None = None
        try:
            with _about(loaded):
                result = self._step(status, loaded)
            return result
        except aws.ERRORS as exc:
            result = self._errored(status, f"AWS: {exc}")
            return result
        finally:
            outcome: Literal["ok", "error"] = "ok" if result and not result.error else "error"
            self.metrics.reconcile(status.name, outcome, time.monotonic() - started)
            self._report(status)

    def _step(self, status: StackStatus, loaded: catalog.LoadedSpec) -> StepResult:
        try:
            observed, memory, decision, now = self._look(status, loaded)
        except NotYet:
            # The shared reads this step needs are due but paced: decide nothing now.
            return StepResult(status.name, status.phase, status.message, None, "active")
        decision = self._guarded(loaded, observed, memory, decision, now)
        # Record first: a crash after this line resumes from what was decided. A fleet
        # member's start takes its step's slot in the same write, or does not start.
        claim = _claim(observed, decision)
        if claim is None:
            self.store.apply(status.name, decision.effects)
        elif not self.store.start_member(status.name, decision.effects, claim):
            decision = model.Decision(
                Phase.WAITING,
                f"fleet {claim.fleet} step {claim.step + 1}: no free slot, or the fleet "
                "halted, when the start was stored: waiting for its turn",
                reason=reasons.Reason.FLEET_TURN,
                requeue="active",
            )
        self._fleet_reads.pop(self._fleet_of(status.name) or "", None)
        sent: Literal["sent", "noop"] | None = None
        error: str | None = None
        if decision.update is not None:
            sent, decision, error = self._send(loaded, decision, memory, now)
        elif decision.scaling is not None:
            error = self._scale(loaded, decision.scaling)
        status.observed = observed
        status.memory = self.store.load(status.name)
        self._transition(status, decision, sent, error, memory, now)
        return StepResult(
            status.name, decision.phase, decision.message, sent, decision.requeue, error
        )

    def _look(
        self, status: StackStatus, loaded: catalog.LoadedSpec
    ) -> tuple[model.Observed, model.Memory, model.Decision, dt.datetime]:
        """Observe and plan, in three widening circles:
        1. the idle listing (up to one interval old), when it shows nothing to do;
        2. the fleet's shared reads, at most one tick old and newer than our last update
           to this stack, plus what the planner asks for (Decision.needs);
        3. this stack read alone, where shared reads cannot serve it."""
        sp = loaded.deployment.spec
        memory = self.store.load(status.name)
        listed = self._idle_listing(sp, status, memory)
        cheap = self._observe_cheaply(sp, *listed) if listed is not None else None
        if cheap is not None:
            decision, now = self._plan(loaded, cheap, memory)
            if _decided_cheaply(decision):
                return cheap, memory, decision, now
        observed = self._with_context(
            sp, status.name, self.fleet.observe(sp, sp.image, self.fresh, self._managed(sp))
        ) or self._observe_alone(sp, status, memory, judge=listed is None)
        # The drift last judged (idle, this step or before) is what a rollout's first step
        # plans on: rollout.onDrift hold reads it. A rollout under way ignores it.
        observed = dataclasses.replace(observed, drift=status.drift)
        memory = self.store.load(status.name)
        decision, now = self._plan(loaded, observed, memory)
        for _ in range(3):  # groups, health, alarms at the most
            if not decision.needs:
                break
            observed = self._fill(sp, status.name, observed, decision.needs)
            decision, now = self._plan(loaded, observed, memory)
        if decision.needs:  # cannot happen with a full observation; never act on it
            decision = model.Decision(
                decision.phase, decision.message, reason=decision.reason, requeue="active"
            )
        return observed, memory, decision, now

    def _plan(
        self, loaded: catalog.LoadedSpec, observed: model.Observed, memory: model.Memory
    ) -> tuple[model.Decision, dt.datetime]:
        now = self.clock()
        decision = planner.plan(
            loaded.deployment, loaded.revision, observed, memory, now, self.policy
        )
        return decision, now

    def _fill(
        self, sp: spec.Spec, name: str, observed: model.Observed, needs: frozenset[model.Need]
    ) -> model.Observed:
        """What the planner asked for: the groups from the shared listing, instance health
        from one per-stack read, the alarms from the shared DescribeAlarms, the stack's
        events from its own full observation."""
        filled: model.Observed | None = observed
        if "alarms" in needs:
            return self.fleet.with_alarms(sp, observed, self.fresh)
        if "health" in needs:
            filled = self.fleet.with_health(sp, observed, self.fresh)
        elif "groups" in needs:
            filled = self.fleet.with_groups(sp, observed, self.fresh)
        if filled is None or "events" in needs:
            full = self._observe(sp, name)
            return dataclasses.replace(full, alarms=observed.alarms, drift=observed.drift)
        return filled

    def _idle_listing(
        self, sp: spec.Spec, status: StackStatus, memory: model.Memory
    ) -> tuple[model.StackView, tuple[model.Drift, ...] | None] | None:
        """The stack from the account's listing when no rollout or update of ours is open,
        with its managed groups' drift judged on the way (None: not judged this time);
        None when the listing does not serve it."""
        if memory.pending is not None or (memory.rollout is not None and memory.rollout.active):
            return None
        age = self._drift_age(sp, status)
        # The groups before the stacks: a look at the stack begun after the groups' listing
        # ended vouches that the stack stood settled all through it (docs/decisions/0014).
        self.fleet.prefetch_groups(sp, age)
        listed = self.fleet.listed_at(sp, age, self._managed(sp))
        if listed is None:
            return None
        view, seen = listed
        return view, self._judge_drift(sp, status, memory, view, seen)

    def _observe_cheaply(
        self, sp: spec.Spec, view: model.StackView, drift: tuple[model.Drift, ...] | None
    ) -> model.Observed | None:
        """The listed stack as the whole observation, when it runs the desired image; None
        when a full observation is needed."""
        if view.parameters.get(sp.parameter_names.api_image) != sp.image:
            return None  # a rollout is due: it needs the groups and the record
        self.fleet.warm(sp)  # once per stack: a rollout then finds its groups in shared reads
        self._warm_guard(sp, view)
        return model.Observed(stack=view, drift=drift)  # in sync: no upstream or turn asked

    def _observe_alone(
        self, sp: spec.Spec, status: StackStatus, memory: model.Memory, judge: bool
    ) -> model.Observed:
        """The stack read by itself; with `judge` (no listing served it), its drift judged
        from the shared groups listing, which a look at the stack begun after it vouches for."""
        begun = self.fleet.now()
        observed = self._observe(sp, status.name)
        if judge and observed.stack is not None:
            seen = (begun, self.fleet.now())
            self._judge_drift(sp, status, memory, observed.stack, seen)
        return observed

    def _drift_age(self, sp: spec.Spec, status: StackStatus) -> dt.timedelta:
        """How old a listing may judge drift: one interval, so that steady state costs one
        groups listing per account per interval; one tick for a stack held by its drift, so
        that `retry` or `sync` after the fix sees the groups as they are."""
        return self.fresh if status.reason == reasons.Reason.DRIFTED else sp.interval

    def _judge_drift(
        self,
        sp: spec.Spec,
        status: StackStatus,
        memory: model.Memory,
        view: model.StackView,
        seen: tuple[float, float],
    ) -> tuple[model.Drift, ...] | None:
        """Judge the drift, keep it for status and tell each new one; None: not judged."""
        found = self.fleet.judge_drift(sp, view, seen, memory, self._drift_age(sp, status))
        if found is None:
            return None
        before = status.drift or ()
        if found != before:
            log = self._log.warning if found else self._log.info
            event = "managed groups drifted" if found else "managed groups no longer drifted"
            log(event, **self._bound(status), drift=[d.describe() for d in found])
        status.drift = found
        told = transitions.drifted(
            status.name, status.revision, sp, found, before, view.last_updated, self.clock()
        )
        self._tell(told)
        return found

    def _with_context(
        self, sp: spec.Spec, name: str, observed: model.Observed | None, judge: bool = True
    ) -> model.Observed | None:
        """What the planner needs of other specs: the promotion's upstream, the fleet turn."""
        if observed is None:
            return None
        if sp.promotion is not None:
            observed = dataclasses.replace(observed, upstream=self._upstream(sp.promotion.after))
        turn = self._turn(name, judge)
        if turn is not None:
            observed = dataclasses.replace(observed, turn=turn)
        return observed

    def _managed(self, sp: spec.Spec) -> int:
        with self._lock:
            if self._accounts is None:
                counts: dict[tuple[str, str | None], int] = {}
                for s in self._status.values():
                    key = _account(s.deployment.spec)
                    counts[key] = counts.get(key, 0) + 1
                self._accounts = counts
            return self._accounts.get(_account(sp), 0)

    def _observe(self, sp: spec.Spec, name: str, judge: bool = True) -> model.Observed:
        observed = self._with_context(sp, name, aws.observe(self.clients, sp, sp.image), judge)
        assert observed is not None
        return observed

    def _upstream(self, name: str) -> model.Upstream | None:
        """The spec a promotion follows, from its last step and its rollout history."""
        status = self.status(name)
        if status is None or status.observed is None:
            return None
        image = status.desired_image
        in_sync = status.phase == Phase.IN_SYNC and status.live_image == image
        done = [
            r.finished_at
            for r in self.store.history(name, limit=20)
            if r.image == image and r.result == "succeeded"
        ]
        return model.Upstream(name, image, in_sync, done[0] if done else None)

    def _guarded(
        self,
        loaded: catalog.LoadedSpec,
        observed: model.Observed,
        memory: model.Memory,
        decision: model.Decision,
        now: dt.datetime,
    ) -> model.Decision:
        """rollout.guard: an update goes out only if its change set replaces nothing beyond
        what the spec allows. Before anything is stored: a refused or unchecked update has
        started nothing."""
        update, sp = decision.update, loaded.deployment.spec
        if update is None or not update.guarded or sp.rollout.guard == "off":
            return decision
        assert observed.stack is not None  # an update is planned only for a stack seen
        try:
            verdict = self.guard.judge(sp, update, observed.stack)
        except ChangeSetFailed as exc:
            return self._failed(loaded, memory, now, reasons.Reason.UPDATE_REFUSED, str(exc))
        if isinstance(verdict, Checking):
            return model.Decision(
                decision.phase,
                verdict.message,
                reason=reasons.Reason.CHECKING_CHANGES,
                requeue="active",
            )
        if verdict.ok:
            return decision
        message = (
            f"{verdict.message()}: nothing was sent. Take it out of what the image parameter "
            "feeds, or allow it with rollout.allowReplace, then `reconciler retry`"
        )
        self._log.warning("update refused by the change-set guard", update=update.kind)
        return self._failed(loaded, memory, now, reasons.Reason.CHANGE_REFUSED, message)

    def _failed(
        self,
        loaded: catalog.LoadedSpec,
        memory: model.Memory,
        now: dt.datetime,
        code: reasons.Reason,
        message: str,
    ) -> model.Decision:
        return planner.failure(
            loaded.deployment, loaded.revision, memory, now, code, message, self.policy
        )

    def verdict(
        self, sp: spec.Spec, update: model.StackUpdate, view: model.StackView, make: bool
    ) -> Verdict | str | None:
        """`plan`: the guard's known verdict on `update` (None if none), or with `make` one
        from a change set made and deleted now; a string says why there is none."""
        try:
            known = self.guard.known(sp, update, view)
            if known is not None or not make:
                return known  # a fleet sharing a template makes one change set, not one each
            return self.guard.check_now(sp, update, view, CHANGE_SET_TIMEOUT)
        except (*aws.ERRORS, ChangeSetFailed) as exc:
            return str(exc)

    def _warm_guard(self, sp: spec.Spec, view: model.StackView) -> None:
        """The template, read while idle; a failure to read it shows when a rollout needs it."""
        try:
            self.guard.warm(sp, view)
        except aws.ERRORS as exc:
            self._log.debug("template not read while idle", error=str(exc))

    def _scale(self, loaded: catalog.LoadedSpec, change: model.ScalingChange) -> str | None:
        """Suspend or resume scaling processes; a failure is retried on the next step, since
        the planner asks again until it observes the processes as it wants them."""
        try:
            aws.set_scaling(self.clients, loaded.deployment.spec, change)
            self.fleet.touched(loaded.deployment.spec)
        except aws.ERRORS as exc:
            return f"AWS: {change.action} scaling processes: {exc}"
        return None

    def _send(
        self,
        loaded: catalog.LoadedSpec,
        decision: model.Decision,
        memory: model.Memory,
        now: dt.datetime,
    ) -> tuple[Literal["sent", "noop"] | None, model.Decision, str | None]:
        assert decision.update is not None
        name, kind = loaded.deployment.name, decision.update.kind
        try:
            sent = aws.send_update(self.clients, loaded.deployment.spec, decision.update)
        except aws.UpdateRefused as exc:
            self.fleet.touched(loaded.deployment.spec)  # refused, but it may have been busy
            self.metrics.stack_update(name, kind, "error")
            return None, self._refused(loaded, decision, exc, now), str(exc)
        except aws.ERRORS as exc:
            # Throttled past retries or the endpoint is down: the pending record stays and
            # the next step finds the update either applied or never sent.
            self.fleet.touched(loaded.deployment.spec)
            self.metrics.stack_update(name, kind, "error")
            return None, decision, f"AWS: {exc}"
        self.metrics.stack_update(name, kind, "noop" if sent == "noop" else "ok")
        self.fleet.touched(loaded.deployment.spec)  # reads from before now no longer serve it
        self.guard.sent(loaded.deployment.spec, self.clock())  # its LastUpdatedTime is ours
        return sent, decision, None

    def _refused(
        self,
        loaded: catalog.LoadedSpec,
        decision: model.Decision,
        exc: aws.UpdateRefused,
        now: dt.datetime,
    ) -> model.Decision:
        name = loaded.deployment.name
        if exc.code in _TRANSIENT_CODES or exc.busy:
            # The stack became busy between observing and sending: not a failure.
            self.store.apply(name, (model.ClearPending(),))
            return dataclasses.replace(
                decision,
                phase=Phase.WAITING,
                message=str(exc),
                reason=reasons.Reason.UPDATE_DEFERRED,
            )
        memory = self.store.load(name)
        failed = self._failed(
            loaded, memory, now, reasons.Reason.UPDATE_REFUSED, f"update refused: {exc}"
        )
        self.store.apply(name, (model.ClearPending(), *failed.effects))
        return failed

    def _errored(self, status: StackStatus, error: str) -> StepResult:
        status.last_error = error
        self._log.warning("reconcile error", **self._bound(status), error=error)
        return StepResult(status.name, status.phase, status.message, None, "retry", error)

    # --- fleets -------------------------------------------------------------------------

    def set_fleets(self, fleets: Mapping[str, catalog.LoadedFleet]) -> None:
        """The fleets in force (the catalog's, a removed one until its members are done)."""
        with self._lock:
            self._fleets = dict(fleets)
        self._fleet_reads.clear()

    def _fleet_of(self, name: str) -> str | None:
        status = self.status(name)
        return None if status is None else self._fleet_for(status.deployment)

    def _fleet_for(self, deployment: spec.StackDeployment) -> str | None:
        """The fleet that orders this spec: as catalog.memberships decides, a fleet still in
        git before a removed one, then by name (the catalog refuses two present ones)."""
        labels = deployment.metadata.labels
        with self._lock:
            fleets = [lf for lf in self._fleets.values() if lf.deployment.spec.selects(labels)]
        if not fleets:
            return None
        return min(fleets, key=lambda f: (f.removed, f.deployment.name)).deployment.name

    def _members(self, fleet: str, now: dt.datetime) -> list[waves.Member]:
        fs = self._fleets[fleet].deployment.spec
        statuses = [s for s in self.statuses() if self._fleet_for(s.deployment) == fleet]
        stamp, memories = self._fleet_reads.get(fleet, (0.0, {}))
        if time.monotonic() - stamp > self.fresh.total_seconds() or set(memories) != {
            s.name for s in statuses
        }:
            memories = {s.name: self.store.load(s.name) for s in statuses}
            self._fleet_reads[fleet] = (time.monotonic(), memories)
        return [_member(s, fs, memories[s.name], now, self._live_image(s)) for s in statuses]

    def _live_image(self, status: StackStatus) -> str | None:
        """A member's API image as this replica last saw it, else from the account's shared
        listing (a member another replica drives, or not stepped here yet), else unknown."""
        if status.observed is not None and status.observed.stack is not None:
            return status.live_image
        sp = status.deployment.spec
        try:
            view = self.fleet.listed(sp, sp.interval, self._managed(sp))
        except NotYet:
            return None
        return view.parameters.get(sp.parameter_names.api_image) if view is not None else None

    def _turn(self, name: str, judge: bool = True) -> model.Turn | None:
        """A fleet member's turn; the halt judged first (and, with `judge`, stored for every
        replica and told; without, only taken into account)."""
        fleet = self._fleet_of(name)
        if fleet is None:
            return None
        now = self.clock()
        members = self._members(fleet, now)
        memory = self._judge(fleet, members, now, judge)
        return waves.turn(fleet, self._fleets[fleet].deployment.spec, members, memory, name, now)

    def _judge(
        self, fleet: str, members: list[waves.Member], now: dt.datetime, store: bool = True
    ) -> model.FleetMemory:
        """Halt a fleet past its failure budget; lift a budget halt on a new image."""
        fs = self._fleets[fleet].deployment.spec
        memory = self.store.fleet(fleet)
        if waves.lifts(memory, members):
            if not store:
                memory = model.FleetMemory(epoch=now, holders=memory.holders)
            else:
                self.store.lift_fleet(fleet, now)
                self._log.info("fleet halt lifted: a member's image changed", fleet=fleet)
                memory = self.store.fleet(fleet)
        reason = waves.over_budget(fleet, fs, members, memory)
        if reason is not None:
            halt = model.Halt(reason, now, "budget", waves.signature(members))
            if not store:
                return dataclasses.replace(memory, halt=halt)
            if self.store.halt_fleet(fleet, halt):
                self._log.warning("fleet halted", fleet=fleet, reason=reason)
                self._tell_fleet(fleet, "fleet_halted", f"fleet {fleet} halted: {reason}", now)
            memory = self.store.fleet(fleet)
        return memory

    def _tell_fleet(
        self, fleet: str, kind: model.TransitionKind, message: str, now: dt.datetime
    ) -> None:
        # Keyed by when, so that a fleet halted again after a lift is told again.
        stamp = now.isoformat()
        self._tell([model.Transition(fleet, "", "", stamp, kind, "", message, now)])

    def fleet_views(self) -> list[waves.FleetView]:
        """Every fleet in force, as status, plan and the metrics show it."""
        now = self.clock()
        with self._lock:
            fleets = sorted(self._fleets.items())
        views = []
        for name, loaded in fleets:
            members = self._members(name, now)
            memory = self.store.fleet(name)
            views.append(
                waves.view(
                    name,
                    loaded.file,
                    loaded.stale,
                    loaded.deployment.spec,
                    members,
                    memory,
                )
            )
        return views

    def halt_fleet(self, fleet: str, reason: str) -> bool:
        """A person halts a fleet: members not started stay where they are."""
        now = self.clock()
        halted = self.store.halt_fleet(fleet, model.Halt(reason, now, "operator"))
        if halted:
            self._tell_fleet(fleet, "fleet_halted", f"fleet {fleet} halted: {reason}", now)
        return halted

    def lift_fleet(self, fleet: str, retry: bool) -> list[str]:
        """Resume (or retry) a fleet: the halt lifts and failures so far no longer count;
        with `retry`, its failed members are retried now. Returns the members retried."""
        now = self.clock()
        retried: list[str] = []
        if retry:
            for m in self._members(fleet, now):
                if m.failed(self.store.fleet(fleet).epoch) and self.store.retry(m.name, now):
                    retried.append(m.name)
        self.store.lift_fleet(fleet, now)
        self._fleet_reads.pop(fleet, None)
        return retried

    def fleet_names(self) -> list[str]:
        with self._lock:
            return sorted(self._fleets)

    # --- reporting ----------------------------------------------------------------------

    def _transition(
        self,
        status: StackStatus,
        decision: model.Decision,
        sent: Literal["sent", "noop"] | None,
        error: str | None,
        before: model.Memory,
        now: dt.datetime,
    ) -> None:
        changed = decision.phase != status.phase or decision.message != status.message
        told = transitions.derive(
            status.name, status.revision, status.deployment.spec, status.phase, decision, now
        )
        if decision.phase != status.phase:
            status.last_transition = now
        status.phase, status.message, status.requeue = (
            decision.phase,
            decision.message,
            decision.requeue,
        )
        status.reason = decision.reason
        status.last_error = error
        self._count_rollouts(status, decision, before, now)
        if changed or sent or error:
            log = self._log.bind(**self._bound(status))
            fields: dict[str, Any] = {"message": decision.message}
            if decision.update is not None:
                fields.update(update=decision.update.kind, token=decision.update.token, sent=sent)
                fields["changes"] = decision.update.changes
            if error:
                log.warning("step", error=error, **fields)
            else:
                log.info("step", **fields)
        self._tell(told)

    def _tell(self, told: list[model.Transition]) -> None:
        # A listener must not fail a step: what it is told is also in the store and the log.
        if not told:
            return
        for listener in self.listeners:
            try:
                listener(told)
            except Exception:
                self._log.exception("transition listener failed")

    def _count_rollouts(
        self, status: StackStatus, decision: model.Decision, before: model.Memory, now: dt.datetime
    ) -> None:
        for effect in decision.effects:
            if isinstance(effect, model.FinishRollout) and effect.result != "superseded":
                started = before.rollout.started_at if before.rollout else now
                seconds = (now - started).total_seconds()
                self.metrics.rollout(status.name, effect.result, seconds)
                break

    def _report(self, status: StackStatus) -> None:
        sp = status.deployment.spec
        record = status.observed.migration_record if status.observed else None
        self.metrics.observe_stack(
            name=status.name,
            stack=sp.stack_name,
            region=sp.region,
            revision=status.revision,
            phase=str(status.phase),
            desired_image=sp.image,
            live_image=status.live_image or "",
            in_sync=status.in_sync,
            paused=status.phase == Phase.PAUSED,
            migration_running=record is not None
            and record.image == sp.image
            and record.status == "running"
            and status.phase == Phase.MIGRATING,
            failures=status.memory.failure.count if status.memory.failure else 0,
            drifted=bool(status.drift),
        )

    @staticmethod
    def _bound(status: StackStatus) -> dict[str, str]:
        return {
            "name": status.name,
            "stack": status.deployment.spec.stack_name,
            "revision": status.revision[:12],
            "phase": str(status.phase),
        }
