"""One root settings object made of small groups, passed explicitly (no module globals).

Rules of this file:
- Every field says its unit and why its default is what it is.
- Values come from flags, then `RECONCILER_*` environment variables, then a config file
  (YAML, same names as the flags), then these defaults: `cli.py` does the layering.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: settings stays free of runtime imports of the rest.
    from reconciler.notify import Sink


@dataclasses.dataclass(frozen=True)
class GitSettings:
    repo: str = "."
    """URL or local path of the repository holding the specs; `.` is the current one."""
    branch: str = "main"
    """The branch a merged pull request lands on."""
    path: str = "deploy-specs"
    """Folder of spec files inside the repository."""
    poll_interval: dt.timedelta = dt.timedelta(seconds=30)
    """How often `ls-remote` asks whether the branch moved; the webhook makes it sooner."""
    verify_signatures: bool = False
    """Deploy only commits signed by one of `allowed_keys` (the branch head's signature)."""
    gpg_home: pathlib.Path | None = None
    """A keyring (GNUPGHOME) dedicated to checking commit signatures: the allowed public keys."""
    allowed_keys: tuple[str, ...] = ()
    """Full fingerprints of the keys whose signed commits may be deployed."""

    @property
    def url(self) -> str:
        """The repository to clone; a local path made absolute, since the clone lives
        in the state dir and must find it from there."""
        if "://" in self.repo or self.repo.startswith("git@"):
            return self.repo
        return str(pathlib.Path(self.repo).resolve())


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    endpoint_url: str | None = None
    """An AWS endpoint for every service (a local emulator); None means real AWS."""
    max_attempts: int = 5
    """botocore standard-mode attempts per call: throttling is retried, not failed."""
    rate: float = 50.0
    """Upper bound, in requests per second, of each (account, region, service) budget
    (`--aws-rate 50/s`). Generous because a fleet rollout shares its reads, so the daemon
    sends few requests; each budget starts here, halves on a throttled answer and climbs
    back slowly, which protects a real account (CloudFormation is reported to throttle
    DescribeStacks near 5/s) without a low flat cap slowing every other service."""
    burst: int = 50
    """Requests of one budget that may go at once after a quiet spell (a second's worth at
    the default rate); shrinks in proportion while the budget is halved."""


@dataclasses.dataclass(frozen=True)
class SchedulingSettings:
    active_interval: dt.timedelta = dt.timedelta(seconds=1)
    """Reconcile period while a rollout is under way, and the most a shared read may be
    old for a step to act on it. One shared read per tick serves every stack of an account
    (about 1/50 request per stack), so ticking fast costs little and a phase that ends is
    acted on within a second; a phase that keeps waiting backs off to 4x this."""
    workers: int = 8
    """Reconcile steps that may run at once; each mostly waits on AWS."""
    backoff_base: dt.timedelta = dt.timedelta(seconds=30)
    """First retry delay after a failed rollout; doubles per failure."""
    backoff_cap: dt.timedelta = dt.timedelta(minutes=30)
    """Longest retry delay: a broken rollout is retried at least this often."""


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    listen: str = "127.0.0.1:9108"
    """Address of metrics, status, controls and webhook; loopback unless told otherwise."""
    token: str | None = dataclasses.field(default=None, repr=False)
    """Bearer token for the runtime controls."""
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)
    """HMAC secret of the git push webhook."""
    allow_unauthenticated_controls: bool = False
    """Accept controls without a token (a developer laptop, never a cluster)."""


@dataclasses.dataclass(frozen=True)
class NotifySettings:
    url: str | None = dataclasses.field(default=None, repr=False)
    """A generic JSON webhook (sink `default`) told of every transition; a secret."""
    slack_url: str | None = dataclasses.field(default=None, repr=False)
    """A Slack incoming webhook (sink `slack`) told of every transition; a secret."""
    sinks: tuple[Sink, ...] = ()
    """More sinks, each with optional per-spec and per-kind routing (config `notify:`)."""
    interval: dt.timedelta = dt.timedelta(seconds=2)
    """How often owed notifications are sent: soon after a transition, and each failed
    one waits out its own backoff on top."""


def _replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class ReplicaSettings:
    lock_table: str | None = None
    """DynamoDB table (`[REGION:]NAME`) shared by replicas: the store and per-spec leases.
    None: one replica, SQLite in the state dir (a second daemon on it refuses to start)."""
    replica_id: str = dataclasses.field(default_factory=_replica_id)
    """This replica's name in leases and status; hostname-pid is unique per process."""
    lease_ttl: dt.timedelta = dt.timedelta(seconds=30)
    """How long a lease lasts unrenewed: how long a dead replica's specs wait for another
    one. Renewed every TTL/3; a holder stops acting TTL/3 before it would end."""


@dataclasses.dataclass(frozen=True)
class Settings:
    state_dir: pathlib.Path = pathlib.Path(".reconciler")
    """Where the git clone and the SQLite store live; keep it on a volume."""
    log_format: str = "auto"
    """json, console, or auto (console on a terminal, JSON otherwise)."""
    log_level: str = "info"
    git: GitSettings = GitSettings()
    aws: AwsSettings = AwsSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    http: HttpSettings = HttpSettings()
    notify: NotifySettings = NotifySettings()
    replicas: ReplicaSettings = ReplicaSettings()
