"""CONTRACT section 2 as a table: given this stack and memory, the planner does that."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from reconciler import model, planner
from reconciler.model import Phase
from reconciler.reasons import Reason
from tests.unit.plannerkit import (
    NEW,
    NEWER,
    OLD,
    REV,
    REV2,
    T0,
    deployment,
    healthy,
    minutes,
    observed,
    params,
    pending,
    phase1_live_stack,
    record,
    rollout,
    stack,
)


def decide(
    obs: model.Observed,
    memory: model.Memory | None = None,
    revision: str = REV,
    now: dt.datetime | None = None,
    **spec_overrides: object,
) -> model.Decision:
    return planner.plan(
        deployment(**spec_overrides),  # type: ignore[arg-type]
        revision,
        obs,
        memory or model.Memory(),
        now or T0,
    )


def kinds(decision: model.Decision) -> list[str]:
    return [type(e).__name__ for e in decision.effects]


# --- phase 1 --------------------------------------------------------------------------


def test_a_new_image_starts_phase_1_on_the_migration_group_only() -> None:
    d = decide(observed())
    assert d.phase == Phase.MIGRATING
    assert d.update is not None and d.update.kind == "migrate"
    assert d.update.changes == {"MigrationLcImageId": NEW, "MigrationDesiredCapacity": "1"}
    assert kinds(d) == ["StartRollout", "SetPending"]


def test_phase_1_sends_every_template_parameter_untouched_ones_as_use_previous() -> None:
    d = decide(observed())
    assert d.update is not None
    assert sorted(n for n, _ in d.update.parameters) == sorted(params())
    assert dict(d.update.parameters)["LcImageId"] is None
    assert dict(d.update.parameters)["EnvName"] is None


def test_the_migration_capacity_of_the_spec_is_used_in_phase_1() -> None:
    d = decide(observed(), capacity={"migration": 3})
    assert d.update is not None and d.update.changes["MigrationDesiredCapacity"] == "3"


# --- the gate -------------------------------------------------------------------------


def phase1_live(rec: model.MigrationRecord | None = None) -> model.Observed:
    return observed(stack(mig=NEW, mig_cap=1), record=rec)


MIGRATING = model.Memory(rollout=rollout())


def test_without_a_record_the_rollout_waits_in_migrating() -> None:
    d = decide(phase1_live(), MIGRATING)
    assert (d.phase, d.update) == (Phase.MIGRATING, None)


def test_a_running_record_shows_its_progress() -> None:
    d = decide(phase1_live(record("running")), MIGRATING)
    assert d.phase == Phase.MIGRATING and "40/40" in d.message and d.update is None


def test_a_succeeded_record_switches_the_api_group_with_pins_and_migration_stopped() -> None:
    d = decide(phase1_live(record("succeeded")), MIGRATING)
    assert d.phase == Phase.UPDATING_API
    assert d.update is not None and d.update.kind == "switch"
    assert d.update.changes == {
        "LcImageId": NEW,
        "Asg1DesiredCapacity": "1",
        "MigrationDesiredCapacity": "0",
        "EnvName": "prod",
    }
    assert "MarkRollout" in kinds(d)


def test_a_record_written_before_phase_1_started_does_not_count() -> None:
    d = decide(phase1_live(record("succeeded", at=T0 - minutes(20))), MIGRATING)
    assert (d.phase, d.update) == (Phase.MIGRATING, None)


def test_a_record_for_another_image_does_not_count() -> None:
    d = decide(phase1_live(record("succeeded", image=NEWER)), MIGRATING)
    assert (d.phase, d.update) == (Phase.MIGRATING, None)


def test_a_failed_record_fails_the_rollout_and_stops_the_migration_group() -> None:
    d = decide(phase1_live(record("failed")), MIGRATING)
    assert d.phase == Phase.FAILED
    assert d.update is not None and d.update.changes == {"MigrationDesiredCapacity": "0"}
    assert "RecordFailure" in kinds(d) and "FinishRollout" in kinds(d)
    assert "LcImageId" not in d.update.changes


def test_a_migration_that_outlives_its_timeout_fails() -> None:
    d = decide(phase1_live(record("running")), MIGRATING, now=T0 + minutes(25))
    assert d.phase == Phase.FAILED and "30m" in d.message


def test_check_none_lets_the_completed_stack_update_gate() -> None:
    d = decide(phase1_live(), MIGRATING, migration={"check": "none", "location": None})
    assert d.update is not None and d.update.kind == "switch"


def test_phase_1_live_without_memory_is_adopted_from_the_stack_update_time() -> None:
    view = stack(mig=NEW, mig_cap=1, last_updated=T0 - minutes(5))
    d = decide(observed(view, record=record("succeeded", at=T0 - minutes(1))))
    assert d.update is not None and d.update.kind == "switch"
    assert kinds(d)[0] == "StartRollout"


def test_adoption_still_ignores_a_record_older_than_the_stack_update() -> None:
    view = stack(mig=NEW, mig_cap=1, last_updated=T0 - minutes(5))
    d = decide(observed(view, record=record("succeeded", at=T0 - minutes(9))))
    assert (d.phase, d.update) == (Phase.MIGRATING, None)


# --- approval -------------------------------------------------------------------------


def test_approve_after_migration_holds_until_approved() -> None:
    d = decide(phase1_live(record()), MIGRATING, rollout={"approveAfterMigration": True})
    assert (d.phase, d.update) == (Phase.AWAITING_APPROVAL, None)


def test_an_approval_for_the_image_releases_the_switch() -> None:
    memory = dataclasses.replace(MIGRATING, approved_image=NEW)
    d = decide(phase1_live(record()), memory, rollout={"approveAfterMigration": True})
    assert d.update is not None and d.update.kind == "switch"


def test_an_approval_for_another_image_does_not_release_it() -> None:
    memory = dataclasses.replace(MIGRATING, approved_image=NEWER)
    d = decide(phase1_live(record()), memory, rollout={"approveAfterMigration": True})
    assert d.phase == Phase.AWAITING_APPROVAL


# --- capacities and pins --------------------------------------------------------------


def test_capacity_live_switches_with_the_groups_current_desired_capacity() -> None:
    obs = dataclasses.replace(phase1_live(record()), api_desired_capacity=3)
    d = decide(obs, MIGRATING, capacity={"api": "live"})
    assert d.update is not None and d.update.changes["Asg1DesiredCapacity"] == "3"


def test_capacity_live_never_scales_an_in_sync_stack() -> None:
    obs = observed(stack(api=NEW, mig=NEW, api_cap=1), capacity=4, instances=healthy(NEW, 4))
    d = decide(obs, capacity={"api": "live"})
    assert (d.phase, d.update) == (Phase.IN_SYNC, None)


def test_only_a_capacity_change_is_one_scale_update_without_migration() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(NEW))
    d = decide(obs, capacity={"api": 4})
    assert d.update is not None and d.update.kind == "scale"
    assert d.update.changes == {"Asg1DesiredCapacity": "4"}


def test_only_a_pinned_parameter_change_is_one_scale_update() -> None:
    obs = observed(stack(api=NEW, mig=NEW, env="staging"), instances=healthy(NEW))
    d = decide(obs)
    assert d.update is not None and d.update.changes == {"EnvName": "prod"}


def test_a_stack_as_specified_is_in_sync_and_sends_nothing() -> None:
    d = decide(observed(stack(api=NEW, mig=NEW), instances=healthy(NEW)))
    assert (d.phase, d.update, d.effects) == (Phase.IN_SYNC, None, ())


# --- paused ---------------------------------------------------------------------------


def test_a_paused_spec_sends_nothing() -> None:
    d = decide(observed(), paused={"reason": "incident 42"})
    assert (d.phase, d.update) == (Phase.PAUSED, None)
    assert "incident 42" in d.message


def test_a_pause_whose_until_passed_no_longer_holds() -> None:
    d = decide(observed(), paused={"reason": "x", "until": "2026-11-26T09:00:00Z"})
    assert d.phase == Phase.MIGRATING and d.update is not None


def test_a_runtime_pause_holds_and_expires() -> None:
    pause = model.RuntimePause("on call", T0 - minutes(5), until=T0 + minutes(5))
    held = decide(observed(), model.Memory(runtime_pause=pause))
    assert (held.phase, held.update) == (Phase.PAUSED, None)
    later = decide(observed(), model.Memory(runtime_pause=pause), now=T0 + minutes(6))
    assert later.update is not None and kinds(later)[0] == "ClearRuntimePause"


# --- busy and broken ------------------------------------------------------------------


def test_a_stack_busy_with_someone_elses_update_waits() -> None:
    d = decide(observed(stack("UPDATE_IN_PROGRESS")))
    assert (d.phase, d.update) == (Phase.WAITING, None)


def test_a_stack_busy_with_our_update_reports_our_phase() -> None:
    memory = model.Memory(rollout=rollout(), pending=pending("migrate"))
    d = decide(observed(stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")), memory)
    assert (d.phase, d.update) == (Phase.MIGRATING, None)


def test_an_update_in_progress_longer_than_the_rollout_timeout_fails() -> None:
    memory = model.Memory(rollout=rollout(), pending=pending("switch", at=T0 - minutes(50)))
    d = decide(observed(stack("UPDATE_IN_PROGRESS")), memory)
    assert d.phase == Phase.FAILED and d.update is None


@pytest.mark.parametrize("status", sorted(planner.NEEDS_PERSON))
def test_a_stack_that_needs_a_person_is_blocked(status: str) -> None:
    d = decide(observed(stack(status)))
    assert (d.phase, d.update) == (Phase.BLOCKED, None)
    assert status in d.message


def test_a_missing_stack_is_blocked() -> None:
    d = decide(model.Observed(stack=None))
    assert d.phase == Phase.BLOCKED and "not found" in d.message


def test_a_template_without_the_named_parameters_is_blocked() -> None:
    d = decide(observed(), parameterNames={"apiImage": "ImageId"})
    assert d.phase == Phase.BLOCKED and "ImageId" in d.message


def test_a_pinned_parameter_the_template_lacks_is_blocked() -> None:
    d = decide(observed(), parameters={"Nope": "1"})
    assert d.phase == Phase.BLOCKED and "Nope" in d.message


# --- settling what we sent ------------------------------------------------------------


def test_an_applied_pending_update_is_cleared_and_the_rollout_goes_on() -> None:
    memory = model.Memory(
        rollout=rollout(),
        pending=pending("migrate", MigrationLcImageId=NEW, MigrationDesiredCapacity="1"),
    )
    d = decide(phase1_live(), memory, now=T0 + minutes(1))
    assert d.phase == Phase.MIGRATING and kinds(d)[0] == "ClearPending"


def test_a_rolled_back_update_fails_and_holds() -> None:
    # Issue 13: CloudFormation's verdict (an alarm trigger, a failed resource) is sticky.
    view = stack("UPDATE_ROLLBACK_COMPLETE", last_updated=T0, reason="Instance failed")
    memory = model.Memory(
        rollout=rollout(), pending=pending("migrate", at=T0, MigrationLcImageId=NEW)
    )
    d = decide(observed(view), memory, now=T0 + minutes(2))
    assert d.phase == Phase.FAILED and "rolled back" in d.message and "Instance failed" in d.message
    failure = next(e for e in d.effects if isinstance(e, model.RecordFailure)).failure
    assert failure.next_retry_at == planner.HELD


def test_a_pending_update_that_never_reached_the_stack_is_resent_with_the_same_token() -> None:
    first = decide(observed())
    assert first.update is not None
    lost = next(e for e in first.effects if isinstance(e, model.SetPending)).pending
    memory = model.Memory(rollout=rollout(phase1_started_at=T0), pending=lost)
    again = decide(observed(), memory, now=T0 + minutes(1))
    assert again.update is not None and again.update.token == first.update.token


# --- failures and retries -------------------------------------------------------------


def failed(revision: str = REV, count: int = 1) -> model.Memory:
    f = model.Failure(
        count, "boom", T0 - minutes(1), T0 + minutes(1), revision, NEW, Reason.UPDATE_REFUSED
    )
    return model.Memory(failure=f)


def test_a_failure_backs_off_until_its_retry_time() -> None:
    d = decide(observed(), failed())
    assert (d.phase, d.update) == (Phase.FAILED, None)


def test_after_the_backoff_the_rollout_is_retried_with_a_new_token() -> None:
    fresh = decide(observed())
    retried = decide(observed(), failed(), now=T0 + minutes(2))
    assert retried.update is not None and fresh.update is not None
    assert retried.update.token != fresh.update.token


def test_a_new_revision_retries_at_once() -> None:
    d = decide(observed(), failed(revision=REV), revision=REV2)
    assert d.update is not None and kinds(d)[0] == "ClearFailure"


def test_backoff_doubles_and_is_capped() -> None:
    policy = planner.Policy(minutes(1), minutes(10))
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5, 50)] == [
        minutes(1),
        minutes(2),
        minutes(4),
        minutes(8),
        minutes(10),
        minutes(10),
    ]


def test_repeated_failures_count_up() -> None:
    d = decide(
        phase1_live(record("failed")),
        dataclasses.replace(failed(count=3), rollout=rollout()),
        now=T0 + minutes(2),
    )
    failure = next(e for e in d.effects if isinstance(e, model.RecordFailure)).failure
    assert failure.count == 4


@pytest.mark.parametrize("code", [Reason.MIGRATION_FAILED, Reason.MIGRATION_TIMED_OUT])
def test_a_stored_migration_failure_whose_stop_was_lost_stops_the_group(code: Reason) -> None:
    """Dead after storing the failure, before sending the stop: the next step sends it."""
    f = model.Failure(1, "boom", T0 - minutes(1), T0 + minutes(1), REV, NEW, code)
    memory = model.Memory(rollout=rollout(result="failed", finished_at=T0), failure=f)
    d = decide(phase1_live(), memory)
    assert d.phase == Phase.FAILED and d.reason == code
    assert d.update is not None and d.update.changes == {"MigrationDesiredCapacity": "0"}
    assert "stopping the migration group" in d.message
    # Once stopped, the failure backs off as before and sends nothing.
    stopped = decide(observed(stack(mig=NEW, mig_cap=0)), memory)
    assert (stopped.phase, stopped.update) == (Phase.FAILED, None)


def test_another_failure_leaves_a_running_migration_group_alone() -> None:
    done = rollout(result="failed", finished_at=T0 - minutes(1))
    d = decide(phase1_live(), dataclasses.replace(failed(), rollout=done))
    assert (d.phase, d.update) == (Phase.FAILED, None)


def test_a_retry_after_a_rolled_back_switch_does_not_rerun_migrations() -> None:
    done = rollout(migrated_at=T0 - minutes(5), result="failed", finished_at=T0 - minutes(2))
    memory = dataclasses.replace(failed(), rollout=done)
    d = decide(phase1_live(), memory, now=T0 + minutes(2))
    assert d.update is not None and d.update.kind == "switch"


# --- moving targets -------------------------------------------------------------------


def test_a_target_changed_mid_rollout_supersedes_and_migrates_the_new_image() -> None:
    obs = observed(stack(mig=NEW, mig_cap=1))
    d = decide(obs, MIGRATING, image=NEWER)
    assert d.update is not None and d.update.changes["MigrationLcImageId"] == NEWER
    assert kinds(d)[:2] == ["FinishRollout", "StartRollout"]


def test_a_revert_to_the_running_image_ends_the_rollout_and_stops_migrations() -> None:
    obs = observed(stack(mig=NEW, mig_cap=1))
    d = decide(obs, MIGRATING, image=OLD)
    assert d.update is not None and d.update.changes == {"MigrationDesiredCapacity": "0"}
    assert kinds(d)[0] == "FinishRollout"


def test_a_revert_after_a_finished_rollout_is_a_full_two_phase_rollout() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(NEW))
    d = decide(obs, image=OLD)
    assert d.update is not None and d.update.kind == "migrate"


# --- verify ---------------------------------------------------------------------------


SWITCHED = model.Memory(rollout=rollout(migrated_at=T0 - minutes(5), switched_at=T0 - minutes(1)))


def test_verify_waits_while_instances_run_the_old_image() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    assert decide(obs, SWITCHED).phase == Phase.VERIFYING


def test_verify_waits_for_load_balancer_health() -> None:
    sick = (model.Instance("i-1", NEW, "InService", False),)
    assert (
        decide(observed(stack(api=NEW, mig=NEW), instances=sick), SWITCHED).phase == Phase.VERIFYING
    )


def test_verified_rollout_succeeds() -> None:
    d = decide(observed(stack(api=NEW, mig=NEW), instances=healthy(NEW)), SWITCHED)
    assert d.phase == Phase.IN_SYNC and kinds(d) == ["FinishRollout"]


def test_verify_fails_after_the_rollout_timeout() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    d = decide(obs, SWITCHED, now=T0 + minutes(50))
    assert d.phase == Phase.FAILED


def test_without_verify_health_the_switch_completes_the_rollout() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    d = decide(obs, SWITCHED, rollout={"verifyHealth": False})
    assert d.phase == Phase.IN_SYNC


# --- tokens ---------------------------------------------------------------------------


def test_tokens_are_valid_for_aws_and_deterministic() -> None:
    a = planner.client_request_token("biglearn-api", "migrate", NEW, REV, 0, "x")
    assert a == planner.client_request_token("biglearn-api", "migrate", NEW, REV, 0, "x")
    assert len(a) <= 128 and a.replace("-", "").isalnum() and a[0].isalpha()
    assert a != planner.client_request_token("biglearn-api", "migrate", NEW, REV, 1, "x")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(observed(), now=T0.replace(tzinfo=None))


# --- promotion ------------------------------------------------------------------------

PROMOTED = {"promotion": {"after": "staging", "bake": "30m"}}


def upstream(
    in_sync: bool = True, image: str = NEW, since: dt.datetime | None = None
) -> model.Observed:
    return dataclasses.replace(
        observed(), upstream=model.Upstream("staging", image, in_sync, since)
    )


def test_a_promoted_spec_waits_while_its_upstream_is_not_managed() -> None:
    d = decide(observed(), **PROMOTED)
    assert (d.phase, d.update) == (Phase.WAITING, None) and "staging" in d.message


def test_a_promoted_spec_waits_until_its_upstream_runs_the_image_in_sync() -> None:
    assert decide(upstream(in_sync=False), **PROMOTED).update is None
    assert decide(upstream(image=NEWER), **PROMOTED).update is None


def test_a_promoted_spec_waits_for_the_bake_time_then_rolls() -> None:
    baking = decide(upstream(since=T0 - minutes(10)), **PROMOTED)
    assert (baking.phase, baking.update) == (Phase.WAITING, None) and "bakes" in baking.message
    baked = decide(upstream(since=T0 - minutes(31)), **PROMOTED)
    assert baked.update is not None and baked.update.kind == "migrate"


def test_promotion_does_not_stop_a_rollout_under_way() -> None:
    d = decide(dataclasses.replace(phase1_live(record()), upstream=None), MIGRATING, **PROMOTED)
    assert d.update is not None and d.update.kind == "switch"


def test_a_spec_cannot_follow_itself() -> None:
    with pytest.raises(ValueError, match="itself"):
        deployment(promotion={"after": "biglearn-api"})


def test_an_approval_is_spent_by_the_switch_it_releases() -> None:
    memory = dataclasses.replace(MIGRATING, approved_image=NEW)
    d = decide(phase1_live(record()), memory, rollout={"approveAfterMigration": True})
    assert "ConsumeApproval" in kinds(d)


# --- autoscaling frozen during the switch ---------------------------------------------

FREEZE = {"rollout": {"suspendScaling": True}}
ALL = planner.SCALING_PROCESSES


def with_group(obs: model.Observed, suspended: frozenset[str] = frozenset()) -> model.Observed:
    return dataclasses.replace(obs, api_group="asg-1", api_suspended=suspended)


def test_scaling_is_suspended_before_the_switch_and_owned() -> None:
    d = decide(with_group(phase1_live(record())), MIGRATING, **FREEZE)
    assert d.update is None and d.scaling is not None
    assert (d.scaling.action, d.scaling.processes) == ("suspend", ALL)
    assert model.OwnScaling(ALL) in d.effects


def test_the_switch_goes_once_the_processes_are_seen_suspended() -> None:
    memory = model.Memory(
        rollout=rollout(migrated_at=T0, scaling_suspended_at=T0), scaling_owned=ALL
    )
    d = decide(with_group(phase1_live(record()), ALL), memory, **FREEZE)
    assert d.update is not None and d.update.kind == "switch" and d.scaling is None


def test_processes_a_person_suspended_are_not_ours_to_resume() -> None:
    mine = ALL - {"AZRebalance"}
    d = decide(with_group(phase1_live(record()), frozenset({"AZRebalance"})), MIGRATING, **FREEZE)
    assert d.scaling is not None and d.scaling.processes == mine
    assert model.OwnScaling(mine) in d.effects


def test_after_success_the_owned_processes_are_resumed_then_disowned() -> None:
    done = rollout(migrated_at=T0, scaling_suspended_at=T0, result="succeeded", finished_at=T0)
    memory = model.Memory(rollout=done, scaling_owned=ALL)
    in_sync = observed(stack(api=NEW, mig=NEW), instances=healthy(NEW))
    d = decide(with_group(in_sync, ALL), memory, **FREEZE)
    assert d.scaling is not None and (d.scaling.action, d.scaling.processes) == ("resume", ALL)
    later = decide(with_group(in_sync, frozenset()), memory, **FREEZE)
    assert later.scaling is None and kinds(later)[0] == "DisownScaling"


def test_a_crash_between_suspend_and_resume_is_healed_with_no_rollout_under_way() -> None:
    """Ours but no rollout holds them (e.g. the failure path, or a lost step): resume."""
    memory = dataclasses.replace(failed(), scaling_owned=ALL)
    d = decide(with_group(observed(), ALL), memory)
    assert d.scaling is not None and d.scaling.action == "resume"
    assert d.phase == Phase.FAILED


# --- auto rollback --------------------------------------------------------------------

ROLLBACK = {"rollout": {"autoRollback": True}}


def test_a_failed_verification_rolls_the_api_group_back_when_asked() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    d = decide(obs, SWITCHED, now=T0 + minutes(50), **ROLLBACK)
    assert d.phase == Phase.FAILED and "rolled the API group back to" in d.message
    assert d.update is not None and d.update.changes == {
        "LcImageId": OLD,
        "Asg1DesiredCapacity": "1",
    }
    assert "MigrationLcImageId" not in d.update.changes  # no migration phase for the old image


def test_without_auto_rollback_a_failed_verification_only_fails() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    d = decide(obs, SWITCHED, now=T0 + minutes(50))
    assert d.phase == Phase.FAILED and d.update is None


def test_after_a_rollback_the_bad_image_waits_for_a_person_or_a_new_revision() -> None:
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    d = decide(obs, SWITCHED, now=T0 + minutes(50), **ROLLBACK)
    failure = next(e for e in d.effects if isinstance(e, model.RecordFailure)).failure
    memory = model.Memory(failure=failure)
    rolled_back = observed(stack(api=OLD, mig=NEW))
    a_day_later = decide(rolled_back, memory, now=T0 + minutes(60 * 24), **ROLLBACK)
    assert (a_day_later.phase, a_day_later.update) == (Phase.FAILED, None)
    assert "held until a new revision" in a_day_later.message
    new_revision = decide(rolled_back, memory, revision=REV2, **ROLLBACK)
    assert new_revision.update is not None


# --- reason codes: what programs read, whatever the message says ----------------------


def test_each_decision_names_its_reason_code() -> None:
    """The table above, read by code: one case per kind of step."""
    cases = [
        (decide(model.Observed(None)), Reason.MISSING_STACK),
        (decide(observed(stack("UPDATE_ROLLBACK_FAILED"))), Reason.STACK_BROKEN),
        (decide(observed(), paused={"reason": "x"}), Reason.PAUSED_IN_SPEC),
        (decide(observed(stack("UPDATE_IN_PROGRESS"))), Reason.BUSY_FOREIGN),
        (decide(observed(), failed()), Reason.BACKING_OFF),
        (decide(observed()), Reason.MIGRATING),
        (decide(phase1_live(), MIGRATING), Reason.AWAITING_MIGRATION),
        (decide(phase1_live(record("failed")), MIGRATING), Reason.MIGRATION_FAILED),
        (decide(phase1_live(record("succeeded")), MIGRATING), Reason.SWITCHING),
        (decide(observed(stack(api=NEW, mig=NEW), instances=healthy(NEW))), Reason.IN_SYNC),
    ]
    assert [d.reason for d, _ in cases] == [code for _, code in cases]


# --- partial observations (the fleet's shared reads) -----------------------------------


def shared(view: model.StackView, rec: model.MigrationRecord | None = None) -> model.Observed:
    """As the fleet's listings serve it: no instance health, no events."""
    return model.Observed(stack=view, migration_record=rec, partial=True)


def test_verifying_from_shared_reads_asks_for_the_instances_health_and_does_nothing() -> None:
    d = decide(shared(stack(api=NEW, mig=NEW)), SWITCHED)
    assert (d.needs, d.update, d.effects) == (frozenset({"health"}), None, ())


def test_a_pending_switch_seen_applied_in_shared_reads_still_waits_for_health() -> None:
    memory = model.Memory(
        rollout=rollout(migrated_at=T0 - minutes(5)),
        pending=pending("switch", T0 - minutes(1), LcImageId=NEW),
    )
    d = decide(shared(stack(api=NEW, mig=NEW)), memory)
    assert (d.needs, d.effects) == (frozenset({"health"}), ())  # the marks wait too


def test_adopting_phase_1_without_an_update_time_asks_for_the_stack_events() -> None:
    view = dataclasses.replace(stack(mig=NEW, mig_cap=1), last_updated=None)
    d = decide(shared(view, record("succeeded", at=T0 - minutes(1))))
    assert (d.needs, d.update, d.effects) == (frozenset({"events"}), None, ())


def test_shared_reads_suffice_for_phase_1_and_the_switch_asks_for_the_api_group() -> None:
    start = decide(shared(dataclasses.replace(stack(), last_updated=None)))
    assert start.update is not None and start.update.kind == "migrate" and not start.needs
    memory = model.Memory(rollout=rollout())
    gate = decide(shared(phase1_live_stack(), record("succeeded", at=T0 - minutes(1))), memory)
    assert (gate.needs, gate.update, gate.effects) == (frozenset({"groups"}), None, ())
    grouped = dataclasses.replace(
        shared(phase1_live_stack(), record("succeeded", at=T0 - minutes(1))),
        api_group="Stack1-Asg1-X",
        api_suspended=frozenset(),
    )
    switch = decide(grouped, memory)
    assert switch.update is not None and switch.update.kind == "switch" and not switch.needs
