"""Notifications of rollout transitions to webhooks: a generic JSON one and Slack's.

Rules of this file:
- Telling is split in two so that a webhook never slows a rollout: `Notifier.listener`
  runs inside a reconcile step and only writes to the store's outbox (no network);
  `Notifier.deliver_due` runs on its own scheduler job and does the HTTP.
- Once per (stack, revision, transition) and sink (a drift: once per what drifted): the
  outbox's key refuses a second entry, so restarts and repeated steps never re-send.
  Delivery is retried with exponential backoff until it succeeds or `Backoff.max_attempts`
  is spent.
- A sink's URL is a secret (Slack puts the credential in the path): it appears in no log
  entry, no metric label, no stored error and no configuration error. Sinks are named for
  all of them.
- A sink is a pydantic dataclass: its fields and their checks are declared once, and a bad
  entry of the config file is one line naming the field (`notify[0].url must be ...`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

import pydantic
import structlog

from reconciler import logs, model, settings, validation
from reconciler.metrics import Metrics
from reconciler.store import StateStore

SinkKind = Literal["json", "slack"]
Clock = Callable[[], dt.datetime]
USER_AGENT = "reconciler-notify/1"


@dataclasses.dataclass(frozen=True)
class Telling:
    """How a sink shows one kind of transition to people."""

    title: str
    emoji: str = ":rocket:"  # Slack's icon for it


# Every kind a transition may have, with how it is shown: one table, checked whole below,
# so no sink meets a kind it cannot render.
TELLING: Mapping[model.TransitionKind, Telling] = {
    "rollout_started": Telling("rollout started"),
    "migration_succeeded": Telling("migration succeeded"),
    "migration_failed": Telling("migration failed", ":x:"),
    "awaiting_approval": Telling("awaiting approval", ":raised_hand:"),
    "switched": Telling("API group switched"),
    "rollout_succeeded": Telling("rollout succeeded", ":white_check_mark:"),
    "rollout_failed": Telling("rollout failed", ":x:"),
    "rolled_back": Telling("rolled back to the previous image", ":leftwards_arrow_with_hook:"),
    "blocked": Telling("blocked: needs a person", ":octagonal_sign:"),
    "paused": Telling("paused", ":double_vertical_bar:"),
    "resumed": Telling("resumed"),
    "held_by_alarm": Telling("held by an alarm", ":rotating_light:"),
    "alarm_in_bake": Telling("alarm fired during the bake", ":rotating_light:"),
    "fleet_halted": Telling("fleet halted", ":octagonal_sign:"),
    "drifted": Telling("changed outside CloudFormation", ":warning:"),
    "bump_opened": Telling("bump branch pushed for a newer image", ":package:"),
}
KINDS: tuple[model.TransitionKind, ...] = get_args(model.TransitionKind)
# Kinds told of a whole fleet (`kind: Fleet`): the transition's name is the fleet's, it has
# no stack, region or image, and its revision is only the time that keys it (engine).
FLEET_KINDS: frozenset[model.TransitionKind] = frozenset({"fleet_halted"})
if set(TELLING) != set(KINDS):  # pragma: no cover (an import error names the culprit)
    raise AssertionError(
        f"notify.TELLING and model.TransitionKind differ: {set(TELLING) ^ set(KINDS)}"
    )


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _strings(value: object) -> object:
    """`specs`/`kinds`: a list of strings; absent (None) is the empty list."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


_Strings = Annotated[tuple[str, ...], pydantic.BeforeValidator(_strings)]


@pydantic.dataclasses.dataclass(
    frozen=True, config=pydantic.ConfigDict(extra="forbid", coerce_numbers_to_str=True)
)
class Sink:
    """Where notifications go; `specs` and `kinds` narrow what it hears (empty: everything)."""

    name: Annotated[str, pydantic.StringConstraints(min_length=1)]
    kind: SinkKind
    # A secret: never printed, logged, labelled, nor quoted in an error.
    url: str = pydantic.Field(repr=False)
    specs: _Strings = ()
    kinds: _Strings = ()

    @pydantic.field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            # Only the scheme is named: the rest of the URL may be the credential.
            raise ValueError("must be http:// or https://")
        return url

    @pydantic.field_validator("kinds")
    @classmethod
    def _known(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}")
        return kinds

    def wants(self, t: model.Transition) -> bool:
        return (not self.specs or t.name in self.specs) and (not self.kinds or t.kind in self.kinds)


_SINK = pydantic.TypeAdapter(Sink)
_SINK_KEYS = "expected keys url, and optionally kind, kinds, name, specs"


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Retry delays of one entry: base, doubled per failed attempt, capped; the values are
    settings.NotifySettings' (`Backoff.of`), which holds their defaults."""

    base: dt.timedelta
    cap: dt.timedelta
    max_attempts: int

    @classmethod
    def of(cls, conf: settings.NotifySettings) -> Backoff:
        return cls(conf.retry_base, conf.retry_cap, conf.retry_attempts)

    def delay(self, attempts: int) -> dt.timedelta:
        doubled: dt.timedelta = self.base * 2 ** max(attempts - 1, 0)
        return min(doubled, self.cap)


DEFAULT_BACKOFF = Backoff.of(settings.NotifySettings())


def configured(conf: settings.NotifySettings) -> tuple[Sink, ...]:
    """Every sink the daemon tells: the two simple flags' sinks, then the config file's."""
    simple = (
        *([_sink("--notify-url", "default", "json", conf.url)] if conf.url else []),
        *(
            [_sink("--notify-slack-url", "slack", "slack", conf.slack_url)]
            if conf.slack_url
            else []
        ),
    )
    sinks = (*simple, *conf.sinks)
    names = [s.name for s in sinks]
    if len(names) != len(set(names)):
        raise ValueError("notify: sink names must be unique (default and slack are the flags')")
    return sinks


def _sink(flag: str, name: str, kind: str, url: str) -> Sink:
    """The sink a flag asks for (only its URL can be wrong)."""
    try:
        return _SINK.validate_python({"name": name, "kind": kind, "url": url})
    except pydantic.ValidationError as exc:
        raise ValueError(f"{flag}: {validation.one_line(exc, named=False)}") from exc


def parse_sinks(raw: object) -> tuple[Sink, ...]:
    """The `notify:` list of a config file; ValueError, one line, names the field at fault."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("notify must be a list of sinks")
    sinks = tuple(_parse_sink(i, item) for i, item in enumerate(raw))
    names = [s.name for s in sinks]
    if len(names) != len(set(names)):
        raise ValueError("notify: sink names must be unique")
    return sinks


def _parse_sink(index: int, item: object) -> Sink:
    if not isinstance(item, Mapping):
        raise ValueError(f"notify[{index}] must be a mapping ({_SINK_KEYS})")
    try:
        return _SINK.validate_python({"name": f"sink-{index}", "kind": "json", **item})
    except pydantic.ValidationError as exc:
        message = validation.one_line(exc, ("notify", index))
        keys = {"missing", "unexpected_keyword_argument"} & {e["type"] for e in exc.errors()}
        raise ValueError(f"{message} ({_SINK_KEYS})" if keys else message) from exc


# --- payloads -------------------------------------------------------------------------


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def json_payload(t: model.Transition) -> dict[str, Any]:
    """The generic webhook body; `id` lets a receiver drop the rare duplicate (see docs)."""
    fleet = t.kind in FLEET_KINDS
    return {
        "id": t.key,
        "event": t.kind,
        "scope": "fleet" if fleet else "stack",
        "name": t.name,
        "stack": t.stack,
        "region": t.region,
        "revision": "" if fleet else t.revision,  # a fleet's is a time, not a git revision
        "image": t.image,
        "message": t.message,
        "at": _iso(t.at),
    }


def slack_payload(t: model.Transition) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` for notifications, `blocks` for the channel."""
    telling = TELLING[t.kind]
    if t.kind in FLEET_KINDS:
        # No stack, region, image or revision to show: a fleet is many stacks.
        headline = f"{telling.emoji} *{t.name}*: {telling.title}"
        detail = f"fleet {t.name} · {_iso(t.at)}"
        text = f"fleet {t.name}: {telling.title}"
    else:
        headline = f"{telling.emoji} *{t.name}*: {telling.title} ({t.image})"
        detail = f"stack {t.stack} in {t.region} · revision {t.revision[:12]} · {_iso(t.at)}"
        text = f"{t.name}: {telling.title} ({t.image})"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": detail}]},
            {"type": "section", "text": {"type": "plain_text", "text": t.message or "-"}},
        ],
    }


_RENDER: Mapping[SinkKind, Callable[[model.Transition], dict[str, Any]]] = {
    "json": json_payload,
    "slack": slack_payload,
}


# --- the notifier ---------------------------------------------------------------------


class Notifier:
    """Owes transitions to sinks (in the store) and pays them (over HTTP), separately."""

    def __init__(
        self,
        store: StateStore,
        sinks: Sequence[Sink],
        metrics: Metrics | None = None,
        clock: Clock = _utcnow,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,  # frozen, so one shared default is safe
        timeout: float = 5.0,
        batch: int = 50,
    ) -> None:
        self.store = store
        self.sinks = {s.name: s for s in sinks}
        self.metrics = metrics
        self.clock = clock
        self.backoff = backoff
        self.timeout = timeout
        self.batch = batch
        self._log = structlog.get_logger("reconciler.notify")

    def listener(self, transitions: list[model.Transition]) -> None:
        """engine.Listener: one outbox entry per (transition, sink that wants it); no I/O."""
        entries = [
            model.OutboxEntry(t.key, s.name, json.dumps(_RENDER[s.kind](t)), t.at)
            for t in transitions
            for s in self.sinks.values()
            if s.wants(t)
        ]
        if self.store.enqueue(entries):
            self._log.debug("notifications queued", keys=[t.key for t in transitions])

    def deliver_due(self) -> int:
        """Try every due entry once; how many were delivered. Safe to call from one thread."""
        broken: set[str] = set()
        delivered = 0
        for entry in self.store.due(self.clock(), self.batch):
            sink = self.sinks.get(entry.sink)
            if sink is None:
                # A sink removed from the configuration: what it was owed stays unsent.
                continue
            if sink.name in broken:
                # One failure per sink per pass: a dead receiver costs one timeout, not many.
                continue
            if self._deliver(sink, entry):
                delivered += 1
            else:
                broken.add(sink.name)
        return delivered

    def _deliver(self, sink: Sink, entry: model.OutboxEntry) -> bool:
        error = self._post(sink, entry.payload)
        attempts = entry.attempts + 1
        now = self.clock()
        if error is None:
            self.store.delivered(entry.key, sink.name, now)
            self._count(sink, "ok")
            return True
        if attempts >= self.backoff.max_attempts:
            self.store.deferred(entry.key, sink.name, attempts, None, error)
            self._count(sink, "gave_up")
            self._log.error(
                "notification given up", sink=sink.name, key=entry.key, attempts=attempts,
                error=error,
            )  # fmt: skip
            return False
        retry_at = now + self.backoff.delay(attempts)
        self.store.deferred(entry.key, sink.name, attempts, retry_at, error)
        self._count(sink, "error")
        self._log.warning(
            "notification failed; will retry", sink=sink.name, key=entry.key,
            attempts=attempts, retry_at=_iso(retry_at), error=error,
        )  # fmt: skip
        return False

    def _post(self, sink: Sink, payload: str) -> str | None:
        """POST `payload` to the sink; None when it answered 2xx, else a URL-free reason."""
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in Sink)
            sink.url,
            data=payload.encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
                return None
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return _scrub(str(getattr(exc, "reason", exc)), sink.url)

    def _count(self, sink: Sink, result: Literal["ok", "error", "gave_up"]) -> None:
        if self.metrics is not None:
            self.metrics.notification(sink.name, result)


def _scrub(text: str, url: str) -> str:
    # urllib's messages rarely quote the URL, but a proxy or resolver error may: remove it
    # outright (the path can be the credential, which logs.redact_text would not spot).
    return logs.redact_text(text.replace(url, "<sink url>"))[:300]
