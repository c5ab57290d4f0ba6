"""Rollout windows: may a new rollout start now? (spec.windows)

Rules of this file:
- Pure: time comes in as an argument, nothing is read from a clock or a file.
- Schedules are cron expressions evaluated by cronsim in the window's own timezone, so a
  daylight-saving change moves the window's start with local time, as cron does. A window
  lasts `duration` of real (UTC) time from its start.
- No allow window at all means always allowed; deny windows win over allow windows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Protocol

import cronsim

_MINUTE = dt.timedelta(minutes=1)


class Window(Protocol):
    """What spec.Window provides; kept structural so this module needs no spec import."""

    @property
    def kind(self) -> str: ...
    @property
    def schedule(self) -> str: ...
    @property
    def duration(self) -> dt.timedelta: ...
    @property
    def timezone(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    until: dt.datetime | None  # when the verdict may change; None: not foreseeable


def check(schedule: str, timezone: str) -> None:
    """Raise ValueError for a schedule or timezone that cannot be evaluated."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        message = f"unknown timezone {timezone!r} (use an IANA name like Europe/Berlin)"
        raise ValueError(message) from exc
    try:
        cronsim.CronSim(schedule, dt.datetime(2026, 1, 1, tzinfo=zone))
    except cronsim.CronSimError as exc:
        raise ValueError(f"invalid cron schedule {schedule!r}: {exc}") from exc


def _starts_before(window: Window, now: dt.datetime) -> Iterable[dt.datetime]:
    """Window starts at or before `now`, newest first, in UTC."""
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone))
    # cronsim excludes its starting minute; start one minute later to include `now`'s.
    for start in cronsim.CronSim(window.schedule, local + _MINUTE, reverse=True):
        if start <= local:
            yield start.astimezone(dt.UTC)


def active_until(window: Window, now: dt.datetime) -> dt.datetime | None:
    """The end of the occurrence of `window` that contains `now`, if one does."""
    for start in _starts_before(window, now):
        end = start + window.duration
        if end > now:
            return end
        return None  # occurrences do not overlap backwards beyond the latest one we need
    return None


def next_start(window: Window, now: dt.datetime) -> dt.datetime:
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone))
    return next(iter(cronsim.CronSim(window.schedule, local))).astimezone(dt.UTC)


def verdict(windows: Sequence[Window], now: dt.datetime) -> Verdict:
    """Whether a new rollout may start at `now`, and why not."""
    active = [
        (end, w) for w in windows if w.kind == "deny" and (end := active_until(w, now)) is not None
    ]
    if active:
        end, window = max(active, key=lambda pair: pair[0])
        return Verdict(False, f"deny window {_describe(window)} is open until {_iso(end)}", end)
    allows = [w for w in windows if w.kind == "allow"]
    if not allows:
        return Verdict(True, "no window applies", None)
    open_until = [end for w in allows if (end := active_until(w, now)) is not None]
    if open_until:
        return Verdict(True, f"inside an allow window until {_iso(max(open_until))}", None)
    opens = min(next_start(w, now) for w in allows)
    return Verdict(False, f"outside every allow window; the next opens at {_iso(opens)}", opens)


def _describe(window: Window) -> str:
    return f"'{window.schedule}' ({window.timezone}, {window.duration})"


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else "?"
