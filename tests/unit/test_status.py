"""What `GET /api/v1/stacks`, `reconciler status` and the in-sync metric show of a stack."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest

from reconciler import cli, model, settings
from reconciler import status as view
from reconciler.model import Phase
from tests.unit import plannerkit
from tests.unit.plannerkit import NEW, OLD, REV

RENAMED = {"parameterNames": {"apiImage": "ApiAmi"}}


def status(deployment: Any = None, phase: Phase = Phase.IN_SYNC, **live: str) -> view.StackStatus:
    """A spec's status after a step that observed a stack with these parameter values."""
    params = {**plannerkit.params(api=NEW, mig=NEW), **live}
    stack = model.StackView("UPDATE_COMPLETE", params, plannerkit.T0, None)
    return view.StackStatus(
        "biglearn-api",
        "deploy-specs/a.yaml",
        REV,
        deployment or plannerkit.deployment(),
        phase=phase,
        observed=model.Observed(stack=stack),
    )


def test_the_live_image_is_read_through_the_specs_parameter_names() -> None:
    """A template whose image parameter is ApiAmi: the live image is ApiAmi's value, and the
    LcImageId some other parameter happens to be called is not looked at."""
    renamed = status(plannerkit.deployment(**RENAMED), ApiAmi=NEW, LcImageId=OLD)
    assert renamed.live_image == NEW
    assert renamed.to_json()["live"]["image"] == NEW


def test_reconciler_status_shows_the_renamed_image_parameter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table's LIVE column is the image the spec's parameterNames point at."""
    shown = status(plannerkit.deployment(**RENAMED), ApiAmi=NEW, LcImageId=OLD).to_json()
    monkeypatch.setattr(cli, "_daemon", lambda *a, **k: {"stacks": [shown]})
    args = argparse.Namespace(name=None, output="table")
    assert cli.cmd_status(args, settings.Settings()) == cli.EXIT_OK
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[3] == NEW


def test_a_paused_stack_that_runs_its_spec_is_in_sync() -> None:
    """In sync means live matches desired, whatever the phase."""
    assert status(phase=Phase.PAUSED).in_sync
    assert status(phase=Phase.AWAITING_APPROVAL).in_sync


@pytest.mark.parametrize(
    ("why", "live"),
    [
        ("another image", {"LcImageId": OLD}),
        ("the migration group still up", {"MigrationDesiredCapacity": "1"}),
        ("another API capacity", {"Asg1DesiredCapacity": "3"}),
        ("a pinned parameter differs", {"EnvName": "staging"}),
    ],
)
def test_a_stack_that_differs_from_its_spec_is_not_in_sync(why: str, live: dict[str, str]) -> None:
    assert not status(phase=Phase.PAUSED, **live).in_sync, why


def test_a_stack_mid_update_or_mid_rollout_is_not_in_sync() -> None:
    """Parameters read while CloudFormation applies them, or while a rollout of ours still
    runs (instances being replaced), do not make a stack in sync yet."""
    busy = status()
    assert busy.observed is not None and busy.observed.stack is not None
    busy.observed = model.Observed(
        stack=dataclasses.replace(busy.observed.stack, status="UPDATE_IN_PROGRESS")
    )
    assert not busy.in_sync
    rolling = status(phase=Phase.VERIFYING)
    rolling.memory = model.Memory(rollout=plannerkit.rollout(switched_at=plannerkit.T0))
    assert not rolling.in_sync


def test_a_stack_not_observed_is_not_in_sync() -> None:
    assert not view.StackStatus("a", "a.yaml", REV, plannerkit.deployment()).in_sync


def test_api_capacity_left_to_the_live_stack_is_not_compared() -> None:
    live_capacity = plannerkit.deployment(capacity={"api": "live"})
    assert status(live_capacity, Asg1DesiredCapacity="7").in_sync


SCALED = model.Drift("Asg1", "desiredCapacity", "1", "3")


def test_drift_is_null_before_the_first_judgement_then_a_list() -> None:
    s = status()
    assert s.to_json()["drift"] is None
    s.drift = ()
    assert s.to_json()["drift"] == []
    s.drift = (SCALED,)
    assert s.to_json()["drift"] == [
        {"resource": "Asg1", "field": "desiredCapacity", "expected": "1", "live": "3"}
    ]


def test_reconciler_status_shows_drift_on_a_line_under_its_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drifted = status()
    drifted.drift = (SCALED, model.Drift("MigrationAsg", "suspendedProcesses", "none", "Launch"))
    clean = dataclasses.replace(status(), name="other", drift=())
    shown = {"stacks": [drifted.to_json(), clean.to_json()]}
    monkeypatch.setattr(cli, "_daemon", lambda *a, **k: shown)
    assert cli.cmd_status(argparse.Namespace(name=None, output="table"), settings.Settings()) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("biglearn-api")
    assert lines[2].split() == [
        "drift:", "Asg1.desiredCapacity:", "expected", "1,", "live", "3;",
        "MigrationAsg.suspendedProcesses:", "expected", "none,", "live", "Launch",
    ]  # fmt: skip
    assert lines[3].startswith("other") and len(lines) == 4
