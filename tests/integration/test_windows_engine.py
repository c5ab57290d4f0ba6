"""A deny window holds a merged bump; when it closes the next tick starts the rollout by itself."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3

from reconciler import catalog, engine, spec
from reconciler.aws.clients import Clients
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store
from tests.integration.conftest import REGION, Stack

WINDOW_CLOSES = dt.datetime(2026, 11, 25, 5, 0, tzinfo=dt.UTC)  # 06:00 in Berlin


def loaded(stack: Stack) -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": "night-shy"},
            "spec": {
                "stackName": stack.name,
                "region": REGION,
                "image": stack.new_image,
                "migration": {"check": "none"},
                "windows": [
                    {
                        "kind": "deny",
                        "schedule": "0 22 * * *",
                        "duration": "8h",
                        "timezone": "Europe/Berlin",
                    }
                ],
            },
        }
    )
    return catalog.LoadedSpec(doc, "deploy-specs/night-shy.yaml", "c" * 40, stale=False)


def test_the_rollout_starts_by_itself_when_the_deny_window_closes(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    now = [WINDOW_CLOSES - dt.timedelta(hours=2)]
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, Metrics(), clock=lambda: now[0])
        held = eng.step(loaded(stack))
        assert (held.phase, held.sent) == (Phase.WAITING, None)
        assert "2026-11-25T05:00:00Z" in held.message
        now[0] = WINDOW_CLOSES + dt.timedelta(seconds=1)
        started = eng.step(loaded(stack))
    assert (started.phase, started.sent) == (Phase.MIGRATING, "sent")
    cfn = boto3.client("cloudformation", region_name=REGION)
    params = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in cfn.describe_stacks(StackName=stack.name)["Stacks"][0]["Parameters"]
    }
    assert params["MigrationLcImageId"] == stack.new_image
