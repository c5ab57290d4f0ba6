"""The Grafana dashboard is valid JSON whose queries name only metrics that exist."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.deploykit import CHART, DASHBOARD, exposed_metric_names, metric_names_in


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", [])]


def test_dashboard_is_a_grafana_dashboard() -> None:
    data = dashboard()
    assert data["uid"] == "reconciler"
    assert data["title"]
    assert isinstance(data["schemaVersion"], int)
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["refId"] and t["expr"] for t in panel["targets"])
    variables = {v["name"] for v in data["templating"]["list"]}
    assert variables == {"datasource", "job", "stack"}


def test_every_query_names_only_metrics_that_exist() -> None:
    exposed = exposed_metric_names()
    for title, expr in queries():
        unknown = metric_names_in(expr) - exposed
        assert not unknown, f"panel {title!r}: no such metric {unknown}"


def test_dashboard_covers_what_issue_6_asks() -> None:
    used = set().union(*(metric_names_in(expr) for _, expr in queries()))
    assert {
        "reconciler_stack_info",  # stacks, phases, desired vs live image
        "reconciler_rollout_duration_seconds_bucket",  # rollout durations
        "reconciler_migration_running",  # migrations
        "reconciler_stack_failures",
        "reconciler_rollouts_total",  # failures
        "reconciler_git_last_success_timestamp_seconds",  # git freshness
        "reconciler_aws_requests_total",  # AWS calls by result
    } <= used


def test_chart_ships_the_same_dashboard() -> None:
    copy = CHART / "files" / "reconciler-dashboard.json"
    assert copy.read_text() == DASHBOARD.read_text(), f"cp {DASHBOARD} {copy}"
