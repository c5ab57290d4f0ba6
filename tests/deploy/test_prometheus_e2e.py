"""A real Prometheus scrapes a real daemon playing the demo's failing scenario (issue 6, 7).

Debian's `prometheus` server, configured with docs/alerts/reconciler-rules.yaml and a
scrape job pointing at `reconciler demo --scenario migration-fails --keep-running`, must:
- have scraped `reconciler_stack_in_sync` (asked through its HTTP query API);
- fire ReconcilerRolloutFailed for the demo's stack;
- accept every query of the Grafana dashboard.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.deploykit import DASHBOARD, ROOT, RULES, tool

pytestmark = pytest.mark.e2e

STACK = "biglearn-api"  # the demo's spec name
DEADLINE = 150.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def demo_daemon(tmp_path: pathlib.Path) -> Iterator[str]:
    """host:port of a daemon playing the failing-migration demo, kept running afterwards."""
    log = (tmp_path / "demo.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "demo", "--scenario", "migration-fails",
         "--keep-running", "--timeout", "90"],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    output = tmp_path / "demo.log"
    try:
        found = None
        deadline = time.monotonic() + 60
        while found is None and proc.poll() is None and time.monotonic() < deadline:
            found = re.search(r"daemon at http://([\d.]+:\d+)", output.read_text())
            time.sleep(0.2)
        if found is None:
            pytest.fail(f"the demo did not start its daemon:\n{output.read_text()}")
        yield found.group(1)
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def prometheus(tmp_path: pathlib.Path, demo_daemon: str) -> Iterator[str]:
    """Base URL of a Prometheus scraping `demo_daemon` every second, with our rules."""
    binary = tool("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "reconciler", "static_configs": [{"targets": [demo_daemon]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w+")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(base, "/-/ready", raw=True), "Prometheus to be ready", proc, tmp_path)
        yield base
    finally:
        stop(proc)
        log.close()


def get(base: str, path: str, raw: bool = False, **params: str) -> Any:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
    except OSError:
        return None
    return body if raw else json.loads(body)


def wait_for(
    check: Callable[[], Any], what: str, proc: subprocess.Popen[str] | None, tmp: pathlib.Path
) -> Any:
    """`check()` once it is truthy; fails with the logs after DEADLINE or if `proc` exits."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(tmp.glob("*.log")))
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = get(base, "/api/v1/query", query=expr)
    if not answer or answer["status"] != "success":
        return []
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def firing(base: str, alertname: str) -> list[dict[str, Any]]:
    answer = get(base, "/api/v1/alerts") or {"data": {"alerts": []}}
    return [
        a
        for a in answer["data"]["alerts"]
        if a["labels"]["alertname"] == alertname and a["state"] == "firing"
    ]


def test_prometheus_scrapes_the_daemon_and_the_rollout_failed_alert_fires(
    prometheus: str, tmp_path: pathlib.Path
) -> None:
    in_sync = wait_for(
        lambda: query(prometheus, f'reconciler_stack_in_sync{{name="{STACK}"}}'),
        "reconciler_stack_in_sync to be scraped",
        None,
        tmp_path,
    )
    assert in_sync[0]["metric"]["job"] == "reconciler"
    assert in_sync[0]["value"][1] in ("0", "1")

    alerts = wait_for(
        lambda: firing(prometheus, "ReconcilerRolloutFailed"),
        "ReconcilerRolloutFailed to fire",
        None,
        tmp_path,
    )
    assert alerts[0]["labels"]["name"] == STACK
    assert alerts[0]["labels"]["severity"] == "warning"
    assert "failed" in alerts[0]["annotations"]["summary"]
    # The failed rollout left the stack out of sync, on its old image.
    assert query(prometheus, f'reconciler_stack_in_sync{{name="{STACK}"}} == 0')
    assert query(prometheus, f'reconciler_stack_info{{name="{STACK}", phase="Failed"}}')


def test_every_dashboard_query_is_accepted_by_prometheus(prometheus: str) -> None:
    data = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    rejected = {}
    for expr in exprs:
        concrete = (
            expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$stack", ".*")
        )
        answer = get(prometheus, "/api/v1/query", query=concrete)
        if not answer or answer["status"] != "success":
            rejected[expr] = answer
    assert not rejected
