"""The metrics the contract promises (CONTRACT section 6), read back from the exposition."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.metrics import Metrics


def series(m: Metrics, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample named `metric` in the exposition, keyed by its sorted labels."""
    body, _ = m.exposition()
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == metric:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def observe(m: Metrics, name: str = "api", **changes: object) -> None:
    values: dict[str, object] = {
        "stack": "Stack1",
        "region": "us-east-1",
        "revision": "abc123",
        "phase": "InSync",
        "desired_image": "ami-1",
        "live_image": "ami-1",
        "in_sync": True,
        "paused": False,
        "migration_running": False,
    }
    values.update(changes)
    m.observe_stack(name, **values)  # type: ignore[arg-type]


def test_stack_info_keeps_one_series_per_name_when_labels_change() -> None:
    m = Metrics()
    observe(m, phase="InSync")
    observe(m, phase="Migrating", desired_image="ami-2")
    info = series(m, "reconciler_stack_info")
    assert list(info.values()) == [1.0]
    labels = dict(next(iter(info)))
    assert labels["phase"] == "Migrating"
    assert labels["desired_image"] == "ami-2"


def test_observe_stack_sets_state_gauges() -> None:
    m = Metrics()
    observe(m, in_sync=False, paused=True, migration_running=True, failures=3)
    key = (("name", "api"),)
    assert series(m, "reconciler_stack_in_sync") == {key: 0.0}
    assert series(m, "reconciler_stack_paused") == {key: 1.0}
    assert series(m, "reconciler_migration_running") == {key: 1.0}
    assert series(m, "reconciler_stack_failures") == {key: 3.0}


def test_a_known_stack_has_its_counters_at_zero() -> None:
    """Dashboards can rate() errors before the first error happens."""
    m = Metrics()
    observe(m)
    assert series(m, "reconciler_reconcile_total") == {
        (("name", "api"), ("result", "ok")): 0.0,
        (("name", "api"), ("result", "error")): 0.0,
    }
    assert len(series(m, "reconciler_stack_updates_total")) == 9
    assert set(series(m, "reconciler_rollouts_total").values()) == {0.0}


def test_reconcile_counts_and_times_the_step() -> None:
    m = Metrics()
    m.reconcile("api", "error", 0.02)
    assert series(m, "reconciler_reconcile_total")[(("name", "api"), ("result", "error"))] == 1.0
    buckets = series(m, "reconciler_reconcile_duration_seconds_bucket")
    assert buckets[(("le", "0.025"), ("name", "api"))] == 1.0
    assert buckets[(("le", "0.01"), ("name", "api"))] == 0.0
    assert (("le", "60.0"), ("name", "api")) in buckets


def test_stack_update_counts_by_phase_and_result() -> None:
    m = Metrics()
    m.stack_update("api", "switch", "noop")
    updates = series(m, "reconciler_stack_updates_total")
    assert updates[(("name", "api"), ("phase", "switch"), ("result", "noop"))] == 1.0


def test_label_values_outside_the_contract_are_refused() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="phase"):
        m.stack_update("api", "deploy", "ok")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="result"):
        m.reconcile("api", "fine", 1.0)  # type: ignore[arg-type]


def test_rollout_duration_buckets_reach_two_hours() -> None:
    m = Metrics()
    m.rollout("api", "succeeded", 90 * 60)
    m.rollout("api", "failed", None)
    buckets = series(m, "reconciler_rollout_duration_seconds_bucket")
    assert buckets[(("le", "60.0"), ("name", "api"))] == 0.0
    assert buckets[(("le", "7200.0"), ("name", "api"))] == 1.0
    assert series(m, "reconciler_rollout_duration_seconds_count") == {(("name", "api"),): 1.0}
    assert series(m, "reconciler_rollouts_total")[(("name", "api"), ("result", "failed"))] == 1.0


def test_git_fetch_ok_stamps_last_success_and_error_does_not() -> None:
    m = Metrics()
    m.git_fetch("ok", at=1000.0)
    m.git_fetch("error", at=2000.0)
    assert series(m, "reconciler_git_last_success_timestamp_seconds") == {(): 1000.0}
    assert series(m, "reconciler_git_fetch_total") == {
        (("result", "ok"),): 1.0,
        (("result", "error"),): 1.0,
    }


def test_spec_errors_replaces_the_whole_set() -> None:
    m = Metrics()
    m.spec_errors({"a.yaml": 2, "b.yaml": 1})
    m.spec_errors({"b.yaml": 3})
    assert series(m, "reconciler_spec_errors") == {(("file", "b.yaml"),): 3.0}


def test_forget_removes_every_series_of_the_name_and_no_other() -> None:
    m = Metrics()
    for name in ("api", "web"):
        observe(m, name)
        m.reconcile(name, "ok", 0.1)
        m.rollout(name, "succeeded", 600)
        m.stack_update(name, "migrate", "ok")
    m.forget("api")
    body, _ = m.exposition()
    assert 'name="api"' not in body.decode()
    assert 'name="web"' in body.decode()


def test_forgotten_name_comes_back_cleanly_when_observed_again() -> None:
    m = Metrics()
    observe(m, phase="Failed")
    m.forget("api")
    observe(m, phase="InSync")
    info = series(m, "reconciler_stack_info")
    assert [dict(k)["phase"] for k in info] == ["InSync"]


def test_each_instance_has_its_own_registry() -> None:
    """No globals: two daemons in one process do not see each other's series."""
    a, b = Metrics(), Metrics()
    a.aws_request("s3", "GetObject", "ok")
    assert series(b, "reconciler_aws_requests_total") == {}
    assert series(a, "reconciler_aws_requests_total") == {
        (("operation", "GetObject"), ("result", "ok"), ("service", "s3")): 1.0
    }


def test_aws_rate_budgets_are_read_at_scrape_time() -> None:
    """The gauge and the wait counter show each (service, region) as the callback says
    now; two accounts with the same service and region show the lower rate, summed waits."""
    budgets = [("cloudformation", "us-east-1", 50.0, 0.0)]
    m = Metrics()
    assert series(m, "reconciler_aws_rate_limit") == {}
    m.watch_budgets(lambda: budgets)
    budgets[:] = [
        ("cloudformation", "us-east-1", 25.0, 1.5),
        ("cloudformation", "us-east-1", 50.0, 0.5),
        ("ec2", "eu-west-1", 50.0, 0.0),
    ]
    cfn = (("region", "us-east-1"), ("service", "cloudformation"))
    ec2 = (("region", "eu-west-1"), ("service", "ec2"))
    assert series(m, "reconciler_aws_rate_limit") == {cfn: 25.0, ec2: 50.0}
    assert series(m, "reconciler_aws_rate_wait_seconds_total") == {cfn: 2.0, ec2: 0.0}


def test_exposition_has_build_info_and_no_created_series() -> None:
    m = Metrics(version="1.2.3")
    body, content_type = m.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert series(m, "reconciler_build_info") == {(("version", "1.2.3"),): 1.0}
    assert b"_created" not in body


def test_promtool_finds_nothing_to_complain_about() -> None:
    """`promtool check metrics` lints names, types, units and help texts."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "PROMTOOL NOT ON PATH: the exposition lint did not run; "
            "install Debian's `prometheus` package (the Makefile does)"
        )
    m = Metrics()
    observe(m)
    m.reconcile("api", "ok", 0.1)
    m.rollout("api", "succeeded", 600)
    m.git_fetch("ok")
    m.spec_errors({"deploy-specs/api.yaml": 1})
    m.aws_request("cloudformation", "UpdateStack", "ok")
    m.http_request("metrics", 200)
    m.watch_budgets(lambda: [("cloudformation", "us-east-1", 25.0, 1.5)])
    body, _ = m.exposition()
    done = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, b"")


def fleet_series(m: Metrics) -> dict[tuple[str, ...], float]:
    """Every reconciler_fleet_* sample, by (metric, label values)."""
    body, _ = m.exposition()
    return {
        (s.name, *(s.labels[k] for k in ("fleet", "step", "phase") if k in s.labels)): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name.startswith("reconciler_fleet_")
    }


def test_a_fleets_gauges_are_replaced_whole_and_a_fleet_let_go_loses_its_series() -> None:
    """A (step, phase) no member is in any more goes (not 0 forever); keep_fleets drops
    every series of a fleet no longer in force and leaves the others."""
    m = Metrics()
    m.observe_fleet("api", {(1, "InSync"): 1, (2, "Waiting"): 3}, halted=False)
    m.observe_fleet("web", {(1, "Migrating"): 1}, halted=True)
    m.observe_fleet("api", {(1, "InSync"): 1, (2, "Migrating"): 1, (2, "Waiting"): 2}, False)
    assert fleet_series(m) == {
        ("reconciler_fleet_members", "api", "1", "InSync"): 1.0,
        ("reconciler_fleet_members", "api", "2", "Migrating"): 1.0,
        ("reconciler_fleet_members", "api", "2", "Waiting"): 2.0,
        ("reconciler_fleet_halted", "api"): 0.0,
        ("reconciler_fleet_members", "web", "1", "Migrating"): 1.0,
        ("reconciler_fleet_halted", "web"): 1.0,
    }
    m.keep_fleets({"web"})
    assert fleet_series(m) == {
        ("reconciler_fleet_members", "web", "1", "Migrating"): 1.0,
        ("reconciler_fleet_halted", "web"): 1.0,
    }
    m.keep_fleets(set())
    assert fleet_series(m) == {}


def test_stack_drifted_is_1_while_a_managed_group_drifted() -> None:
    m = Metrics()
    observe(m)
    assert series(m, "reconciler_stack_drifted") == {(("name", "api"),): 0.0}
    observe(m, drifted=True)
    assert series(m, "reconciler_stack_drifted") == {(("name", "api"),): 1.0}
    m.forget("api")
    assert series(m, "reconciler_stack_drifted") == {}
