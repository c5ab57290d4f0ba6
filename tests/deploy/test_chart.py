"""The Helm chart renders, lints and validates against Kubernetes' schemas (issue 6, 3 and 6)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.deploykit import (
    CHART,
    KUBERNETES_VERSIONS,
    RULES,
    helm,
    production_values,
    render,
    tool,
)

# Kinds of the Prometheus Operator: kubernetes-validate has no schema for them.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
VALUE_SETS = {"default": dict, "production": production_values}


def by_kind(objects: list[dict[str, Any]], kind: str, name: str = "reconciler") -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_chart_lints_clean(values: str) -> None:
    h = helm()
    report = h.lint(str(CHART), VALUE_SETS[values](), strict=True, kube_version="v1.37.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == []


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_rendered_object_validates_strictly(
    values: str, kube_version: str, tmp_path: pathlib.Path
) -> None:
    objects = render(VALUE_SETS[values]())
    validate = tool("kubernetes-validate")
    files = []
    for i, obj in enumerate(objects):
        if obj["kind"] in CRD_KINDS:
            continue
        path = tmp_path / f"{i:02d}-{obj['kind']}.yaml"
        path.write_text(yaml.safe_dump(obj))
        files.append(str(path))
    assert files
    done = subprocess.run(
        [validate, "--strict", "-k", kube_version, "--no-warn", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_values_render_the_core_objects() -> None:
    kinds = sorted(o["kind"] for o in render())
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )


def test_production_values_render_everything() -> None:
    objects = render(production_values())
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    dashboards = [o for o in objects if o["metadata"]["name"].endswith("-dashboard")]
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards[0]["metadata"]["namespace"] == "monitoring"


def test_deployment_runs_non_root_on_a_read_only_root_with_state_on_a_volume() -> None:
    deployment = by_kind(render(production_values()), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/reconciler"] == "state"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "reconciler-state"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert container["resources"]["requests"]


def test_secrets_are_referenced_never_inlined() -> None:
    objects = render(production_values())
    assert not [o for o in objects if o["kind"] == "Secret"]
    (container,) = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["RECONCILER_WEBHOOK_SECRET"] == {
        "name": "reconciler-webhook",
        "key": "webhook-secret",
    }
    assert env["RECONCILER_TOKEN"] == {"name": "reconciler-token", "key": "token"}
    assert env["RECONCILER_FORGE_TOKEN"] == {"name": "reconciler-forge", "key": "token"}
    config = by_kind(objects, "ConfigMap")["data"]
    assert "StrictHostKeyChecking=yes" in config["GIT_SSH_COMMAND"]
    assert "/etc/reconciler/ssh/known_hosts" in config["GIT_SSH_COMMAND"]
    assert config["RECONCILER_REPO"] == "git@github.com:example/deploy-specs.git"
    assert config["RECONCILER_LISTEN"] == "0.0.0.0:9108"


def test_service_account_carries_the_irsa_role() -> None:
    account = by_kind(render(production_values()), "ServiceAccount")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role == "arn:aws:iam::123456789012:role/reconciler"


def test_prometheus_rule_carries_the_documented_rules() -> None:
    rule = by_kind(render(production_values()), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_scrapes_the_http_port() -> None:
    monitor = by_kind(render(production_values()), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


# --- bump pull requests: the forge and its token ---------------------------------------


def test_without_a_forge_the_chart_sets_no_forge_variables() -> None:
    objects = render()
    config = by_kind(objects, "ConfigMap")["data"]
    assert [k for k in config if k.startswith("RECONCILER_FORGE")] == []
    (container,) = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "env" not in container


def test_a_github_forge_takes_its_token_from_a_secret() -> None:
    forge = {
        "kind": "github",
        "apiUrl": "https://ghe.example.com/api/v3",
        "repo": "platform/deploy-specs",
        "tokenSecret": {"name": "forge", "key": "pat"},
    }
    objects = render({"forge": forge})
    config = by_kind(objects, "ConfigMap")["data"]
    assert {k: v for k, v in config.items() if k.startswith("RECONCILER_FORGE")} == {
        "RECONCILER_FORGE": "github",
        "RECONCILER_FORGE_API_URL": "https://ghe.example.com/api/v3",
        "RECONCILER_FORGE_REPO": "platform/deploy-specs",
    }
    (container,) = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [
        {
            "name": "RECONCILER_FORGE_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "forge", "key": "pat"}},
        }
    ]


def test_a_github_forge_without_a_token_secret_is_refused() -> None:
    h = helm()
    with pytest.raises(h.HelmError, match="tokenSecret"):
        render({"forge": {"kind": "github"}})


def test_templates_refuse_a_forge_without_a_token_too(tmp_path: pathlib.Path) -> None:
    h = helm()
    chart = tmp_path / "reconciler"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    with pytest.raises(h.HelmError, match="--forge github needs RECONCILER_FORGE_TOKEN"):
        h.Chart.load(str(chart)).render({"forge": {"kind": "github"}}, name="r", namespace="r")


@pytest.mark.parametrize(
    "forge",
    [{"kind": "gitlab"}, {"repo": "no-slash"}, {"apiUrl": "ghe.example.com/api/v3"}],
)
def test_schema_refuses_a_malformed_forge(forge: dict[str, str]) -> None:
    h = helm()
    with pytest.raises(h.HelmError):
        render({"forge": forge})


# --- replicaCount > 1 needs the lock table --------------------------------------------


def test_schema_refuses_more_than_one_replica_without_a_lock_table() -> None:
    h = helm()
    with pytest.raises(h.HelmError, match="lockTable"):
        render({"replicaCount": 2})


def test_templates_refuse_it_too_without_the_schema(tmp_path: pathlib.Path) -> None:
    # `helm install --skip-schema-validation` must not get around it either.
    h = helm()
    chart = tmp_path / "reconciler"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    with pytest.raises(h.HelmError, match="replicaCount > 1 needs lockTable"):
        h.Chart.load(str(chart)).render({"replicaCount": 3}, name="r", namespace="r")
    values = {"replicaCount": 3, "lockTable": "locks"}
    with pytest.raises(h.HelmError, match=r"replicaCount > 1 needs persistence\.enabled=false"):
        h.Chart.load(str(chart)).render(values, name="r", namespace="r")


def test_more_than_one_replica_with_a_lock_table_renders() -> None:
    values = {"replicaCount": 2, "lockTable": "reconciler-lock", "persistence": {"enabled": False}}
    objects = render(values)
    assert by_kind(objects, "Deployment")["spec"]["replicas"] == 2
    assert by_kind(objects, "ConfigMap")["data"]["RECONCILER_LOCK_TABLE"] == "reconciler-lock"


def test_more_than_one_replica_cannot_share_the_state_volume() -> None:
    h = helm()
    with pytest.raises(h.HelmError, match="persistence"):
        render({"replicaCount": 2, "lockTable": "us-east-1:reconciler-lock"})


def test_one_replica_needs_no_lock_table() -> None:
    assert "RECONCILER_LOCK_TABLE" not in by_kind(render(), "ConfigMap")["data"]


def test_schema_refuses_a_writable_root_filesystem() -> None:
    h = helm()
    with pytest.raises(h.HelmError):
        render({"securityContext": {"readOnlyRootFilesystem": False}})
