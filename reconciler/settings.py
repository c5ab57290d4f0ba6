"""One root settings object made of small groups, passed explicitly (no module globals).

Rules of this file:
- Every option is declared here once, as a field: its type, its default (the one default
  anywhere), and, with `option(...)`, its name, help, parser and the commands that use it.
  `cli.py` builds each command's flags, `RECONCILER_<NAME>` environment variables and
  `--config` keys from these fields; a tunable elsewhere takes its value from here.
- Every field says its unit and why its default is what it is.
- Values come from flags, then `RECONCILER_*` environment variables, then a config file
  (YAML, same names as the flags), then these defaults: `cli.py` does the layering.
- A parser turns the text a user wrote into the field's value or raises ValueError saying
  what is wanted; the CLI adds where the text came from (`--listen`, `RECONCILER_LISTEN`).
- Imports only the standard library and `spec` (the planner imports this file).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from reconciler import spec

if TYPE_CHECKING:
    # Only for annotations: settings stays free of runtime imports of the rest.
    from reconciler.notify import Sink

# --- which commands use an option -------------------------------------------------------

RUN = frozenset({"run"})
# Read the specs from git and step the stacks: the daemon and the one-shot commands.
GIT = frozenset({"run", "plan", "apply"})
# Ask a running daemon through its HTTP API.
CLIENTS = frozenset(
    {"status", "pause", "resume", "approve", "retry", "sync", "override-window", "history"}
)
COMMANDS = GIT | CLIENTS | {"validate", "demo"}


@dataclasses.dataclass(frozen=True)
class Option:
    """How users set one settings field: a flag, `RECONCILER_<NAME>`, a config key."""

    name: str
    """The flag without `--`, the config key, and (upper case, `_`) the environment name."""
    help: str
    parse: Callable[[str], Any] | None
    """Text to value; None for a structured config-only value (`notify:`) its owner reads."""
    commands: frozenset[str]
    flag: bool = True
    """False: an internal limit, set by environment or config file only (not in --help)."""
    switch: bool = False
    """A flag that needs no value (`--verify-signatures` means true)."""
    env: bool = True
    shown_default: str | None = None
    """The default as --help shows it, when the value's own text would mislead."""

    @property
    def env_name(self) -> str:
        return "RECONCILER_" + self.name.upper().replace("-", "_")


def option(
    *,
    name: str,
    help: str,
    parse: Callable[[str], Any] | None,
    commands: frozenset[str],
    flag: bool = True,
    switch: bool = False,
    env: bool = True,
    shown_default: str | None = None,
) -> dict[str, Option]:
    """The `metadata=` of a dataclass field that users can set."""
    return {"option": Option(name, help, parse, commands, flag, switch, env, shown_default)}


# --- what a value must look like --------------------------------------------------------


def parse_text(text: str) -> str:
    if not text.strip():
        raise ValueError("wants a value, got an empty one")
    return text


def parse_token(text: str) -> str:
    """A secret sent in an HTTP header: printable, no spaces (a newline would split it)."""
    if text.strip() and text != text.strip():
        raise ValueError("has whitespace around it (a newline kept from a file?)")
    if not re.fullmatch(r"[\x21-\x7e]+", text):
        raise ValueError("wants printable characters and no spaces")
    return text


def parse_http_url(text: str) -> str:
    """Not quoted back when wrong: a webhook URL is a secret (Slack's holds the credential)."""
    if not re.fullmatch(r"https?://[^\s/]+\S*", text):
        raise ValueError("wants an http:// or https:// URL")
    return text


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"{text!r} is not true or false")
    return lowered in ("1", "true", "yes")


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return value


def parse_seconds(text: str) -> float:
    """A number of seconds above zero, such as 2 or 0.5."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a number of seconds above zero, such as 2 or 0.5")
    return value


def parse_duration(text: str) -> dt.timedelta:
    return spec.parse_duration(text)


_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float:
    """Requests per second from `50/s`, `600/m`, `36000/h` or `50`; ValueError otherwise."""
    number, _, unit = text.strip().partition("/")
    seconds = _RATE_UNITS.get(unit.strip() or "s")
    try:
        rate = float(number)
    except ValueError:
        rate = math.nan
    if seconds is None or not 0 < rate < math.inf:
        raise ValueError(f"{text!r} is not a rate such as 50/s or 600/m")
    return rate / seconds


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or `:port` (every IPv4 interface) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address must be HOST:PORT, not {listen!r}")
    return host.removeprefix("[").removesuffix("]") or "0.0.0.0", int(port)  # noqa: S104


def _listen(text: str) -> str:
    parse_listen(text)
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _branch(text: str) -> str:
    """A branch name git accepts, and never one git would read as an option."""
    if not re.fullmatch(r"[^\s~^:?*\[\\-][^\s~^:?*\[\\]*", text) or ".." in text:
        raise ValueError(f"{text!r} is not a branch name, such as main")
    return text


def _folder(text: str) -> str:
    if not text.strip() or text.startswith("-"):
        raise ValueError(f"{text!r} is not a folder, such as deploy-specs")
    return text


def _directory(text: str) -> pathlib.Path:
    """A directory that exists or can be made: nothing on the way is a file."""
    if not text.strip():
        raise ValueError("wants a directory, got an empty value")
    path = pathlib.Path(text).expanduser()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ValueError(f"{str(part)!r} is not a directory")
            break
    return path


def _fingerprints(text: str) -> tuple[str, ...]:
    keys = tuple(k for k in text.replace(",", " ").split() if k)
    for key in keys:
        if not re.fullmatch(r"(0[xX])?([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})", key):
            raise ValueError(f"{key!r} is not a full key fingerprint (40 or 64 hex digits)")
    return keys


def _lock_table(text: str) -> str:
    """`[REGION:]NAME`, NAME as DynamoDB allows (3-255 of letters, digits, `_.-`)."""
    if not re.fullmatch(r"([a-z]{2}(-[a-z]+)+-\d+:)?[A-Za-z0-9_.-]{3,255}", text):
        raise ValueError(f"{text!r} is not a DynamoDB table [REGION:]NAME, such as eu-west-1:locks")
    return text


# --- the settings -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GitSettings:
    repo: str = dataclasses.field(
        default=".",
        metadata=option(
            name="repo",
            parse=parse_text,
            commands=GIT,
            help="URL or path of the git repository with the specs",
        ),
    )
    """URL or local path of the repository holding the specs; `.` is the current one."""
    branch: str = dataclasses.field(
        default="main",
        metadata=option(name="branch", parse=_branch, commands=GIT, help="branch to follow"),
    )
    """The branch a merged pull request lands on."""
    path: str = dataclasses.field(
        default="deploy-specs",
        metadata=option(
            name="path",
            parse=_folder,
            commands=GIT | {"validate"},
            help="folder of spec files in the repository",
        ),
    )
    """Folder of spec files inside the repository."""
    poll_interval: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=30),
        metadata=option(
            name="poll-interval",
            parse=parse_duration,
            commands=RUN,
            help="how often to ask git whether the branch moved, e.g. 30s",
        ),
    )
    """How often `ls-remote` asks whether the branch moved; the webhook makes it sooner."""
    verify_signatures: bool = dataclasses.field(
        default=False,
        metadata=option(
            name="verify-signatures",
            parse=parse_bool,
            commands=GIT,
            switch=True,
            help="deploy only commits signed by an allowed key (needs --gpg-home, --allowed-keys)",
        ),
    )
    """Deploy only commits signed by one of `allowed_keys` (the branch head's signature)."""
    gpg_home: pathlib.Path | None = dataclasses.field(
        default=None,
        metadata=option(
            name="gpg-home",
            parse=_directory,
            commands=GIT,
            help="keyring (GNUPGHOME) with the allowed public keys",
        ),
    )
    """A keyring (GNUPGHOME) dedicated to checking commit signatures: the allowed public keys."""
    allowed_keys: tuple[str, ...] = dataclasses.field(
        default=(),
        metadata=option(
            name="allowed-keys",
            parse=_fingerprints,
            commands=GIT,
            help="fingerprints of the keys allowed to sign deployed commits, comma-separated",
        ),
    )
    """Full fingerprints of the keys whose signed commits may be deployed."""

    @property
    def url(self) -> str:
        """The repository to clone; a local path made absolute, since the clone lives
        in the state dir and must find it from there."""
        if is_remote(self.repo):
            return self.repo
        return str(pathlib.Path(self.repo).resolve())


def is_remote(repo: str) -> bool:
    """A URL (`scheme://...`) or git's scp-like `[user@]host:path`, as git tells them apart:
    a colon before any slash makes it scp-like (`./a:b` and `/srv/a:b` are local paths)."""
    if "://" in repo:
        return True
    colon, slash = repo.find(":"), repo.find("/")
    return colon > 0 and (slash == -1 or colon < slash)


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    endpoint_url: str | None = dataclasses.field(
        default=None,
        metadata=option(
            name="endpoint-url",
            parse=parse_http_url,
            commands=GIT,
            help="AWS endpoint, e.g. a local emulator",
        ),
    )
    """An AWS endpoint for every service (a local emulator); None means real AWS."""
    max_attempts: int = dataclasses.field(
        default=5,
        metadata=option(
            name="aws-max-attempts",
            parse=parse_positive_int,
            commands=GIT,
            flag=False,
            help="botocore attempts per AWS call",
        ),
    )
    """botocore standard-mode attempts per call: throttling is retried, not failed."""
    rate: float = dataclasses.field(
        default=50.0,
        metadata=option(
            name="aws-rate",
            parse=parse_rate,
            commands=GIT,
            shown_default="50/s",
            help="upper bound of AWS requests per second per account, region and service, "
            "e.g. 50/s; halves on throttling",
        ),
    )
    """Upper bound, in requests per second, of each (account, region, service) budget
    (`--aws-rate 50/s`). Generous because a fleet rollout shares its reads, so the daemon
    sends few requests; each budget starts here, halves on a throttled answer and climbs
    back slowly, which protects a real account (CloudFormation is reported to throttle
    DescribeStacks near 5/s) without a low flat cap slowing every other service."""
    burst: int = dataclasses.field(
        default=50,
        metadata=option(
            name="aws-burst",
            parse=parse_positive_int,
            commands=GIT,
            flag=False,
            help="AWS requests of one budget that may go at once after a quiet spell",
        ),
    )
    """Requests of one budget that may go at once after a quiet spell (a second's worth at
    the default rate); shrinks in proportion while the budget is halved."""


@dataclasses.dataclass(frozen=True)
class SchedulingSettings:
    active_interval: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=1),
        metadata=option(
            name="active-interval",
            parse=parse_duration,
            commands=GIT,
            help="reconcile period while a rollout moves",
        ),
    )
    """Reconcile period while a rollout is under way, and the most a shared read may be
    old for a step to act on it. One shared read per tick serves every stack of an account
    (about 1/50 request per stack), so ticking fast costs little and a phase that ends is
    acted on within a second; a phase that keeps waiting backs off to 4x this."""
    workers: int = dataclasses.field(
        default=8,
        metadata=option(
            name="workers",
            parse=parse_positive_int,
            commands=RUN | {"apply"},
            help="reconcile steps that may run at once",
        ),
    )
    """Reconcile steps that may run at once; each mostly waits on AWS."""
    backoff_base: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=30),
        metadata=option(
            name="backoff-base",
            parse=parse_duration,
            commands=GIT,
            flag=False,
            help="first retry delay after a failed rollout; doubles per failure",
        ),
    )
    """First retry delay after a failed rollout; doubles per failure."""
    backoff_cap: dt.timedelta = dataclasses.field(
        default=dt.timedelta(minutes=30),
        metadata=option(
            name="backoff-cap",
            parse=parse_duration,
            commands=GIT,
            flag=False,
            help="longest retry delay after failed rollouts",
        ),
    )
    """Longest retry delay: a broken rollout is retried at least this often."""
    stop_grace: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=30),
        metadata=option(
            name="stop-grace",
            parse=parse_duration,
            commands=RUN,
            flag=False,
            help="how long a stopping daemon waits for the steps in flight",
        ),
    )
    """How long SIGTERM waits for the steps in flight: a step is a few AWS calls; past
    this the daemon exits anyway (keep it under the orchestrator's kill grace period)."""


def _forge_repo(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+", text):
        raise ValueError("wants OWNER/NAME, the repository of the specs on the forge")
    return text


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    image_interval: dt.timedelta = dataclasses.field(
        default=dt.timedelta(minutes=5),
        metadata=option(
            name="image-interval",
            parse=parse_duration,
            commands=RUN,
            help="how often to look for an image newer than a spec's (imagePolicy), e.g. 5m",
        ),
    )
    """How often each `imagePolicy` is checked: one paged DescribeImages per policy,
    account and region, shared by every spec with that policy. A baked image waits at most
    this long for its bump branch; AWS charges nothing for the reads."""
    forge: str = dataclasses.field(
        default="none",
        metadata=option(
            name="forge",
            parse=_choice("none", "github"),
            commands=RUN,
            help="none | github: open a pull request for each bump branch",
        ),
    )
    """Where bump pull requests are opened; `none` pushes the branch only."""
    forge_api_url: str = dataclasses.field(
        default="https://api.github.com",
        metadata=option(
            name="forge-api-url",
            parse=parse_http_url,
            commands=RUN,
            help="the forge's REST API (GitHub Enterprise: https://HOST/api/v3)",
        ),
    )
    """GitHub's REST API; GitHub Enterprise Server serves it under /api/v3."""
    forge_repo: str = dataclasses.field(
        default="",
        metadata=option(
            name="forge-repo",
            parse=_forge_repo,
            commands=RUN,
            help="OWNER/NAME of the specs repository on the forge (default: from --repo)",
        ),
    )
    """The specs repository on the forge; empty: read from the `--repo` URL."""
    forge_token: str = dataclasses.field(
        default="",
        repr=False,
        metadata=option(
            name="forge-token",
            parse=parse_token,
            commands=RUN,
            flag=False,
            help="token for the forge's API (RECONCILER_FORGE_TOKEN; never a flag)",
        ),
    )
    """A token allowed to open and update pull requests; from the environment or a Secret,
    never a flag (a flag shows in `ps`)."""


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """How much one client may ask of the daemon's HTTP server."""

    max_threads: int = dataclasses.field(
        default=16,
        metadata=option(
            name="http-max-threads",
            parse=parse_positive_int,
            commands=RUN,
            flag=False,
            help="HTTP requests served at once; more are answered 503",
        ),
    )
    """Requests served at once; more are answered 503 at once. Scrapes and controls are rare."""
    request_timeout: float = dataclasses.field(
        default=10.0,
        metadata=option(
            name="http-request-timeout",
            parse=parse_seconds,
            commands=RUN,
            flag=False,
            help="seconds to receive a whole HTTP request",
        ),
    )
    """Seconds to receive a whole request, headers and body: a slow client is cut off then."""
    webhook_body: int = dataclasses.field(
        default=1024 * 1024,
        metadata=option(
            name="http-webhook-body",
            parse=parse_positive_int,
            commands=RUN,
            flag=False,
            help="bytes of a webhook body",
        ),
    )
    """Bytes of a webhook body: a push event with many commits stays well under 1 MiB."""
    control_body: int = dataclasses.field(
        default=64 * 1024,
        metadata=option(
            name="http-control-body",
            parse=parse_positive_int,
            commands=RUN,
            flag=False,
            help="bytes of any other HTTP body",
        ),
    )
    """Bytes of any other body: a control carries a reason and a time, nothing more."""
    shutdown_grace: float = dataclasses.field(
        default=1.0,
        metadata=option(
            name="http-shutdown-grace",
            parse=parse_seconds,
            commands=RUN,
            flag=False,
            help="seconds a stopping server waits for requests in progress",
        ),
    )
    """Seconds `stop()` waits for requests in progress before leaving them behind."""


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    listen: str = dataclasses.field(
        default="127.0.0.1:9108",
        metadata=option(
            name="listen",
            parse=_listen,
            commands=RUN | CLIENTS,
            help="HTTP address of the daemon",
        ),
    )
    """Address of metrics, status, controls and webhook; loopback unless told otherwise."""
    token: str | None = dataclasses.field(
        default=None,
        repr=False,
        metadata=option(
            name="token",
            parse=parse_token,
            commands=RUN | CLIENTS,
            help="bearer token of the daemon's controls",
        ),
    )
    """Bearer token for the runtime controls."""
    webhook_secret: str | None = dataclasses.field(
        default=None,
        repr=False,
        metadata=option(
            name="webhook-secret",
            parse=parse_token,
            commands=RUN,
            help="HMAC secret of the git webhook",
        ),
    )
    """HMAC secret of the git push webhook."""
    allow_unauthenticated_controls: bool = dataclasses.field(
        default=False,
        metadata=option(
            name="allow-unauthenticated-controls",
            parse=parse_bool,
            commands=RUN,
            switch=True,
            help="accept runtime controls without a token (never on a shared network)",
        ),
    )
    """Accept controls without a token (a developer laptop, never a cluster)."""
    limits: HttpLimits = HttpLimits()


@dataclasses.dataclass(frozen=True)
class NotifySettings:
    # Webhook URLs are secrets: the environment variables keep them out of `ps`.
    url: str | None = dataclasses.field(
        default=None,
        repr=False,
        metadata=option(
            name="notify-url",
            parse=parse_http_url,
            commands=RUN,
            help="JSON webhook told of rollout transitions (a secret)",
        ),
    )
    """A generic JSON webhook (sink `default`) told of every transition; a secret."""
    slack_url: str | None = dataclasses.field(
        default=None,
        repr=False,
        metadata=option(
            name="notify-slack-url",
            parse=parse_http_url,
            commands=RUN,
            help="Slack webhook told of transitions (a secret)",
        ),
    )
    """A Slack incoming webhook (sink `slack`) told of every transition; a secret."""
    sinks: tuple[Sink, ...] = dataclasses.field(
        default=(),
        metadata=option(
            name="notify",
            parse=None,
            commands=RUN,
            flag=False,
            env=False,
            help="more sinks, with routing (docs/notifications.md)",
        ),
    )
    """More sinks, each with optional per-spec and per-kind routing (config `notify:`)."""
    interval: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=2),
        metadata=option(
            name="notify-interval",
            parse=parse_duration,
            commands=RUN,
            flag=False,
            help="how often owed notifications are sent",
        ),
    )
    """How often owed notifications are sent: soon after a transition, and each failed
    one waits out its own backoff on top."""
    retry_base: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=2),
        metadata=option(
            name="notify-retry-base",
            parse=parse_duration,
            commands=RUN,
            flag=False,
            help="first wait before a failed notification is resent",
        ),
    )
    """First wait before a failed notification is sent again; doubles per failed attempt."""
    retry_cap: dt.timedelta = dataclasses.field(
        default=dt.timedelta(minutes=10),
        metadata=option(
            name="notify-retry-cap",
            parse=parse_duration,
            commands=RUN,
            flag=False,
            help="longest wait between two attempts of a notification",
        ),
    )
    """Longest wait between two attempts of one notification."""
    retry_attempts: int = dataclasses.field(
        default=12,
        metadata=option(
            name="notify-retry-attempts",
            parse=parse_positive_int,
            commands=RUN,
            flag=False,
            help="attempts of one notification before it is given up",
        ),
    )
    """Attempts of one notification: about an hour of trying; past that, the news is stale."""


def _replica_id() -> str:
    return f"{os.uname().nodename}-{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class ReplicaSettings:
    lock_table: str | None = dataclasses.field(
        default=None,
        metadata=option(
            name="lock-table",
            parse=_lock_table,
            commands=RUN,
            help="DynamoDB table [REGION:]NAME shared by replicas (store and per-stack leases)",
        ),
    )
    """DynamoDB table (`[REGION:]NAME`) shared by replicas: the store and per-spec leases.
    None: one replica, SQLite in the state dir (a second daemon on it refuses to start)."""
    replica_id: str = dataclasses.field(
        default_factory=_replica_id,
        metadata=option(
            name="replica-id",
            parse=parse_token,
            commands=RUN,
            shown_default="hostname-pid",
            help="this replica's name in leases",
        ),
    )
    """This replica's name in leases and status; hostname-pid is unique per process."""
    lease_ttl: dt.timedelta = dataclasses.field(
        default=dt.timedelta(seconds=30),
        metadata=option(
            name="lease-ttl",
            parse=parse_duration,
            commands=RUN,
            help="per-stack lease length",
        ),
    )
    """How long a lease lasts unrenewed: how long a dead replica's specs wait for another
    one. Renewed every TTL/3; a holder stops acting TTL/3 before it would end."""


@dataclasses.dataclass(frozen=True)
class Settings:
    state_dir: pathlib.Path = dataclasses.field(
        default=pathlib.Path(".reconciler"),
        metadata=option(
            name="state-dir",
            parse=_directory,
            commands=GIT,
            help="where the git clone and the store live",
        ),
    )
    """Where the git clone and the SQLite store live; keep it on a volume."""
    log_format: str = dataclasses.field(
        default="auto",
        metadata=option(
            name="log-format",
            parse=_choice("json", "console", "auto"),
            commands=COMMANDS,
            help="json | console | auto (console on a terminal)",
        ),
    )
    """json, console, or auto (console on a terminal, JSON otherwise)."""
    log_level: str = dataclasses.field(
        default="info",
        metadata=option(
            name="log-level",
            parse=_choice("debug", "info", "warning", "error", "critical"),
            commands=COMMANDS,
            help="debug | info | warning | error | critical",
        ),
    )
    git: GitSettings = GitSettings()
    aws: AwsSettings = AwsSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    images: ImageSettings = ImageSettings()
    http: HttpSettings = HttpSettings()
    notify: NotifySettings = NotifySettings()
    replicas: ReplicaSettings = ReplicaSettings()


def options(
    group: type[Any] = Settings, prefix: str = ""
) -> Iterator[tuple[str, Option, dataclasses.Field[Any]]]:
    """(dotted path in Settings, Option, field) of every option, in declaration order."""
    for field in dataclasses.fields(group):
        path = f"{prefix}{field.name}"
        if "option" in field.metadata:
            yield path, field.metadata["option"], field
        elif dataclasses.is_dataclass(field.default):
            yield from options(type(field.default), f"{path}.")


def replace(conf: Any, path: str, value: Any) -> Any:
    """`conf` with the field at dotted `path` set to `value` (frozen groups, new copies)."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(conf, **{head: value})
    return dataclasses.replace(conf, **{head: replace(getattr(conf, head), rest, value)})
