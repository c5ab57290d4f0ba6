"""The parts `reconciler run` and the one-shot commands (`plan`, `apply`) build from settings:
the AWS clients, the retry policy, the git source, and for the daemon its store, notifier,
engine, scheduler and HTTP server.

Rules of this file:
- Construction only; no I/O happens here beyond taking the state dir (clients and the
  source connect when first used, the scheduler and the server start when told), so the
  callers stay in charge of when work starts.
- Every part is built from settings passed in; nothing is kept at module level.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from reconciler import aws, engine, metrics, notify, planner, replicas, server, settings, source
from reconciler.store import StateDirLock, StateStore, Store


def clients(conf: settings.Settings, counted: metrics.Metrics) -> aws.Clients:
    """One counted, rate-limited client cache for every AWS call of this process; `counted`
    counts every request and shows the rate budgets at every scrape."""
    built = aws.Clients(
        conf.aws.endpoint_url,
        counted.aws_request,
        conf.aws.max_attempts,
        conf.aws.rate,
        conf.aws.burst,
    )
    counted.watch_budgets(built.budgets)
    return built


def policy(conf: settings.Settings) -> planner.Policy:
    return planner.Policy(conf.scheduling.backoff_base, conf.scheduling.backoff_cap)


def reconcile_engine(
    conf: settings.Settings,
    built: aws.Clients,
    store: StateStore,
    counted: metrics.Metrics,
    clock: engine.Clock = engine.utcnow,
    listeners: Sequence[engine.Listener] = (),
) -> engine.Engine:
    """The engine with the settings' retry policy; one shared read per active tick serves
    every spec stepping in it."""
    return engine.Engine(
        built,
        store,
        counted,
        policy(conf),
        clock,
        listeners=listeners,
        fresh=conf.scheduling.active_interval,
    )


def git_source(conf: settings.Settings) -> source.GitSource:
    """The spec repository, cached under the state dir, with the signature policy asked for."""
    return source.GitSource(
        conf.git.url,
        conf.git.branch,
        conf.git.path,
        conf.state_dir / "git",
        signatures=signature_policy(conf.git),
    )


def signature_policy(git: settings.GitSettings) -> source.SignaturePolicy | None:
    """The policy the settings ask for; None when signatures are not verified."""
    if not git.verify_signatures:
        return None
    return source.SignaturePolicy.of(git.gpg_home, git.allowed_keys)


# --- the daemon ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DaemonParts:
    """What `reconciler run` is made of, built and not started."""

    metrics: metrics.Metrics
    state_dir_lock: StateDirLock  # released by the daemon when it stops
    replicas: replicas.Replicas  # the store, and the per-spec leases with DynamoDB
    notifier: notify.Notifier
    engine: engine.Engine
    source: source.GitSource
    scheduler: BackgroundScheduler


def daemon_parts(conf: settings.Settings, clock: engine.Clock) -> DaemonParts:
    """Take the state dir (or raise store.StateDirLocked) and build the daemon's parts."""
    counted = metrics.Metrics()
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    lock = Store.lock_state_dir(conf.state_dir)
    built = clients(conf, counted)
    # SQLite in the state dir, or the shared DynamoDB table and its per-spec leases.
    shared = replicas.Replicas(conf, built)
    # The listener only queues in the store; the notify job sends, on its own thread.
    notifier = notify.Notifier(
        shared.store,
        notify.configured(conf.notify),
        counted,
        clock,
        backoff=notify.Backoff.of(conf.notify),
    )
    eng = reconcile_engine(conf, built, shared.store, counted, clock, [notifier.listener])
    return DaemonParts(
        counted, lock, shared, notifier, eng, git_source(conf), scheduler(conf.scheduling)
    )


def scheduler(sched: settings.SchedulingSettings) -> BackgroundScheduler:
    """APScheduler in UTC: each job at most once at a time, missed runs coalesced into one."""
    quiet_scheduler_logs()
    return BackgroundScheduler(
        executors={
            "default": ThreadPoolExecutor(sched.workers),
            # Its own thread: a webhook timing out never holds a reconcile worker.
            "notify": ThreadPoolExecutor(1),
        },
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        timezone=dt.UTC,
    )


def quiet_scheduler_logs() -> None:
    # A step still running when its next run comes up is skipped by design
    # (max_instances=1); APScheduler warns each time, which floods logs at scale.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    # Two lines per job run ("Running job", "executed successfully"): at 50 stacks ticking
    # every second that is most of the log and of the daemon's CPU.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


def http_server(
    conf: settings.HttpSettings, controller: server.Controller, counted: metrics.Metrics
) -> server.Server:
    """The status, control, webhook and metrics endpoints, not yet listening."""
    return server.Server(
        conf.listen,
        controller,
        counted,
        token=conf.token,
        webhook_secret=conf.webhook_secret,
        allow_unauthenticated_controls=conf.allow_unauthenticated_controls,
        limits=conf.limits,
    )
