"""Alert rules: promtool-checked and -tested, documented, and on metrics that exist."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.deploykit import (
    CHART,
    RULES,
    RULES_TEST,
    RUNBOOK,
    exposed_metric_names,
    metric_names_in,
    tool,
)

# What issue 6 asks to alert on, by the alert that covers it.
REQUIRED = {
    "ReconcilerRolloutFailed",
    "ReconcilerStackOutOfSync",
    "ReconcilerMigrationTooLong",
    "ReconcilerGitStale",
    "ReconcilerSpecErrors",
    "ReconcilerDown",
    "ReconcilerAwsThrottling",
}


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    promtool = tool("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    promtool = tool("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    names = {rule["alert"] for rule in rules()}
    assert names >= REQUIRED
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert tested == names


def test_every_alert_has_a_summary_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^### (.+)$", runbook, re.MULTILINE)}
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["summary"]
        anchor = annotations["runbook_url"].split("#")[1]
        assert anchor == str(rule["alert"]).lower()
        assert anchor in anchors, f"docs/runbook.md has no '### {rule['alert']}' section"


def test_rules_use_only_metrics_the_daemon_exposes() -> None:
    exposed = exposed_metric_names()
    for rule in rules():
        unknown = metric_names_in(str(rule["expr"])) - exposed
        assert not unknown, f"{rule['alert']}: no such metric {unknown}"


def test_chart_ships_the_same_rules_file() -> None:
    copy = CHART / "files" / "reconciler-rules.yaml"
    assert copy.read_text() == RULES.read_text(), f"cp {RULES} {copy}"
