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
from collections.abc import Callable, Sequence
from typing import Any, Literal

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from reconciler import aws, catalog, model, planner, reasons, spec, transitions
from reconciler.aws.batch import NotYet
from reconciler.aws.fleet import Fleet
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.status import StackStatus
from reconciler.store import StateStore

Clock = Callable[[], dt.datetime]

# Decisions a step may take from a batched (up to one interval old) read of the stack:
# nothing to send, nothing to verify, nothing to store. Anything else reads afresh.
_CHEAP_PHASES = frozenset({Phase.IN_SYNC, Phase.PAUSED})

# Refusals that only mean "not now": the next step sees why and waits.
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
        self.fresh = fresh  # how old a shared read a step may act on: one tick
        self._accounts: dict[tuple[str, str | None], int] | None = None  # managed per account
        self._log = structlog.get_logger("reconciler.engine")
        self.listeners = list(listeners)

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
        with _about(loaded):
            observed = self._observe(loaded.deployment.spec)
        memory = self.store.load(loaded.deployment.name)
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
        except (ClientError, BotoCoreError) as exc:
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
        # Record first: a crash after this line resumes from what was decided.
        self.store.apply(status.name, decision.effects)
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
        cheap = self._observe_cheaply(sp, memory)
        if cheap is not None:
            decision, now = self._plan(loaded, cheap, memory)
            if _decided_cheaply(decision):
                return cheap, memory, decision, now
        observed = self._with_upstream(
            sp, self.fleet.observe(sp, sp.image, self.fresh, self._managed(sp))
        ) or self._observe(sp)
        memory = self.store.load(status.name)
        decision, now = self._plan(loaded, observed, memory)
        for _ in range(2):  # groups, then health at the most; a full observation needs none
            if not decision.needs:
                break
            observed = self._fill(sp, observed, decision.needs)
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
        self, sp: spec.Spec, observed: model.Observed, needs: frozenset[model.Need]
    ) -> model.Observed:
        """What the planner asked for: the groups from the shared listing, instance health
        from one per-stack read, the stack's events from its own full observation."""
        filled: model.Observed | None = observed
        if "health" in needs:
            filled = self.fleet.with_health(sp, observed, self.fresh)
        elif "groups" in needs:
            filled = self.fleet.with_groups(sp, observed, self.fresh)
        if filled is None or "events" in needs:
            return self._observe(sp)
        return filled

    def _observe_cheaply(self, sp: spec.Spec, memory: model.Memory) -> model.Observed | None:
        """The stack from the account's listing, when no rollout or update of ours is open
        and the stack runs the desired image; None when a full observation is needed."""
        if memory.pending is not None or (memory.rollout is not None and memory.rollout.active):
            return None
        view = self.fleet.listed(sp, sp.interval, self._managed(sp))
        if view is None:
            return None
        if view.parameters.get(sp.parameter_names.api_image) != sp.image:
            return None  # a rollout is due: it needs the groups and the record
        self.fleet.warm(sp)  # once per stack: a rollout then finds its groups in shared reads
        return self._with_upstream(sp, model.Observed(stack=view))

    def _with_upstream(
        self, sp: spec.Spec, observed: model.Observed | None
    ) -> model.Observed | None:
        if observed is None or sp.promotion is None:
            return observed
        return dataclasses.replace(observed, upstream=self._upstream(sp.promotion.after))

    def _managed(self, sp: spec.Spec) -> int:
        with self._lock:
            if self._accounts is None:
                counts: dict[tuple[str, str | None], int] = {}
                for s in self._status.values():
                    key = _account(s.deployment.spec)
                    counts[key] = counts.get(key, 0) + 1
                self._accounts = counts
            return self._accounts.get(_account(sp), 0)

    def _observe(self, sp: spec.Spec) -> model.Observed:
        observed = self._with_upstream(sp, aws.observe(self.clients, sp, sp.image))
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

    def _scale(self, loaded: catalog.LoadedSpec, change: model.ScalingChange) -> str | None:
        """Suspend or resume scaling processes; a failure is retried on the next step, since
        the planner asks again until it observes the processes as it wants them."""
        try:
            aws.set_scaling(self.clients, loaded.deployment.spec, change)
            self.fleet.touched(loaded.deployment.spec)
        except (ClientError, BotoCoreError) as exc:
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
        except (ClientError, BotoCoreError) as exc:
            # Throttled past retries or the endpoint is down: the pending record stays and
            # the next step finds the update either applied or never sent.
            self.fleet.touched(loaded.deployment.spec)
            self.metrics.stack_update(name, kind, "error")
            return None, decision, f"AWS: {exc}"
        self.metrics.stack_update(name, kind, "noop" if sent == "noop" else "ok")
        self.fleet.touched(loaded.deployment.spec)  # reads from before now no longer serve it
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
        failed = planner.failure(
            loaded.deployment,
            loaded.revision,
            memory,
            now,
            reasons.Reason.UPDATE_REFUSED,
            f"update refused: {exc}",
            self.policy,
        )
        self.store.apply(name, (model.ClearPending(), *failed.effects))
        return failed

    def _errored(self, status: StackStatus, error: str) -> StepResult:
        status.last_error = error
        self._log.warning("reconcile error", **self._bound(status), error=error)
        return StepResult(status.name, status.phase, status.message, None, "retry", error)

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
        )

    @staticmethod
    def _bound(status: StackStatus) -> dict[str, str]:
        return {
            "name": status.name,
            "stack": status.deployment.spec.stack_name,
            "revision": status.revision[:12],
            "phase": str(status.phase),
        }
