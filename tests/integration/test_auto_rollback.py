"""rollout.autoRollback: an API group that never turns healthy is switched back to its old image."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3

from reconciler import catalog, engine, notify, spec
from reconciler.aws.clients import Clients
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store
from tests.integration.conftest import REGION, Stack


def loaded(stack: Stack) -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": "careful"},
            "spec": {
                "stackName": stack.name,
                "region": REGION,
                "image": stack.new_image,
                "migration": {"check": "none"},
                "rollout": {"timeout": "10m", "autoRollback": True},
            },
        }
    )
    return catalog.LoadedSpec(doc, "deploy-specs/careful.yaml", "d" * 40, stale=False)


def live(stack: Stack) -> dict[str, str]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    (s,) = cfn.describe_stacks(StackName=stack.name)["Stacks"]
    return {p["ParameterKey"]: p["ParameterValue"] for p in s["Parameters"]}


def put_api_instances_in_standby(stack: Stack) -> None:
    """The instances stop serving (moto keeps deregistered instances InService in the ELB)."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    (res,) = cfn.describe_stack_resources(StackName=stack.name, LogicalResourceId="Asg1")[
        "StackResources"
    ]
    asg = boto3.client("autoscaling", region_name=REGION)
    name = res["PhysicalResourceId"]
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    asg.enter_standby(
        AutoScalingGroupName=name,
        InstanceIds=[i["InstanceId"] for i in group["Instances"]],
        ShouldDecrementDesiredCapacity=False,
    )


def test_an_unhealthy_switch_is_rolled_back_and_held(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    now = [dt.datetime.now(dt.UTC)]
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, Metrics(), clock=lambda: now[0])
        for _ in range(6):
            eng.step(loaded(stack))
            if live(stack)["LcImageId"] == stack.new_image:
                break
        put_api_instances_in_standby(stack)
        verifying = eng.step(loaded(stack))
        assert verifying.phase == Phase.VERIFYING
        now[0] += dt.timedelta(minutes=11)
        rolled = eng.step(loaded(stack))
        assert rolled.phase == Phase.FAILED and rolled.sent == "sent"
        assert live(stack)["LcImageId"] == stack.old_image
        now[0] += dt.timedelta(hours=3)
        held = eng.step(loaded(stack))
        (history,) = store.history("careful")
    assert held.phase == Phase.FAILED and "held until a new revision" in held.message
    assert live(stack)["LcImageId"] == stack.old_image
    assert history.result == "failed" and "rolled the API group back" in (history.reason or "")


def test_an_automatic_rollback_is_told_to_slack_and_json_sinks_and_in_status(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    """Regression: the rollback step's rollout_failed and rolled_back reach every sink (a
    Slack sink once made rendering raise, and the step's notifications were lost)."""
    now = [dt.datetime.now(dt.UTC)]
    sinks = (
        notify.Sink("chat", "slack", "https://hooks.example.invalid/T0/B0/x"),
        notify.Sink("hook", "json", "https://events.example.invalid/hook"),
    )
    with Store.in_state_dir(tmp_path) as store:
        teller = notify.Notifier(store, sinks, Metrics(), clock=lambda: now[0])
        eng = engine.Engine(
            clients, store, Metrics(), clock=lambda: now[0], listeners=[teller.listener]
        )
        for _ in range(6):
            eng.step(loaded(stack))
            if live(stack)["LcImageId"] == stack.new_image:
                break
        put_api_instances_in_standby(stack)
        eng.step(loaded(stack))
        now[0] += dt.timedelta(minutes=11)
        rolled = eng.step(loaded(stack))
        owed = {(e.key.rsplit("|", 1)[1], e.sink) for e in store.due(now[0], 1000)}
        status = eng.status("careful")
        assert status is not None
        shown = status.to_json()
    assert rolled.phase == Phase.FAILED
    for kind in ("rollout_failed", "rolled_back"):
        assert {(kind, "chat"), (kind, "hook")} <= owed
    assert (shown["reason"], shown["failures"]["code"]) == ("rolled_back", "rolled_back")
