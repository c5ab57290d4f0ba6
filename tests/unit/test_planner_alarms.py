"""Issue 13 in the planner: the alarm gate, the bake, the rollback triggers, rollbackSafe,
and a fleet member's turn (judged by the engine, obeyed here)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from reconciler import model, planner
from reconciler.model import Phase
from reconciler.reasons import Reason
from tests.unit.plannerkit import (
    NEW,
    OLD,
    REV,
    T0,
    deployment,
    healthy,
    minutes,
    observed,
    record,
    rollout,
    stack,
)

ALARMS = {"rollout": {"alarms": ["api-5xx", "api-p99"], "bake": "15m", "autoRollback": True}}
ARN = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:"


def alarms(**states: model.AlarmState) -> dict[str, model.Alarm]:
    named = {
        "api-5xx": "OK",
        "api-p99": "OK",
        **{k.replace("_", "-"): v for k, v in states.items()},
    }
    return {n: model.Alarm(n, ARN + n, s) for n, s in named.items() if s is not None}  # type: ignore[misc]


def decide(
    obs: model.Observed,
    memory: model.Memory | None = None,
    now: dt.datetime = T0,
    seen: dict[str, model.Alarm] | None = None,
    turn: model.Turn | None = None,
    **overrides: object,
) -> model.Decision:
    spec_overrides = {**ALARMS, **overrides}
    obs = dataclasses.replace(obs, alarms=seen, turn=turn)
    return planner.plan(
        deployment(**spec_overrides),  # type: ignore[arg-type]
        REV,
        obs,
        memory or model.Memory(),
        now,
    )


def failure_of(d: model.Decision) -> model.Failure:
    return next(e for e in d.effects if isinstance(e, model.RecordFailure)).failure


MIGRATING = model.Memory(rollout=rollout())
SWITCHED = model.Memory(rollout=rollout(migrated_at=T0 - minutes(5), switched_at=T0 - minutes(1)))


def phase1_live(rec: model.MigrationRecord | None = None) -> model.Observed:
    return observed(stack(mig=NEW, mig_cap=1), record=rec)


# --- reading ----------------------------------------------------------------------------


def test_a_spec_with_alarms_asks_for_them_before_deciding() -> None:
    d = decide(observed(), seen=None)
    assert d.needs == frozenset({"alarms"}) and d.update is None and not d.effects


def test_a_spec_without_alarms_never_asks() -> None:
    d = decide(observed(), seen=None, rollout={})
    assert not d.needs and d.update is not None


# --- the gate before a rollout starts ----------------------------------------------------


def test_an_alarm_in_alarm_holds_a_rollout_that_has_not_started() -> None:
    d = decide(observed(), seen=alarms(api_5xx="ALARM"))
    assert (d.phase, d.reason, d.update, d.effects) == (
        Phase.WAITING,
        Reason.ALARM_HOLDING,
        None,
        (),
    )
    assert "api-5xx" in d.message


@pytest.mark.parametrize("state", ["OK", "INSUFFICIENT_DATA"])
def test_only_the_alarm_state_holds(state: model.AlarmState) -> None:
    d = decide(observed(), seen=alarms(api_5xx=state))
    assert d.update is not None and d.update.kind == "migrate"


def test_an_alarm_that_does_not_exist_blocks_naming_it() -> None:
    seen = {"api-5xx": model.Alarm("api-5xx", ARN + "api-5xx", "OK")}
    d = decide(observed(), seen=seen)
    assert (d.phase, d.reason, d.update) == (Phase.BLOCKED, Reason.MISSING_ALARM, None)
    assert "api-p99" in d.message and "api-5xx" not in d.message


def test_phase_1_carries_an_explicit_empty_trigger_list() -> None:
    d = decide(observed(), seen=alarms())
    assert d.update is not None and d.update.triggers == () and not d.update.disable_rollback


# --- the switch ---------------------------------------------------------------------------


def test_the_switch_carries_the_alarms_as_rollback_triggers() -> None:
    d = decide(phase1_live(record("succeeded")), MIGRATING, seen=alarms())
    assert d.update is not None and d.update.kind == "switch"
    assert d.update.triggers == (ARN + "api-5xx", ARN + "api-p99")
    assert not d.update.disable_rollback


def test_an_alarm_holds_the_switch_and_stops_the_migration_group() -> None:
    d = decide(phase1_live(record("succeeded")), MIGRATING, seen=alarms(api_p99="ALARM"))
    assert (d.phase, d.reason) == (Phase.WAITING, Reason.ALARM_HOLDING)
    assert d.update is not None and d.update.kind == "migrate"
    assert d.update.changes == {"MigrationDesiredCapacity": "0"}
    assert d.update.triggers == ()
    # The migration passed: that is remembered, so the hold does not rerun it.
    assert any(isinstance(e, model.MarkRollout) and e.migrated_at for e in d.effects)


def test_with_the_migration_group_stopped_the_switch_just_waits() -> None:
    migrated = model.Memory(rollout=rollout(migrated_at=T0 - minutes(1)))
    d = decide(observed(stack(mig=NEW, mig_cap=0)), migrated, seen=alarms(api_p99="ALARM"))
    assert (d.phase, d.reason, d.update) == (Phase.WAITING, Reason.ALARM_HOLDING, None)
    cleared = decide(observed(stack(mig=NEW, mig_cap=0)), migrated, seen=alarms())
    assert cleared.update is not None and cleared.update.kind == "switch"


def test_an_irreversible_migration_switches_with_no_triggers_and_rollback_disabled() -> None:
    rec = dataclasses.replace(record("succeeded"), rollback_safe=False)
    d = decide(phase1_live(rec), MIGRATING, seen=alarms())
    assert d.update is not None and d.update.kind == "switch"
    assert d.update.triggers == () and d.update.disable_rollback
    marks = [e for e in d.effects if isinstance(e, model.MarkRollout)]
    assert any(m.irreversible_at == T0 for m in marks)


def test_a_switch_rolled_back_by_cloudformation_is_held() -> None:
    view = dataclasses.replace(
        stack(api=OLD, mig=NEW, mig_cap=0),
        status="UPDATE_ROLLBACK_COMPLETE",
        last_updated=T0,
        status_reason="Rollback triggered: alarm api-5xx is in ALARM state",
    )
    sent = model.Pending("switch", NEW, REV, "tok", T0, {"LcImageId": NEW})
    memory = model.Memory(rollout=rollout(migrated_at=T0 - minutes(3)), pending=sent)
    d = decide(observed(view), memory, now=T0 + minutes(3), seen=alarms())
    assert d.phase == Phase.FAILED and "api-5xx" in d.message
    assert failure_of(d).next_retry_at == planner.HELD
    later = decide(
        observed(dataclasses.replace(view, status="UPDATE_ROLLBACK_COMPLETE")),
        model.Memory(failure=failure_of(d)),
        now=T0 + minutes(600),
        seen=alarms(),
    )
    assert later.update is None and "held until" in later.message


# --- the bake ------------------------------------------------------------------------------


def healthy_now() -> model.Observed:
    return observed(stack(api=NEW, mig=NEW), instances=healthy(NEW))


def test_healthy_on_the_image_starts_the_bake_instead_of_succeeding() -> None:
    d = decide(healthy_now(), SWITCHED, seen=alarms())
    assert (d.phase, d.reason) == (Phase.VERIFYING, Reason.BAKING_ALARMS)
    assert [type(e).__name__ for e in d.effects] == ["MarkRollout"]
    mark = d.effects[0]
    assert isinstance(mark, model.MarkRollout) and mark.healthy_at == T0


BAKING = model.Memory(
    rollout=rollout(
        migrated_at=T0 - minutes(5), switched_at=T0 - minutes(1), healthy_at=T0 - minutes(1)
    )
)


def test_the_bake_succeeds_when_it_has_passed_without_an_alarm() -> None:
    early = decide(healthy_now(), BAKING, now=T0 + minutes(13), seen=alarms())
    assert early.reason == Reason.BAKING_ALARMS and not early.effects
    done = decide(healthy_now(), BAKING, now=T0 + minutes(14), seen=alarms())
    assert (done.phase, done.reason) == (Phase.IN_SYNC, Reason.ROLLOUT_SUCCEEDED)


def test_the_bake_is_not_part_of_the_rollout_timeout() -> None:
    d = decide(
        healthy_now(),
        BAKING,
        now=T0 + minutes(10),
        seen=alarms(),
        rollout={**ALARMS["rollout"], "timeout": "2m", "bake": "1h"},
    )
    assert d.reason == Reason.BAKING_ALARMS


def test_an_alarm_in_the_bake_rolls_back_and_holds() -> None:
    d = decide(healthy_now(), BAKING, now=T0 + minutes(5), seen=alarms(api_5xx="ALARM"))
    assert (d.phase, d.reason) == (Phase.FAILED, Reason.ALARM_IN_BAKE)
    assert d.update is not None and d.update.changes["LcImageId"] == OLD
    assert d.update.triggers == ()  # the daemon's own rollback carries none
    failure = failure_of(d)
    assert failure.code == Reason.ROLLED_BACK and failure.next_retry_at == planner.HELD
    assert "api-5xx" in failure.reason


def test_an_alarm_in_the_bake_without_auto_rollback_fails_and_holds() -> None:
    d = decide(
        healthy_now(),
        BAKING,
        now=T0 + minutes(5),
        seen=alarms(api_5xx="ALARM"),
        rollout={"alarms": ["api-5xx", "api-p99"], "bake": "15m"},
    )
    assert (d.phase, d.reason, d.update) == (Phase.FAILED, Reason.ALARM_IN_BAKE, None)
    assert failure_of(d).next_retry_at == planner.HELD


def test_an_alarm_in_the_bake_after_an_irreversible_migration_blocks_and_rolls_nothing_back() -> (
    None
):
    irreversible = model.Memory(
        rollout=dataclasses.replace(BAKING.rollout, irreversible_at=T0 - minutes(6))  # type: ignore[arg-type]
    )
    d = decide(healthy_now(), irreversible, now=T0 + minutes(5), seen=alarms(api_5xx="ALARM"))
    assert (d.phase, d.reason, d.update) == (Phase.BLOCKED, Reason.ROLLBACK_UNSAFE, None)
    assert "rollbackSafe: false" in d.message and "retry" in d.message
    held = decide(
        observed(stack(api=NEW, mig=NEW)),
        model.Memory(failure=failure_of(d)),
        now=T0 + minutes(600),
        seen=alarms(),
    )
    assert (held.phase, held.reason, held.update) == (Phase.BLOCKED, Reason.ROLLBACK_UNSAFE, None)


def test_an_unhealthy_switch_after_an_irreversible_migration_is_not_rolled_back() -> None:
    memory = model.Memory(
        rollout=rollout(
            migrated_at=T0 - minutes(5),
            switched_at=T0 - minutes(1),
            irreversible_at=T0 - minutes(5),
        )
    )
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    d = decide(obs, memory, now=T0 + minutes(50), seen=alarms())
    assert (d.phase, d.reason, d.update) == (Phase.BLOCKED, Reason.ROLLBACK_UNSAFE, None)


def test_a_failed_irreversible_switch_says_why_and_what_to_do() -> None:
    view = dataclasses.replace(
        stack(api=NEW, mig=NEW), status="UPDATE_FAILED", status_reason="Resource failed"
    )
    memory = model.Memory(rollout=rollout(migrated_at=T0, irreversible_at=T0))
    d = decide(observed(view), memory, seen=alarms())
    assert (d.phase, d.reason, d.update) == (Phase.BLOCKED, Reason.ROLLBACK_UNSAFE, None)
    assert "rollbackSafe: false" in d.message and "Fix forward" in d.message


# --- a fleet member's turn ---------------------------------------------------------------


def test_a_fleet_member_out_of_turn_waits_with_the_fleets_message() -> None:
    turn = model.Turn("api", 2, False, "fleet api step 2 waits for step 1: 1 of 1 not done")
    d = decide(observed(), seen=alarms(), turn=turn)
    assert (d.phase, d.reason, d.update, d.effects) == (
        Phase.WAITING,
        Reason.FLEET_TURN,
        None,
        (),
    )
    assert d.message == turn.message


def test_a_member_of_a_halted_fleet_waits_as_halted() -> None:
    turn = model.Turn("api", 1, False, "fleet api halted: 1 failed member", halted=True)
    d = decide(observed(), seen=alarms(), turn=turn)
    assert (d.phase, d.reason, d.update) == (Phase.WAITING, Reason.FLEET_HALTED, None)


def test_a_member_in_its_turn_starts() -> None:
    d = decide(observed(), seen=alarms(), turn=model.Turn("api", 1, True, ""))
    assert d.update is not None and any(isinstance(e, model.StartRollout) for e in d.effects)


def test_a_rollout_under_way_finishes_whatever_the_fleet_says() -> None:
    halted = model.Turn("api", 1, False, "fleet api halted: by hand", halted=True)
    d = decide(phase1_live(record("succeeded")), MIGRATING, seen=alarms(), turn=halted)
    assert d.update is not None and d.update.kind == "switch"
