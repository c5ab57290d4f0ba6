"""Builders for planner tests: specs, stacks and memories in a line each."""

from __future__ import annotations

import datetime as dt
from typing import Any

from reconciler import model, spec

OLD = "ami-00000001"
NEW = "ami-00000002"
NEWER = "ami-00000003"
REV = "a" * 40
REV2 = "b" * 40
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def deployment(image: str = NEW, **overrides: Any) -> spec.StackDeployment:
    body: dict[str, Any] = {
        "stackName": "Stack1",
        "region": "us-east-1",
        "image": image,
        "capacity": {"api": 1, "migration": 1},
        "parameters": {"EnvName": "prod"},
        "migration": {"check": "s3", "location": "s3://deploy-status/biglearn", "timeout": "30m"},
        "rollout": {"timeout": "45m", "verifyHealth": True},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": "biglearn-api"},
            "spec": body,
        }
    )


def params(
    api: str = OLD, mig: str = OLD, mig_cap: int = 0, api_cap: int = 1, env: str = "prod"
) -> dict[str, str]:
    return {
        "EnvName": env,
        "KeyName": "kevin_va_kp",
        "RepoUrl": "https://example.invalid/repo.git",
        "BranchNameOrSha": "main",
        "LcImageId": api,
        "MigrationLcImageId": mig,
        "MigrationDesiredCapacity": str(mig_cap),
        "Asg1DesiredCapacity": str(api_cap),
    }


def stack(
    status: str = "UPDATE_COMPLETE",
    last_updated: dt.datetime | None = None,
    reason: str | None = None,
    **kw: Any,
) -> model.StackView:
    return model.StackView(status, params(**kw), last_updated or T0 - minutes(60), reason)


def healthy(image: str, n: int = 1) -> tuple[model.Instance, ...]:
    return tuple(model.Instance(f"i-{k}", image, "InService", True) for k in range(n))


def observed(
    view: model.StackView | None = None,
    record: model.MigrationRecord | None = None,
    instances: tuple[model.Instance, ...] | None = None,
    capacity: int | None = 1,
) -> model.Observed:
    return model.Observed(
        stack=view if view is not None else stack(),
        api_desired_capacity=capacity,
        api_instances=instances if instances is not None else healthy(OLD),
        migration_record=record,
    )


def record(
    status: model.RecordStatus = "succeeded", at: dt.datetime = T0, image: str = NEW
) -> model.MigrationRecord:
    return model.MigrationRecord(image=image, status=status, updated_at=at, progress="40/40")


def rollout(image: str = NEW, **kw: Any) -> model.RolloutMemory:
    base: dict[str, Any] = {
        "id": 1,
        "image": image,
        "revision": REV,
        "from_image": OLD,
        "started_at": T0 - minutes(10),
        "phase1_started_at": T0 - minutes(10),
    }
    return model.RolloutMemory(**{**base, **kw})


def pending(
    kind: model.UpdateKind = "migrate", at: dt.datetime = T0, **expected: str
) -> model.Pending:
    return model.Pending(kind, NEW, REV, "tok", at, expected)


def phase1_live_stack() -> model.StackView:
    """The migration group runs NEW; the API group still runs OLD."""
    return stack(mig=NEW, mig_cap=1)
