"""What a step of a real engine (against moto) reports: its metrics and its log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import structlog

from reconciler import catalog, engine, logs, spec
from reconciler.aws.clients import Clients
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store
from tests.integration.conftest import REGION, Stack

NAME = "biglearn-api"
REV = "d" * 40


def loaded(stack: Stack, image: str, **fields: Any) -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "stackName": stack.name,
                "region": REGION,
                "image": image,
                "migration": {"check": "none"},
                "capacity": {"api": 1, "migration": 1},
                **fields,
            },
        }
    )
    return catalog.LoadedSpec(doc, "deploy-specs/api.yaml", REV, stale=False)


def in_sync(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("reconciler_stack_in_sync", {"name": NAME})


def test_a_paused_stack_that_runs_its_spec_counts_as_in_sync(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    """reconciler_stack_in_sync compares live with desired, whatever the phase: 1 for a paused
    spec whose stack already runs its image, 0 for one whose stack does not."""
    paused = {"paused": {"reason": "change freeze"}}
    metrics = Metrics()
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, metrics)
        same = eng.step(loaded(stack, stack.old_image, **paused))
        assert same.phase == Phase.PAUSED
        assert in_sync(metrics) == 1
        other = eng.step(loaded(stack, stack.new_image, **paused))
        assert other.phase == Phase.PAUSED
        assert in_sync(metrics) == 0


def test_a_steps_log_line_carries_the_spec_stack_revision_and_phase(
    stack: Stack, clients: Clients, tmp_path: Path
) -> None:
    """The line of a step that sends an update names the spec, its stack, the revision
    (short) and the phase the step entered, so one grep follows a rollout."""
    with Store.in_state_dir(tmp_path) as store, structlog.testing.capture_logs() as lines:
        result = engine.Engine(clients, store, Metrics()).step(loaded(stack, stack.new_image))
    assert result.sent == "sent"
    (step,) = [line for line in lines if line["event"] == "step"]
    assert {k: step[k] for k in ("name", "stack", "revision", "phase", "sent")} == {
        "name": NAME,
        "stack": stack.name,
        "revision": REV[:12],
        "phase": str(result.phase),
        "sent": "sent",
    }


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The process's logging as `reconciler run` sets it up (JSON lines), into a buffer;
    put back afterwards, since configure() is process-wide."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield stream
    structlog.reset_defaults()
    root.handlers = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize("how", ["step", "preview"])
def test_a_migration_record_that_cannot_count_is_logged_with_the_spec_name(
    how: str, stack: Stack, clients: Clients, tmp_path: Path, json_log: io.StringIO
) -> None:
    """The warning comes from the AWS reads, which do not know the spec: the step (and the
    preview `plan` makes) binds its name, so the line says whose record it was."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="deploy-status")
    key = f"p/{stack.name}/{stack.new_image}.json"
    s3.put_object(Bucket="deploy-status", Key=key, Body=b"{")
    check = {"check": "s3", "location": "s3://deploy-status/p", "timeout": "30m"}
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, Metrics())
        wanted = loaded(stack, stack.new_image, migration=check)
        if how == "step":
            eng.step(wanted)
        else:
            eng.preview(wanted)
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    ignored = [line for line in lines if line["event"] == "migration record ignored"]
    assert ignored, lines
    assert {(line["name"], line["stack"], line["level"]) for line in ignored} == {
        (NAME, stack.name, "warning")
    }
    assert key in ignored[0]["error"]
