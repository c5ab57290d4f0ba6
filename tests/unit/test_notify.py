"""Notifications: queued in the store by the engine's listener, delivered over real HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import pathlib
import time
from collections.abc import Iterator
from typing import get_args

import pytest
import structlog

from reconciler import cli, logs, model, notify, settings
from reconciler.metrics import Metrics
from reconciler.store import Store
from tests.unit.notifykit import Receiver
from tests.unit.plannerkit import NEW, REV, T0

SECRET_PATH = "/services/T0/B0/SECRET"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


def transition(kind: model.TransitionKind, name: str = "biglearn-api") -> model.Transition:
    return model.Transition(name, "Stack1", "us-east-1", REV, kind, NEW, f"{kind} now", T0)


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[Store]:
    with Store.in_state_dir(tmp_path) as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def notifier(store: Store, *sinks: notify.Sink, clock: Clock | None = None) -> notify.Notifier:
    return notify.Notifier(store, sinks, Metrics(), clock or Clock(), timeout=2.0)


def sent(n: notify.Notifier, sink: str, result: str) -> float:
    assert n.metrics is not None
    value = n.metrics.registry.get_sample_value(
        "reconciler_notifications_total", {"sink": sink, "result": result}
    )
    return value or 0.0


def test_each_transition_is_posted_once_as_generic_json(store: Store, receiver: Receiver) -> None:
    """One POST per transition, with the documented fields; delivering again sends nothing."""
    n = notifier(store, notify.Sink("default", "json", receiver.url))
    n.listener([transition("rollout_started"), transition("migration_succeeded")])
    assert n.deliver_due() == 2
    assert n.deliver_due() == 0
    assert receiver.events() == ["rollout_started", "migration_succeeded"]
    assert receiver.bodies[0] == {
        "id": f"biglearn-api|{REV}|rollout_started",
        "event": "rollout_started",
        "scope": "stack",
        "name": "biglearn-api",
        "stack": "Stack1",
        "region": "us-east-1",
        "revision": REV,
        "image": NEW,
        "message": "rollout_started now",
        "at": "2026-11-26T10:00:00Z",
    }
    assert sent(n, "default", "ok") == 2


def test_slack_payload_has_text_and_readable_blocks(store: Store, receiver: Receiver) -> None:
    """A Slack sink gets `text` (the notification line) and mrkdwn `blocks`."""
    n = notifier(store, notify.Sink("chat", "slack", receiver.url + "/T0/B0/x"))
    n.listener([transition("rollout_failed")])
    n.deliver_due()
    (body,) = receiver.bodies
    assert body["text"] == f"biglearn-api: rollout failed ({NEW})"
    assert ":x: *biglearn-api*: rollout failed" in body["blocks"][0]["text"]["text"]
    assert "Stack1" in body["blocks"][1]["elements"][0]["text"]
    assert receiver.paths == ["/T0/B0/x"]


def fleet_halted(at: dt.datetime = T0) -> model.Transition:
    """As engine._tell_fleet tells it: the fleet's name, no stack, keyed by its time."""
    message = "fleet api halted: 2 failed member(s) (api-eu-1, api-eu-2), more than 1"
    return model.Transition("api", "", "", at.isoformat(), "fleet_halted", "", message, at)


def test_a_fleet_transition_names_the_fleet_and_shows_no_empty_stack(
    store: Store, receiver: Receiver
) -> None:
    """A fleet has no stack, region, image or git revision: JSON says `scope: fleet` with
    those empty (the revision the engine keys it by is a time), Slack names the fleet and
    shows no empty `stack  in ` or `()`; halted again later, it is told again."""
    n = notifier(
        store,
        notify.Sink("default", "json", receiver.url),
        notify.Sink("chat", "slack", receiver.url + "/T0/B0/x"),
    )
    n.listener([fleet_halted(T0 - dt.timedelta(hours=1)), fleet_halted()])
    assert n.deliver_due() == 4
    generic = [b for b in receiver.bodies if "event" in b]
    slack = [b for b in receiver.bodies if "blocks" in b]
    assert len(generic) == 2 and len(slack) == 2
    assert {k: generic[0][k] for k in ("event", "scope", "name", "stack", "region")} == {
        "event": "fleet_halted",
        "scope": "fleet",
        "name": "api",
        "stack": "",
        "region": "",
    }
    assert (generic[0]["revision"], generic[0]["image"]) == ("", "")
    assert generic[0]["message"].startswith("fleet api halted: 2 failed member(s)")
    assert generic[0]["id"] != generic[1]["id"]
    body = slack[-1]
    assert body["text"] == "fleet api: fleet halted"
    assert body["blocks"][0]["text"]["text"] == ":octagonal_sign: *api*: fleet halted"
    context = body["blocks"][1]["elements"][0]["text"]
    assert context == "fleet api · 2026-11-26T10:00:00Z"
    assert body["blocks"][2]["text"]["text"].startswith("fleet api halted")
    assert all("()" not in b["text"] for b in slack)


def test_every_transition_kind_renders_for_every_sink_kind(store: Store) -> None:
    """No kind a transition may have is unknown to a sink: each is queued, once per sink,
    as JSON that names it (the generic body) or shows its title (Slack)."""
    sink_kinds: tuple[notify.SinkKind, ...] = get_args(notify.SinkKind)
    n = notifier(store, *(notify.Sink(k, k, "https://example.invalid/x") for k in sink_kinds))
    n.listener([transition(kind) for kind in notify.KINDS])
    queued = {(e.key, e.sink): json.loads(e.payload) for e in store.due(T0, 1000)}
    assert len(queued) == len(notify.KINDS) * len(sink_kinds)
    for kind in notify.KINDS:
        key = transition(kind).key
        assert all(isinstance(queued[key, sink], dict) for sink in sink_kinds)
        assert queued[key, "json"]["event"] == kind
        assert notify.TELLING[kind].title in queued[key, "slack"]["text"]


def test_an_automatic_rollback_reaches_a_slack_sink(store: Store, receiver: Receiver) -> None:
    """Regression: "rolled_back" had no Slack title, so rendering raised, the engine's
    listener swallowed it, and neither it nor that step's rollout_failed reached any sink."""
    n = notifier(
        store,
        notify.Sink("chat", "slack", receiver.url + "/chat"),
        notify.Sink("hook", "json", receiver.url + "/hook"),
    )
    n.listener([transition("rollout_failed"), transition("rolled_back")])
    assert n.deliver_due() == 4
    texts = [b["text"] for b in receiver.bodies if "text" in b]
    assert texts == [
        f"biglearn-api: rollout failed ({NEW})",
        f"biglearn-api: rolled back to the previous image ({NEW})",
    ]
    assert receiver.events().count("rolled_back") == 1


def test_a_key_told_twice_is_queued_and_sent_once(store: Store, receiver: Receiver) -> None:
    """The same (stack, revision, transition) told again, even by a new notifier on the same
    store (a restart), is not sent again."""
    sink = notify.Sink("default", "json", receiver.url)
    notifier(store, sink).listener([transition("switched")])
    assert notifier(store, sink).deliver_due() == 1
    again = notifier(store, sink)
    again.listener([transition("switched")])
    assert again.deliver_due() == 0
    assert receiver.events() == ["switched"]


def test_a_failing_receiver_is_retried_with_backoff_and_delivered_once(store: Store) -> None:
    """500 then 200: the entry waits out its backoff, then goes through exactly once."""
    clock = Clock()
    with Receiver(codes=(500, 500)) as r:
        n = notifier(store, notify.Sink("default", "json", r.url), clock=clock)
        n.listener([transition("rollout_succeeded")])
        assert n.deliver_due() == 0  # 500
        assert n.deliver_due() == 0  # not due yet: nothing sent
        clock.advance(n.backoff.delay(1))
        assert n.deliver_due() == 0  # 500 again
        clock.advance(n.backoff.delay(1))
        assert n.deliver_due() == 0  # the delay doubled: still not due
        clock.advance(n.backoff.delay(2))
        assert n.deliver_due() == 1
        clock.advance(dt.timedelta(hours=1))
        assert n.deliver_due() == 0
        assert r.events() == ["rollout_succeeded"]
    assert (sent(n, "default", "error"), sent(n, "default", "ok")) == (2, 1)


def test_backoff_doubles_up_to_its_cap() -> None:
    b = notify.Backoff(dt.timedelta(seconds=2), dt.timedelta(seconds=10), max_attempts=12)
    assert [b.delay(a).total_seconds() for a in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


def test_an_entry_is_given_up_after_max_attempts(store: Store) -> None:
    """A receiver that never answers 2xx: counted as gave_up once, then never tried again."""
    clock = Clock()
    with Receiver(codes=(503,) * 10) as r:
        n = notify.Notifier(
            store, [notify.Sink("default", "json", r.url)], Metrics(), clock,
            backoff=notify.Backoff.of(settings.NotifySettings(retry_attempts=3)),
        )  # fmt: skip
        n.listener([transition("blocked")])
        for _ in range(5):
            n.deliver_due()
            clock.advance(dt.timedelta(hours=1))
    assert (sent(n, "default", "error"), sent(n, "default", "gave_up")) == (2, 1)
    assert store.due(clock(), 10) == []


def test_a_receiver_that_is_down_does_not_slow_the_listener(
    store: Store, tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    """The listener only writes the outbox: with a dead sink it is as fast as with a live
    one, and delivery defers the entry instead of raising."""
    down = notify.Sink("down", "json", "http://127.0.0.1:9/hook")  # discard port: refused
    with Store.in_state_dir(tmp_path / "other") as other:
        baseline = _time_listener(notifier(other, notify.Sink("up", "json", receiver.url)))
    with_sink = notifier(store, down)
    # A loose ratio, not an absolute bound: one timeout per call would be seconds.
    assert _time_listener(with_sink) < baseline * 5 + 0.05
    assert receiver.bodies == []  # and the live one was not called by the listener either
    assert with_sink.deliver_due() == 0
    assert sent(with_sink, "down", "error") == 1
    owed = store.due(T0 + dt.timedelta(hours=1), 50)
    assert (len(owed), sum(e.attempts for e in owed)) == (20, 1)


def _time_listener(n: notify.Notifier) -> float:
    started = time.perf_counter()
    for i in range(20):
        n.listener([dataclasses.replace(transition("rollout_started"), revision=f"r{i}")])
    return time.perf_counter() - started


def test_a_dead_sink_costs_one_attempt_per_pass_not_one_per_entry(store: Store) -> None:
    down = notify.Sink("down", "json", "http://127.0.0.1:9/hook")
    n = notifier(store, down)
    n.listener([transition("rollout_started"), transition("switched"), transition("paused")])
    n.deliver_due()
    assert sent(n, "down", "error") == 1


def test_sinks_route_by_spec_name_and_kind(store: Store) -> None:
    """`specs` and `kinds` narrow a sink; a sink without them hears everything."""
    with Receiver() as everything, Receiver() as api_only, Receiver() as failures:
        n = notifier(
            store,
            notify.Sink("all", "json", everything.url),
            notify.Sink("api", "json", api_only.url, specs=("biglearn-api",)),
            notify.Sink("bad", "json", failures.url, kinds=("rollout_failed",)),
        )
        n.listener([transition("rollout_started"), transition("rollout_failed", "other")])
        n.deliver_due()
        assert everything.events() == ["rollout_started", "rollout_failed"]
        assert api_only.events() == ["rollout_started"]
        assert [b["name"] for b in failures.bodies] == ["other"]


def test_no_secret_of_a_sink_url_reaches_the_log(store: Store) -> None:
    """Slack-style URLs with the credential in the path (one answering 500, one refusing
    connections) are never logged, labelled or printed, through failure and give-up."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("json", "debug", stream=stream)
    clock = Clock()
    try:
        with Receiver(codes=(500, 500)) as r:
            answering = notify.Sink("chat", "slack", f"{r.url}{SECRET_PATH}")
            refusing = notify.Sink("down", "json", f"http://127.0.0.1:9{SECRET_PATH}")
            n = notify.Notifier(
                store, [answering, refusing], Metrics(), clock,
                backoff=notify.Backoff.of(settings.NotifySettings(retry_attempts=2)),
            )  # fmt: skip
            n.listener([transition("rollout_started")])
            n.deliver_due()  # a failure of each to log
            clock.advance(dt.timedelta(hours=1))
            n.deliver_due()  # and a give-up of each
    finally:
        # Put back what the rest of the run expects (as test_logs does): a logging left at
        # "warning" would hide the info lines later tests capture with capture_logs().
        structlog.reset_defaults()
        root.handlers = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
    output = stream.getvalue()
    assert output.count("notification given up") == 2
    assert "SECRET" not in output
    assert "SECRET" not in repr(answering) + repr(refusing)
    assert n.metrics is not None
    assert b"SECRET" not in n.metrics.exposition()[0]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("x", "must be a list"),
        ([{"name": "a"}], "expected keys url"),
        ([{"url": "ftp://x"}], "http:// or https://"),
        ([{"url": "https://x", "kind": "teams"}], "json or slack"),
        ([{"url": "https://x", "kinds": ["deployed"]}], "unknown kinds"),
        ([{"url": "https://x", "specs": "api"}], "list of strings"),
        ([{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}], "unique"),
    ],
)
def test_config_entries_are_checked(raw: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        notify.parse_sinks(raw)


def test_config_entries_parse_with_routing() -> None:
    (sink,) = notify.parse_sinks(
        [
            {
                "name": "ops",
                "kind": "slack",
                "url": "https://h/x",
                "specs": ["api"],
                "kinds": ["blocked"],
            }
        ]
    )
    assert (sink.name, sink.kind, sink.specs, sink.kinds) == (
        "ops",
        "slack",
        ("api",),
        ("blocked",),
    )


def test_cli_layers_the_notify_flags_and_the_config_list(tmp_path: pathlib.Path) -> None:
    """RECONCILER_NOTIFY_URL adds sink `default`; the config file's `notify:` adds routed ones."""
    config = tmp_path / "reconciler.yaml"
    config.write_text(
        "notify:\n  - {name: ops, kind: slack, url: 'https://h/T0/S', specs: [biglearn-api]}\n"
    )
    args = cli.build_parser().parse_args(["run", "--config", str(config)])
    conf = cli.load_settings(args, {"RECONCILER_NOTIFY_URL": "http://127.0.0.1:1/hook"})
    sinks = notify.configured(conf.notify)
    assert [(s.name, s.kind, s.specs) for s in sinks] == [
        ("default", "json", ()),
        ("ops", "slack", ("biglearn-api",)),
    ]
    assert "T0" not in repr(conf)


def test_cli_refuses_a_config_sink_named_like_a_flag_sink(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "reconciler.yaml"
    config.write_text("notify:\n  - {name: default, url: 'https://h/x'}\n")
    args = cli.build_parser().parse_args(["run", "--config", str(config)])
    with pytest.raises(cli.UsageError, match="unique"):
        cli.load_settings(args, {"RECONCILER_NOTIFY_URL": "https://h/y"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"url": "ftp://h/SECRET"}], "notify[0].url: must be http:// or https://"),
        (
            [{"url": "https://h/x"}, {"url": "https://h/y", "kind": "teams"}],
            "notify[1].kind: must be json or slack",
        ),
        (
            [{"url": "https://h/x", "kinds": "blocked"}],
            "notify[0].kinds: must be a list of strings",
        ),
        ([{"url": "https://h/x", "name": ""}], "notify[0].name must not be empty"),
        (
            [{"url": "https://h/SECRET", "spec": ["api"]}],
            "notify[0].spec is not a known key "
            "(expected keys url, and optionally kind, kinds, name, specs)",
        ),
    ],
)
def test_a_bad_sink_field_is_one_line_naming_it_and_never_the_url(
    raw: object, message: str
) -> None:
    """The config file's entry and field are named; the URL (a secret) is not quoted."""
    with pytest.raises(ValueError) as caught:
        notify.parse_sinks(raw)
    assert str(caught.value) == message


def test_a_bad_flag_url_names_the_flag_and_hides_the_url() -> None:
    """--notify-url with another scheme: the flag is named, the URL is not shown."""
    conf = settings.NotifySettings(url="ftp://h/SECRET")
    with pytest.raises(ValueError) as caught:
        notify.configured(conf)
    assert str(caught.value) == "--notify-url: must be http:// or https://"
