"""The daemon's controls (daemon.Controller) read their bodies as server.control_body made
them: typed, checked once. A fake daemon records what each control asks of the store."""

from __future__ import annotations

import datetime as dt
import types
from typing import Any

import pytest

from reconciler import daemon

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def pause(self, name: str, reason: str, at: dt.datetime, until: dt.datetime | None) -> None:
        self.calls.append(("pause", name, reason, at, until))

    def override_window(self, name: str, reason: str, at: dt.datetime, until: dt.datetime) -> None:
        self.calls.append(("override", name, reason, at, until))


def controller() -> tuple[daemon.Controller, FakeStore]:
    store = FakeStore()
    fake = types.SimpleNamespace(
        engine=types.SimpleNamespace(status=lambda n: object() if n == "api" else None),
        store=store,
        clock=lambda: NOW,
        log=types.SimpleNamespace(info=lambda *a, **k: None),
        sync=lambda n: None,
    )
    return daemon.Controller(fake), store  # type: ignore[arg-type]


def test_pause_stores_the_reason_and_the_until_time_parsed() -> None:
    c, store = controller()
    c.control("api", "pause", {"reason": "incident 42", "until": "2026-12-01T01:00:00+01:00"})
    assert store.calls == [
        ("pause", "api", "incident 42", NOW, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    ]


def test_override_window_lasts_the_default_without_until_and_refuses_a_past_one() -> None:
    c, store = controller()
    c.control("api", "override-window", {"reason": "hotfix", "until": ""})
    assert store.calls == [("override", "api", "hotfix", NOW, NOW + daemon.OVERRIDE_DEFAULT)]
    with pytest.raises(ValueError, match="until must be in the future"):
        c.control("api", "override-window", {"reason": "x", "until": "2026-11-30T11:00:00Z"})


@pytest.mark.parametrize(
    ("action", "body", "message"),
    [
        ("pause", {}, "pause needs a reason"),
        ("pause", {"reason": "x", "until": "soon"}, "until: 'soon' is not an RFC 3339 time"),
        ("launch", {}, "unknown action 'launch'"),
    ],
)
def test_a_bad_body_or_action_is_a_one_line_value_error(
    action: str, body: dict[str, Any], message: str
) -> None:
    c, store = controller()
    with pytest.raises(ValueError) as caught:
        c.control("api", action, body)
    assert str(caught.value) == message
    assert store.calls == []


def test_an_unknown_stack_is_a_key_error_before_its_body_is_judged() -> None:
    c, _ = controller()
    with pytest.raises(KeyError):
        c.control("nope", "pause", {})
