"""What a person or a dashboard sees of one managed spec: its status and the JSON of it.

Rules of this file:
- A view, no I/O: the engine fills a StackStatus after each step; `to_json` is the shape
  `GET /api/v1/stacks` and `reconciler status` show (CONTRACT section 5).
- The live image is read through the spec's `parameterNames`, never a fixed parameter name.
- "In sync" compares live with desired, whatever the phase: a paused stack that already
  runs what its spec says is in sync.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from reconciler import model, planner, reasons, spec
from reconciler.model import Phase


@dataclasses.dataclass
class StackStatus:
    """What a person or a dashboard sees of one spec (CONTRACT section 5)."""

    name: str
    file: str
    revision: str
    deployment: spec.StackDeployment
    phase: Phase = Phase.WAITING
    message: str = "not observed yet"
    reason: reasons.Reason | None = None  # the last decision's code; None before the first
    observed: model.Observed | None = None
    memory: model.Memory = dataclasses.field(default_factory=model.Memory)
    last_transition: dt.datetime | None = None
    last_error: str | None = None
    stale_spec: bool = False
    requeue: model.Requeue = "active"
    # The managed groups' drift as last judged (None: never judged yet); kept while a step
    # cannot judge it (a rollout, a busy stack), so status shows the last word on it.
    drift: tuple[model.Drift, ...] | None = None

    @property
    def desired_image(self) -> str:
        return self.deployment.spec.image

    @property
    def live_image(self) -> str | None:
        stack = self.observed.stack if self.observed else None
        return (
            stack.parameters.get(self.deployment.spec.parameter_names.api_image) if stack else None
        )

    @property
    def in_sync(self) -> bool:
        """Live matches desired, whatever the phase: the stack is settled, has every parameter
        value its spec asks for, and no rollout of ours is still under way on it."""
        stack = self.observed.stack if self.observed else None
        if stack is None or stack.status not in planner.STABLE:
            return False
        if self.memory.rollout is not None and self.memory.rollout.active:
            return False
        return all(stack.parameters.get(k) == v for k, v in desired_parameters(self.deployment))

    def to_json(self) -> dict[str, Any]:
        sp = self.deployment.spec
        stack = self.observed.stack if self.observed else None
        record = self.observed.migration_record if self.observed else None
        failure = self.memory.failure
        return {
            "name": self.name,
            "file": self.file,
            "stackName": sp.stack_name,
            "region": sp.region,
            "revision": self.revision,
            "phase": str(self.phase),
            "message": self.message,
            "reason": str(self.reason) if self.reason else None,
            "desired": {
                "image": sp.image,
                "capacity": {"api": sp.capacity.api, "migration": sp.capacity.migration},
            },
            "live": {
                "status": stack.status if stack else None,
                "image": self.live_image,
                "parameters": dict(stack.parameters) if stack else {},
            },
            "migration": {
                "status": record.status if record else None,
                "progress": record.progress if record else None,
                "updatedAt": _iso(record.updated_at) if record else None,
            },
            "lastTransitionTime": _iso(self.last_transition),
            "lastError": self.last_error,
            "paused": self._paused_json(),
            "failures": {
                "count": failure.count if failure else 0,
                "code": str(failure.code) if failure else None,
                "nextRetryAt": _iso(failure.next_retry_at) if failure else None,
            },
            "rollout": rollout_json(self.memory.rollout),
            "staleSpec": self.stale_spec,
            "drift": drift_json(self.drift),
        }

    def _paused_json(self) -> dict[str, Any] | None:
        pause = self.deployment.spec.paused
        if pause is not None:
            return {"reason": pause.reason, "until": _iso(pause.until), "source": "spec"}
        runtime = self.memory.runtime_pause
        if runtime is not None:
            return {"reason": runtime.reason, "until": _iso(runtime.until), "source": "runtime"}
        return None


def desired_parameters(deployment: spec.StackDeployment) -> list[tuple[str, str]]:
    """The (parameter, value) pairs a converged stack has: the image, the migration group at
    0, the API capacity unless it is left to the live stack, and the spec's pinned values."""
    sp = deployment.spec
    names = sp.parameter_names
    wanted = {names.api_image: sp.image, names.migration_capacity: "0", **sp.parameters}
    if sp.capacity.api != "live":
        wanted[names.api_capacity] = str(sp.capacity.api)
    return sorted(wanted.items())


def drift_json(drift: tuple[model.Drift, ...] | None) -> list[dict[str, str]] | None:
    """`drift` of the status JSON and of `plan`: null before the first judgement."""
    if drift is None:
        return None
    return [dataclasses.asdict(d) for d in drift]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def rollout_json(r: model.RolloutMemory | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "id": r.id,
        "image": r.image,
        "fromImage": r.from_image,
        "revision": r.revision,
        "startedAt": _iso(r.started_at),
        "phase1StartedAt": _iso(r.phase1_started_at),
        "migratedAt": _iso(r.migrated_at),
        "approvedAt": _iso(r.approved_at),
        "switchStartedAt": _iso(r.switch_started_at),
        "switchedAt": _iso(r.switched_at),
        "finishedAt": _iso(r.finished_at),
        "result": r.result,
        "reason": r.reason,
        "scalingSuspendedAt": _iso(r.scaling_suspended_at),
        "scalingResumedAt": _iso(r.scaling_resumed_at),
    }
