"""rollout.suspendScaling: the API group's autoscaler is frozen only while it switches."""

from __future__ import annotations

from pathlib import Path

import boto3

from reconciler import catalog, engine, planner, spec
from reconciler.aws.clients import Clients
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store
from tests.integration.conftest import REGION, Stack


def loaded(stack: Stack, image: str) -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": "frozen"},
            "spec": {
                "stackName": stack.name,
                "region": REGION,
                "image": image,
                "migration": {"check": "none"},
                "rollout": {"suspendScaling": True},
            },
        }
    )
    return catalog.LoadedSpec(doc, "deploy-specs/frozen.yaml", image[-8:] * 5, stale=False)


def suspended(stack: Stack) -> set[str]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    (res,) = cfn.describe_stack_resources(StackName=stack.name, LogicalResourceId="Asg1")[
        "StackResources"
    ]
    asg = boto3.client("autoscaling", region_name=REGION)
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[res["PhysicalResourceId"]])[
        "AutoScalingGroups"
    ]
    return {p["ProcessName"] for p in group.get("SuspendedProcesses", [])}


def test_processes_are_suspended_only_during_the_switch_and_recorded(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    seen: list[tuple[str, bool]] = []
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, Metrics())
        for _ in range(12):
            result = eng.step(loaded(stack, stack.new_image))
            seen.append((result.message, bool(suspended(stack))))
            settled = not suspended(stack) and not store.load("frozen").scaling_owned
            if result.phase == Phase.IN_SYNC and settled:
                break
        (history,) = store.history("frozen")
    frozen = [message for message, is_frozen in seen if is_frozen]
    assert frozen, seen
    assert not any("phase 1" in m for m in frozen)  # never frozen while migrating
    # Frozen right before the switch is sent. (moto replaces the group on the switch, so
    # the new group starts unfrozen there; AWS updates it in place and keeps them.)
    assert any("before the switch" in m for m in frozen)
    assert suspended(stack) == set()
    assert history.scaling_suspended_at is not None and history.scaling_resumed_at is not None


def test_processes_left_suspended_by_an_interrupted_rollout_are_resumed(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    """A rollout stopped between suspend and resume (here: the target was reverted)."""
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, Metrics())
        for _ in range(6):
            eng.step(loaded(stack, stack.new_image))
            if suspended(stack) == set(planner.SCALING_PROCESSES):
                break
        assert suspended(stack) == set(planner.SCALING_PROCESSES)
        restarted = engine.Engine(clients, store, Metrics())  # as after a crash
        for _ in range(6):
            restarted.step(loaded(stack, stack.old_image))
            if not suspended(stack) and not store.load("frozen").scaling_owned:
                break
    assert suspended(stack) == set()
