"""Rollout windows: allow and deny, across midnight and daylight-saving changes, and overrides."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest

from reconciler import model, planner, spec, windows
from reconciler.model import Phase
from tests.unit.plannerkit import REV, deployment, observed, phase1_live_stack, rollout

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def w(kind: str, schedule: str, duration: str, tz: str = "Europe/Berlin") -> spec.Window:
    return spec.Window.model_validate(
        {"kind": kind, "schedule": schedule, "duration": duration, "timezone": tz}
    )


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN).astimezone(dt.UTC)  # type: ignore[misc]


WORKDAYS = w("allow", "0 9 * * 1-5", "8h")
NIGHTS = w("deny", "0 22 * * *", "8h")


def test_inside_an_allow_window_a_rollout_may_start() -> None:
    assert windows.verdict([WORKDAYS], berlin(2026, 11, 24, 10, 0)).allowed  # a Tuesday


def test_outside_every_allow_window_it_waits_for_the_next_one() -> None:
    v = windows.verdict([WORKDAYS], berlin(2026, 11, 24, 18, 0))
    assert not v.allowed and v.until == berlin(2026, 11, 25, 9, 0)
    assert "next opens" in v.reason


def test_friday_evening_waits_until_monday_morning() -> None:
    v = windows.verdict([WORKDAYS], berlin(2026, 11, 27, 17, 30))
    assert v.until == berlin(2026, 11, 30, 9, 0)


@pytest.mark.parametrize(
    ("when", "allowed"),
    [
        ((2026, 11, 24, 21, 59), True),
        ((2026, 11, 24, 22, 0), False),
        ((2026, 11, 24, 23, 30), False),
        ((2026, 11, 25, 5, 59), False),  # past midnight, still the window that began at 22:00
        ((2026, 11, 25, 6, 0), True),
    ],
)
def test_a_deny_window_crossing_midnight(when: tuple[int, ...], allowed: bool) -> None:
    assert windows.verdict([NIGHTS], berlin(*when)).allowed is allowed


def test_a_deny_window_says_until_when() -> None:
    v = windows.verdict([NIGHTS], berlin(2026, 11, 24, 23, 0))
    assert v.until == berlin(2026, 11, 25, 6, 0) and "deny window" in v.reason


def test_deny_wins_over_allow() -> None:
    always = w("allow", "0 0 * * *", "24h")
    assert not windows.verdict([always, NIGHTS], berlin(2026, 11, 24, 23, 0)).allowed


def test_an_allow_window_follows_local_time_across_the_autumn_change() -> None:
    """09:00 in Berlin is 07:00 UTC in summer and 08:00 UTC in winter."""
    summer = dt.datetime(2026, 10, 23, 7, 30, tzinfo=dt.UTC)  # 09:30 CEST
    winter = dt.datetime(2026, 10, 26, 7, 30, tzinfo=dt.UTC)  # 08:30 CET: not yet open
    assert windows.verdict([WORKDAYS], summer).allowed
    assert not windows.verdict([WORKDAYS], winter).allowed


def test_a_window_starting_in_the_skipped_spring_hour_starts_when_clocks_jump() -> None:
    """On 2026-03-29 02:30 does not exist in Berlin; cron semantics start it at 03:00."""
    spring = w("allow", "30 2 * * *", "1h")
    assert windows.verdict([spring], berlin(2026, 3, 29, 3, 10)).allowed
    assert not windows.verdict([spring], berlin(2026, 3, 29, 4, 1)).allowed


def test_a_window_lasts_its_duration_in_real_time_over_the_autumn_change() -> None:
    """A 2 h window from 01:00 CEST on 2026-10-25 ends at 02:00 CET (01:00 UTC)."""
    night = w("deny", "0 1 * * *", "2h")
    start = dt.datetime(2026, 10, 24, 23, 0, tzinfo=dt.UTC)
    assert not windows.verdict([night], start + dt.timedelta(minutes=119)).allowed
    assert windows.verdict([night], start + dt.timedelta(minutes=120)).allowed


def test_timezones_and_schedules_are_checked_in_the_spec() -> None:
    with pytest.raises(ValueError, match="timezone"):
        w("deny", "0 22 * * *", "8h", tz="Mars/Olympus")
    with pytest.raises(ValueError, match="cron"):
        w("deny", "0 25 * * *", "8h")


def test_a_spec_file_with_a_bad_window_names_its_line() -> None:
    text = """apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: a
spec:
  stackName: S
  region: us-east-1
  image: ami-00000001
  windows:
    - kind: deny
      schedule: "0 25 * * *"
      duration: 8h
      timezone: Europe/Berlin
"""
    with pytest.raises(spec.SpecInvalid) as caught:
        spec.parse(text, "f.yaml")
    (error,) = caught.value.errors
    assert (error.line, error.field) == (10, "spec.windows.0")


# --- in the planner -------------------------------------------------------------------

NIGHT_SPEC = {
    "windows": [
        {"kind": "deny", "schedule": "0 22 * * *", "duration": "8h", "timezone": "Europe/Berlin"}
    ]
}


def plan(
    memory: model.Memory, now: dt.datetime, obs: model.Observed | None = None
) -> model.Decision:
    return planner.plan(deployment(**NIGHT_SPEC), REV, obs or observed(), memory, now)


def test_a_deny_window_holds_a_new_rollout_and_says_until_when() -> None:
    d = plan(model.Memory(), berlin(2026, 11, 24, 23, 0))
    assert (d.phase, d.update) == (Phase.WAITING, None)
    assert "2026-11-25T05:00:00Z" in d.message


def test_when_the_deny_window_closes_the_rollout_starts_on_the_next_tick() -> None:
    d = plan(model.Memory(), berlin(2026, 11, 25, 6, 0))
    assert d.update is not None and d.update.kind == "migrate"


def test_a_rollout_under_way_finishes_inside_a_deny_window() -> None:
    obs = dataclasses.replace(observed(), stack=phase1_live_stack())
    d = plan(model.Memory(rollout=rollout()), berlin(2026, 11, 24, 23, 0), obs)
    assert d.phase == Phase.MIGRATING  # waits for its record, not for the window


def test_an_operator_override_lets_the_rollout_start() -> None:
    now = berlin(2026, 11, 24, 23, 0)
    override = model.WindowOverride("hotfix for incident 7", now, now + dt.timedelta(hours=1))
    d = plan(model.Memory(window_override=override), now)
    assert d.update is not None
    expired = plan(model.Memory(window_override=override), now + dt.timedelta(hours=2))
    assert expired.update is None
