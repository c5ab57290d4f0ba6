"""drift.judge: what counts as a managed group changed outside CloudFormation, and when it
is not judged at all."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import drift, model, spec
from reconciler.model import Drift
from tests.unit.plannerkit import deployment, stack

LT_API = drift.launch_template("lt-0api", "2")
LT_MIGRATION = drift.launch_template("lt-0mig", "2")
BASELINE = {"Asg1": LT_API, "MigrationAsg": LT_MIGRATION}


def a_spec(**overrides: Any) -> spec.Spec:
    return deployment(**overrides).spec


def groups(
    api: drift.Group | None = None, migration: drift.Group | None = None
) -> dict[str, drift.Group]:
    """Both managed groups as CloudFormation left them (API at 1, migration at 0)."""
    return {
        "Asg1": api or drift.Group(LT_API, 1),
        "MigrationAsg": migration or drift.Group(LT_MIGRATION, 0),
    }


def judged(
    found: dict[str, drift.Group] | None = None,
    sp: spec.Spec | None = None,
    baseline: dict[str, str] | None = None,
    **facts: Any,
) -> tuple[Drift, ...] | None:
    view = facts.pop("view", stack())
    verdict = drift.judge(
        sp or a_spec(),
        drift.Facts(view, groups() if found is None else found, **facts),
        BASELINE if baseline is None else baseline,
    )
    return verdict.drift


def test_groups_as_the_stack_says_have_no_drift() -> None:
    assert judged() == ()


def test_a_launch_template_version_changed_by_hand_is_drift() -> None:
    found = groups(api=drift.Group(drift.launch_template("lt-0api", "3"), 1))
    assert judged(found) == (
        Drift("Asg1", "launchTemplate", "lt-0api version 2", "lt-0api version 3"),
    )


def test_another_launch_template_on_the_migration_group_is_drift() -> None:
    found = groups(migration=drift.Group(drift.launch_template("lt-0other", "1"), 0))
    assert judged(found) == (
        Drift("MigrationAsg", "launchTemplate", "lt-0mig version 2", "lt-0other version 1"),
    )


def test_a_launch_configuration_is_compared_as_the_group_has_it() -> None:
    was = drift.launch_configuration("api-lc-1")
    found = groups(api=drift.Group(drift.launch_configuration("api-lc-2"), 1))
    assert judged(found, baseline={"Asg1": was}) == (
        Drift(
            "Asg1",
            "launchTemplate",
            "launch configuration api-lc-1",
            "launch configuration api-lc-2",
        ),
    )


def test_the_first_judgement_records_the_launch_templates_as_the_baseline() -> None:
    """What the group has when the stack is first seen settled is what CloudFormation set
    (drift made while nobody watched is the baseline)."""
    found = groups(api=drift.Group(drift.launch_template("lt-0api", "7"), 1))
    verdict = drift.judge(a_spec(), drift.Facts(stack(), found), {})
    assert verdict.drift == ()
    assert verdict.baseline == {"Asg1": "lt-0api version 7", "MigrationAsg": LT_MIGRATION}


def test_a_recorded_baseline_is_kept_not_replaced_by_the_live_group() -> None:
    found = groups(api=drift.Group(drift.launch_template("lt-0api", "3"), 1))
    verdict = drift.judge(a_spec(), drift.Facts(stack(), found), BASELINE)
    assert verdict.baseline == BASELINE


def test_a_group_without_launch_template_or_configuration_is_not_judged_on_it() -> None:
    assert judged(groups(api=drift.Group(None, 1))) == ()


def test_a_desired_capacity_set_by_hand_is_drift_against_the_stacks_parameter() -> None:
    found = groups(api=drift.Group(LT_API, 3))
    assert judged(found) == (Drift("Asg1", "desiredCapacity", "1", "3"),)


def test_the_expected_capacity_is_the_stacks_parameter_not_the_specs() -> None:
    """The template sets DesiredCapacity from the parameter; a spec not applied yet (a scale
    update due) is not drift of the group."""
    found = groups(api=drift.Group(LT_API, 2))
    assert judged(found, view=stack(api_cap=2), sp=a_spec(capacity={"api": 5})) == ()


def test_with_live_capacity_the_api_groups_capacity_is_never_drift() -> None:
    found = groups(api=drift.Group(LT_API, 9))
    assert judged(found, sp=a_spec(capacity={"api": "live"})) == ()


def test_the_migration_groups_capacity_is_judged_whatever_the_api_capacity() -> None:
    found = groups(migration=drift.Group(LT_MIGRATION, 1))
    assert judged(found, sp=a_spec(capacity={"api": "live"})) == (
        Drift("MigrationAsg", "desiredCapacity", "0", "1"),
    )


def test_a_capacity_parameter_without_a_number_judges_no_capacity() -> None:
    view = stack()
    view = model.StackView(view.status, {**view.parameters, "Asg1DesiredCapacity": ""})
    assert judged(groups(api=drift.Group(LT_API, 4)), view=view) == ()


def test_processes_suspended_by_hand_are_drift() -> None:
    found = groups(api=drift.Group(LT_API, 1, frozenset({"Launch", "AZRebalance"})))
    assert judged(found) == (Drift("Asg1", "suspendedProcesses", "none", "AZRebalance, Launch"),)


def test_processes_the_daemon_suspended_are_not_drift() -> None:
    owned = frozenset({"AlarmNotification", "AZRebalance"})
    found = groups(api=drift.Group(LT_API, 1, owned | {"Terminate"}))
    assert judged(found, scaling_owned=owned) == (
        Drift("Asg1", "suspendedProcesses", "none", "Terminate"),
    )


def test_the_daemons_processes_are_its_own_only_on_the_api_group() -> None:
    owned = frozenset({"AZRebalance"})
    found = groups(migration=drift.Group(LT_MIGRATION, 0, owned))
    assert judged(found, scaling_owned=owned) == (
        Drift("MigrationAsg", "suspendedProcesses", "none", "AZRebalance"),
    )


def test_custom_resource_and_parameter_names_are_followed() -> None:
    sp = a_spec(
        resourceNames={"apiGroup": "Web", "migrationGroup": "Jobs"},
        parameterNames={"apiCapacity": "WebCount", "migrationCapacity": "JobCount"},
    )
    view = model.StackView("UPDATE_COMPLETE", {"WebCount": "2", "JobCount": "0"})
    found = {"Web": drift.Group(LT_API, 2), "Jobs": drift.Group(LT_MIGRATION, 1)}
    assert judged(found, sp=sp, view=view, baseline={"Web": LT_API, "Jobs": LT_MIGRATION}) == (
        Drift("Jobs", "desiredCapacity", "0", "1"),
    )


def test_a_group_not_found_is_not_judged_the_other_is() -> None:
    found = {"Asg1": drift.Group(LT_API, 3)}
    assert judged(found) == (Drift("Asg1", "desiredCapacity", "1", "3"),)


def test_with_no_group_found_nothing_is_judged() -> None:
    assert judged({}) is None


@pytest.mark.parametrize(
    "status", ["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_FAILED"]
)
def test_a_stack_that_is_not_complete_is_not_judged(status: str) -> None:
    found = groups(api=drift.Group(LT_API, 3))
    assert judged(found, view=stack(status=status)) is None


@pytest.mark.parametrize(
    "status", ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"]
)
def test_every_complete_status_is_judged(status: str) -> None:
    assert judged(groups(api=drift.Group(LT_API, 3)), view=stack(status=status)) == (
        Drift("Asg1", "desiredCapacity", "1", "3"),
    )


def test_an_update_of_ours_pending_is_not_judged() -> None:
    assert judged(groups(api=drift.Group(LT_API, 3)), pending=True) is None


def test_a_rollout_of_ours_under_way_is_not_judged() -> None:
    assert judged(groups(api=drift.Group(LT_API, 3)), rolling_out=True) is None


def test_not_judged_keeps_the_baseline() -> None:
    verdict = drift.judge(a_spec(), drift.Facts(stack(), groups(), pending=True), BASELINE)
    assert verdict == drift.Verdict(None, BASELINE)


def test_a_drift_describes_itself_for_people() -> None:
    d = Drift("Asg1", "desiredCapacity", "1", "3")
    assert d.describe() == "Asg1.desiredCapacity: expected 1, live 3"


# --- properties -------------------------------------------------------------------------

launches = st.sampled_from([LT_API, drift.launch_template("lt-0api", "3"), None])
processes = st.frozensets(st.sampled_from(["AZRebalance", "Launch", "AlarmNotification"]))
found_groups = st.builds(
    lambda api, mig, cap, mcap, susp, msusp: {
        "Asg1": drift.Group(api, cap, susp),
        "MigrationAsg": drift.Group(mig, mcap, msusp),
    },
    api=launches,
    mig=st.sampled_from([LT_MIGRATION, None]),
    cap=st.integers(0, 3),
    mcap=st.integers(0, 2),
    susp=processes,
    msusp=processes,
)


@settings(max_examples=300, deadline=None)
@given(
    found=found_groups,
    status=st.sampled_from(["UPDATE_COMPLETE", "UPDATE_IN_PROGRESS", "ROLLBACK_COMPLETE"]),
    pending=st.booleans(),
    rolling_out=st.booleans(),
    owned=processes,
    api=st.sampled_from([1, 2, "live"]),
)
def test_a_verdict_is_none_exactly_when_the_stack_is_not_settled(
    found: dict[str, drift.Group],
    status: str,
    pending: bool,
    rolling_out: bool,
    owned: frozenset[str],
    api: int | str,
) -> None:
    """And when judged: only the three fields, only the two groups, never our processes,
    never the API capacity with `live`."""
    facts = drift.Facts(stack(status=status), found, pending, rolling_out, owned)
    verdict = drift.judge(a_spec(capacity={"api": api}), facts, BASELINE)
    if not drift.settled(facts.stack, pending, rolling_out):
        assert verdict.drift is None
        return
    assert verdict.drift is not None
    for d in verdict.drift:
        assert d.resource in ("Asg1", "MigrationAsg")
        assert d.field in ("launchTemplate", "desiredCapacity", "suspendedProcesses")
        assert d.expected != d.live
        if d.field == "suspendedProcesses" and d.resource == "Asg1":
            assert not set(d.live.split(", ")) & owned
        assert not (api == "live" and d.resource == "Asg1" and d.field == "desiredCapacity")
