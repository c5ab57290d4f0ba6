"""The fleet benchmark end to end at a small N: every process starts, every tool converges,
the proxy counts what each tool asks. Counts only, never times; slow (`make test-slow`)."""

from __future__ import annotations

import pathlib

import pytest

from tests.bench import fleet


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fleet_benchmark_small(tmp_path: pathlib.Path) -> None:
    n = 4
    result = fleet.measure(
        n, ["defaults", "apply", "throttled"], tmp_path, steady_intervals=0, timeout=300
    )
    runs = result["runs"]
    assert result["health_probe"]["in_service"], result["health_probe"]
    for name in ("defaults", "apply", "throttled"):
        row = runs[name]
        assert "error" not in row, row
        assert row["converged_in_moto"] == n, row
        assert row["records"] == n, row  # one record per stack, written by the worker
        assert row["requests_worker"] == n, row  # its puts, counted once per stack
        assert row["requests_tool"] >= 2 * n, row  # at least both phases' UpdateStack
        assert row["ops_tool"].get("cloudformation:UpdateStack", 0) >= 2 * n, row
    a, th = runs["defaults"], runs["throttled"]
    # The proxy and the daemon count the same requests.
    assert a["daemon_counted_requests"] == a["requests_tool"], a
    assert a["merge_to_first_update_s"] is not None
    assert th["failures_recorded"] == 0 and th["rollouts_failed"] == 0, th
    throttled = sum(v for k, v in th["errors"].items() if k.endswith(":throttled-injected"))
    assert throttled >= th["requests_tool"] // 3 - 1, th
    assert fleet.table(result).count("\n") > 5
