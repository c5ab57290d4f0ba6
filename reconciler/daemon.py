"""`reconciler run`: the scheduler, the HTTP server and the engine, wired together.

Rules of this file:
- APScheduler runs one git poll job and one reconcile job per managed spec; every job has
  `max_instances=1` and `coalesce=True`, so a slow step never piles up behind itself.
- After each step the spec's next run is set from the decision by requeue.next_run: soon
  while a rollout moves, at the retry time while backing off, at the spec's interval when
  idle; after a step whose AWS call failed, later each time, throttling aside.
- Jobs appear and disappear as spec files are added to and removed from git.
- SIGTERM/SIGINT: stop taking new work, let the steps in flight finish, exit 0.
- Fleets (`kind: Fleet`) come from the catalog with the specs, on each git poll; a fleet
  removed from git stays in force until its members are done (never releasing them all at
  once), then the catalog lets it go. A member waiting for its turn comes back at the
  active cadence (its decision says requeue "active"), so a freed step is seen within
  seconds, not at the member's interval.
- Image policies (`imaging.py`) are checked by a job of their own every `--image-interval`,
  first right after the first git poll, and only while some spec has an `imagePolicy`.
  A spec with `commit: direct` under `--verify-signatures` stops `run` before it starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor

from reconciler import (
    assemble,
    bump,
    catalog,
    engine,
    imaging,
    requeue,
    server,
    settings,
    source,
    waves,
)
from reconciler import forge as forge_client
from reconciler import status as view

GIT_JOB = "git-poll"
LEASE_JOB = "lease-renew"
NOTIFY_JOB = "notify"
IMAGE_JOB = "image-policies"
EXIT_REFUSED = 2  # as the CLI's usage errors: the configuration, not the world, is wrong
# Builds the forge client for `--forge github` (reconciler/forge.py provides it).
ForgeFactory = Callable[[settings.Settings], bump.Forge]
OVERRIDE_DEFAULT = dt.timedelta(hours=1)  # an override is for the change at hand, not forever


def _job_id(name: str) -> str:
    return f"reconcile:{name}"


class Refused(Exception):
    """The settings ask for what cannot be done: one line for stderr, exit 2."""


class Daemon:
    """The long-running service; `start()` returns once it serves, `stop()` drains it."""

    def __init__(
        self,
        conf: settings.Settings,
        clock: engine.Clock = engine.utcnow,
        forge_factory: ForgeFactory | None = None,
    ) -> None:
        self.conf = conf
        self.clock = clock
        self.log = structlog.get_logger("reconciler.daemon")
        # Before anything binds a port or takes the state dir: a forge that cannot be built
        # (no token) is a refusal at start, not a warning an hour later.
        forge = self._forge(forge_factory)
        parts = assemble.daemon_parts(conf, clock)
        self.metrics = parts.metrics
        self._lock_file = parts.state_dir_lock
        self.replicas = parts.replicas
        self.store = self.replicas.store
        self.notifier = parts.notifier
        self.engine = parts.engine
        self.source = parts.source
        self.scheduler = parts.scheduler
        self.server = assemble.http_server(conf.http, Controller(self), self.metrics)
        self.catalog = catalog.Catalog()
        self.images = imaging.ImageAutomation(
            self.source,
            self.engine,
            self.metrics,
            conf.images.image_interval,
            forge=forge,
            notify=self.notifier.listener,
            allow_direct=not conf.git.verify_signatures,
            clock=clock,
        )
        self._unverified: str | None = None  # the last untrusted-head refusal reported
        self._guard = threading.Lock()
        self._resync: set[str] = set()  # syncs asked for while that spec's step ran
        self._paces: dict[str, requeue.Pace] = {}  # name -> what its next wait builds on
        # fleet -> member -> 1-based step, as of the last git poll: what a member's step
        # needs to refresh its fleet's gauges without reading every member's memory.
        self._fleet_steps: dict[str, dict[str, int]] = {}
        # Counting and setting a fleet's gauges is one act: two members stepping at once
        # must not let the one that counted first write last.
        self._fleet_gauges = threading.Lock()
        self._git_read = False
        self._aws_answered = False
        self._heartbeat = time.monotonic()
        self._stopped = threading.Event()
        self._idle = threading.Condition()
        self._inflight = 0

    def _forge(self, factory: ForgeFactory | None) -> bump.Forge | None:
        """The forge bump branches are proposed to; None pushes the branches only."""
        if self.conf.images.forge == "none":
            return None
        try:
            if factory is None:
                return forge_client.from_settings(self.conf.images, self.conf.git.url)
            return factory(self.conf)
        except ValueError as exc:
            raise Refused(str(exc)) from exc

    # --- lifecycle ----------------------------------------------------------------------

    def refusal(self) -> str | None:
        """Why this daemon must not start (one line), from the specs at the branch head:
        `commit: direct` under --verify-signatures. None when it may, or git cannot tell yet
        (the git poll will report that)."""
        if not self.conf.git.verify_signatures:
            return None
        try:
            snapshot = self.source.poll()
        except source.GitError:
            return None
        found = catalog.Catalog()
        found.update(snapshot)
        return imaging.direct_refusal(found.specs)

    def close_unstarted(self) -> None:
        """Let go of what the constructor took, for a daemon that never started."""
        self.source.close()
        self.store.close()
        self._lock_file.release()

    def start(self) -> None:
        self.server.start()
        host, port = self.server.address
        self.log.info("listening", address=f"{host}:{port}", repo=source.redact(self.conf.git.repo))
        self.scheduler.start()
        self.scheduler.add_job(
            self.poll_git,
            "interval",
            seconds=self.conf.git.poll_interval.total_seconds(),
            jitter=self.conf.git.poll_interval.total_seconds() * requeue.JITTER,
            id=GIT_JOB,
            next_run_time=self.clock(),
        )
        if self.replicas.lease is not None:
            # Its own thread: busy reconcile workers must never delay a renewal.
            self.scheduler.add_executor(ThreadPoolExecutor(1), "leases")
            self.scheduler.add_job(
                self.replicas.renew_all,
                "interval",
                seconds=self.replicas.renew_every.total_seconds(),
                id=LEASE_JOB,
                executor="leases",
            )
        self.scheduler.add_job(
            self.check_images,
            "interval",
            seconds=self.conf.images.image_interval.total_seconds(),
            id=IMAGE_JOB,
        )  # and right after the first git poll (_poll_git)
        if self.notifier.sinks:
            self.scheduler.add_job(
                self.deliver_notifications,
                "interval",
                seconds=self.conf.notify.interval.total_seconds(),
                id=NOTIFY_JOB,
                executor="notify",
                next_run_time=self.clock(),
            )

    def stop(self) -> None:
        """Stop polling, finish the steps in flight, close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.log.info("stopping: finishing steps in flight")
        # Not shutdown(wait=True): it holds the job-store lock while waiting, and a git poll
        # in flight that adds a job would wait for that lock forever.
        self.scheduler.shutdown(wait=False)
        with self._idle:
            self._idle.wait_for(
                lambda: self._inflight == 0, timeout=self.conf.scheduling.stop_grace.total_seconds()
            )
        self.server.stop()
        self.replicas.release_all()
        self.source.close()  # the git object reader's cat-file processes
        self.store.close()
        self._lock_file.release()
        self.log.info("stopped")

    def wait(self) -> None:
        self._stopped.wait()

    # --- git ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _job(self) -> Iterator[bool]:
        """Counts a job in flight so stop() can wait for it; yields False once stopping."""
        with self._idle:
            if self._stopped.is_set():
                yield False
                return
            self._inflight += 1
        try:
            yield True
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def deliver_notifications(self) -> None:
        with self._job() as go:
            if not go:
                return
            try:
                self.notifier.deliver_due()
            except Exception:
                # The outbox keeps what is owed; the next run tries again.
                self.log.exception("notification delivery failed")

    def poll_git(self) -> None:
        with self._job() as go:
            if go:
                self._poll_git()

    def _poll_git(self) -> None:
        self._heartbeat = time.monotonic()
        try:
            snapshot = self.source.poll()
        except source.GitError as exc:
            self.metrics.git_fetch("error")
            self.log.warning("git poll failed; reconciling the last good revision", error=str(exc))
            return
        self.metrics.git_fetch("ok", time.time())
        self._report_unverified(snapshot.unverified)
        before = {n: s.revision for n, s in self.catalog.specs.items()}
        self.catalog.update(snapshot)
        # Before any job of a new spec runs: a member must never step outside its fleet.
        self.engine.set_fleets(self.catalog.fleets)
        first = not self._git_read
        self._git_read = True
        self._report_spec_errors()
        self._sync_jobs(before)
        self._refresh_fleets()
        if first:
            self._run_now(IMAGE_JOB)

    def _run_now(self, job_id: str) -> None:
        job = self.scheduler.get_job(job_id)
        if job is not None and not self._stopped.is_set():
            job.modify(next_run_time=self.clock())

    # --- images -------------------------------------------------------------------------

    def check_images(self) -> list[imaging.Outcome]:
        """Check the specs' image policies that are due (nothing before git was read, and
        nothing while no spec has one)."""
        with self._job() as go:
            specs = self.catalog.specs
            if not go or not self._git_read:
                return []
            if not any(s.deployment.spec.image_policy for s in specs.values()):
                return []
            try:
                return self.images.run_once(specs, self.catalog.fleets)
            except Exception:
                # Each policy's failures are outcomes; this is a bug, and the next run retries.
                self.log.exception("image policy check failed")
                return []

    def _report_unverified(self, refusal: str | None) -> None:
        """Once per refused head (each poll sees it again): a metric and an error line."""
        if refusal is not None and refusal != self._unverified:
            self.metrics.git_unverified()
            self.log.error("untrusted commit not deployed", error=refusal)
        self._unverified = refusal

    def _report_spec_errors(self) -> None:
        counts: dict[str, int] = {}
        for error in self.catalog.errors:
            counts[error.file] = counts.get(error.file, 0) + 1
        self.metrics.spec_errors(counts)
        for error in self.catalog.errors:
            self.log.error(
                "invalid spec",
                file=error.file,
                line=error.line,
                field=error.field,
                error=error.message,
            )

    def _sync_jobs(self, before: dict[str, str]) -> None:
        specs = self.catalog.specs
        for name in set(before) - set(specs):
            self._remove_job(name)
        # Every spec is known before any job runs, so the first steps see the whole set
        # (the batched listing weighs its pages against the number of managed stacks).
        for loaded in specs.values():
            self.engine.track(loaded)
        for name, loaded in specs.items():
            if name not in before:
                self._add_job(name)
            elif before[name] != loaded.revision:
                self.log.info("new revision", name=name, revision=loaded.revision[:12])
                self.sync(name)

    def _add_job(self, name: str) -> None:
        self.scheduler.add_job(
            self.reconcile,
            "interval",
            args=[name],
            seconds=self.catalog.specs[name].deployment.spec.interval.total_seconds(),
            id=_job_id(name),
            next_run_time=self.clock(),
            replace_existing=True,
        )
        self.log.info("managing spec", name=name)

    def _remove_job(self, name: str) -> None:
        if self.scheduler.get_job(_job_id(name)) is not None:
            self.scheduler.remove_job(_job_id(name))
        self.engine.forget(name)
        with self._guard:
            self._paces.pop(name, None)
        self.log.info(
            "spec removed from git: no longer managed; its stack is left as it is", name=name
        )

    # --- fleets -------------------------------------------------------------------------

    def _refresh_fleets(self) -> None:
        """Let go of removed fleets whose members are done; refresh every fleet's gauges.
        Runs in the git poll only, the one thread that changes the catalog."""
        views = self.engine.fleet_views()
        fleets = self.catalog.fleets
        settled = {
            v.name for v in views if v.name in fleets and fleets[v.name].removed and _settled(v)
        }
        for name in sorted(settled):
            self.catalog.drop_fleet(name)
            self.log.info(
                "fleet removed from git: its members are done; no longer ordered", fleet=name
            )
        if settled:
            self.engine.set_fleets(self.catalog.fleets)
            views = [v for v in views if v.name not in settled]
        with self._guard:
            self._fleet_steps = {
                v.name: {m: s.index for s in v.steps for m in s.members} for v in views
            }
        self.metrics.keep_fleets({v.name for v in views})
        for v in views:
            self.observe_fleet(v.name, v.halt is not None)

    def observe_fleet(self, fleet: str, halted: bool | None = None) -> None:
        """reconciler_fleet_members and _halted of one fleet, from the members' phases now."""
        with self._guard:
            steps = dict(self._fleet_steps.get(fleet, {}))
        if not steps and fleet not in self.engine.fleet_names():
            return
        if halted is None:
            halted = self.store.fleet(fleet).halt is not None
        with self._fleet_gauges:
            counts: dict[tuple[int, str], int] = {}
            for member, step in steps.items():
                status = self.engine.status(member)
                if status is not None:
                    key = (step, str(status.phase))
                    counts[key] = counts.get(key, 0) + 1
            self.metrics.observe_fleet(fleet, counts, halted)

    def _fleet_of(self, name: str) -> str | None:
        with self._guard:
            return next((f for f, members in self._fleet_steps.items() if name in members), None)

    def fleet_members(self, fleet: str) -> list[str]:
        with self._guard:
            return sorted(self._fleet_steps.get(fleet, {}))

    # --- reconcile ----------------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        with self._job() as go:
            if go:
                self._reconcile(name)

    def _reconcile(self, name: str) -> None:
        loaded = self.catalog.specs.get(name)
        if loaded is None:
            return
        with self._guard:
            self._resync.discard(name)
        result = self.replicas.step(self.engine, loaded)
        if result is None:  # another replica drives it: ask again for the lease soon
            self._aws_answered = True
            job = self.scheduler.get_job(_job_id(name))
            delay = self.replicas.standby_delay(loaded.deployment.spec.interval)
            if job is not None and not self._stopped.is_set():
                job.modify(next_run_time=self.clock() + delay)
            return
        if result.error is None:
            self._aws_answered = True
        self._reschedule(name, loaded, result)
        fleet = self._fleet_of(name)
        if fleet is not None:
            self.observe_fleet(fleet)

    def _reschedule(self, name: str, loaded: catalog.LoadedSpec, result: engine.StepResult) -> None:
        now = self.clock()
        with self._guard:
            again = name in self._resync
            self._resync.discard(name)
        delay = self._delay(loaded, result, now)
        when = now if again else now + delay
        job = self.scheduler.get_job(_job_id(name))
        if job is not None and not self._stopped.is_set():
            job.modify(next_run_time=when)

    def _delay(
        self, loaded: catalog.LoadedSpec, result: engine.StepResult, now: dt.datetime
    ) -> dt.timedelta:
        """The wait before the spec's next step (requeue.next_run); keeps its pace."""
        name = loaded.deployment.name
        status = self.engine.status(name)
        failure = status.memory.failure if status else None
        sched = self.conf.scheduling
        with self._guard:
            delay, self._paces[name] = requeue.next_run(
                result,
                self._paces.get(name, requeue.Pace()),
                loaded.deployment.spec.interval,
                failure.next_retry_at if failure else None,
                now,
                requeue.Timing(sched.active_interval, sched.backoff_cap),
                random.uniform,
            )
        return delay

    def sync(self, name: str) -> bool:
        """Reconcile `name` now (or right after the step in flight)."""
        job = self.scheduler.get_job(_job_id(name))
        if job is None:
            return False
        with self._guard:
            self._resync.add(name)
        job.modify(next_run_time=self.clock())
        return True

    def trigger_git_poll(self) -> None:
        job = self.scheduler.get_job(GIT_JOB)
        if job is not None:
            job.modify(next_run_time=self.clock())

    # --- health -------------------------------------------------------------------------

    def healthy(self) -> bool:
        budget = max(3 * self.conf.git.poll_interval.total_seconds(), 60.0)
        return bool(self.scheduler.running) and time.monotonic() - self._heartbeat < budget

    def ready(self) -> bool:
        return self._git_read and (self._aws_answered or not self.catalog.specs)


def _settled(fleet: waves.FleetView) -> bool:
    """Every member done (in sync, failed or paused) and none under way."""
    return all(set(s.done) == set(s.members) and not s.in_flight for s in fleet.steps)


class Controller:
    """What the HTTP server may ask of the daemon (server.Controller)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def stacks(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.d.engine.statuses()]

    def stack(self, name: str) -> dict[str, Any] | None:
        status = self.d.engine.status(name)
        return status.to_json() if status else None

    def history(self, name: str) -> list[dict[str, Any]] | None:
        if self.d.engine.status(name) is None:
            return None
        return [view.rollout_json(r) or {} for r in self.d.store.history(name)]

    def control(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        status = self.d.engine.status(name)
        if status is None:
            raise KeyError(name)
        parsed = server.control_body(action, body)  # ValueError: unknown action or bad body
        message = self._actions()[action](name, status, parsed)
        self.d.log.info("control", name=name, action=action, result=message)
        self.d.sync(name)
        return {"name": name, "action": action, "result": message}

    def _actions(self) -> dict[str, Callable[[str, view.StackStatus, server.ControlBody], str]]:
        return {
            "sync": lambda n, s, b: "reconcile scheduled now",
            "pause": self._pause,
            "resume": lambda n, s, b: (
                "resumed" if self.d.store.resume(n) else "was not paused at runtime"
            ),
            "approve": self._approve,
            "override-window": self._override_window,
            "retry": lambda n, s, b: (
                "retrying now" if self.d.store.retry(n, self.d.clock()) else "no failure to retry"
            ),
        }

    def _pause(self, name: str, status: view.StackStatus, body: server.ControlBody) -> str:
        assert isinstance(body, server.ReasonedBody)
        self.d.store.pause(name, body.reason, self.d.clock(), body.until)
        return f"paused: {body.reason}"

    def _override_window(
        self, name: str, status: view.StackStatus, body: server.ControlBody
    ) -> str:
        assert isinstance(body, server.ReasonedBody)
        now = self.d.clock()
        until = body.until or now + OVERRIDE_DEFAULT
        if until <= now:
            raise ValueError("until must be in the future")
        self.d.store.override_window(name, body.reason, now, until)
        return f"rollout windows overridden until {until.isoformat()}: {body.reason}"

    def _approve(self, name: str, status: view.StackStatus, body: server.ControlBody) -> str:
        image = status.deployment.spec.image
        self.d.store.approve(name, image, self.d.clock())
        return f"approved switching to {image}"

    def fleets(self) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.d.engine.fleet_views()]

    def fleet(self, name: str) -> dict[str, Any] | None:
        if name not in self.d.engine.fleet_names():
            return None
        found = [v for v in self.d.engine.fleet_views() if v.name == name]
        return found[0].to_json() if found else None

    def fleet_control(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if name not in self.d.engine.fleet_names():
            raise KeyError(name)
        parsed = server.control_body(action, body, server.FLEET_CONTROL_BODIES)
        was = self.d.store.fleet(name).halt
        if action == "pause":
            assert isinstance(parsed, server.FleetPauseBody)
            if self.d.engine.halt_fleet(name, parsed.reason):
                message = f"halted: {parsed.reason}"
            else:
                message = f"was already halted: {was.reason if was else '-'}"
        else:
            retried = self.d.engine.lift_fleet(name, retry=action == "retry")
            message = "resumed" if was is not None else "was not halted"
            if action == "retry":
                message += (
                    f"; retrying now: {', '.join(retried)}" if retried else "; no failed member"
                )
            message += "; failures so far no longer count against the budget"
        self.d.log.info("fleet control", fleet=name, action=action, result=message)
        self.d.observe_fleet(name)
        # Each member reacts now, not at its own pace (a halted member may be backing off).
        for member in self.d.fleet_members(name):
            self.d.sync(member)
        return {"name": name, "action": action, "result": message}

    def trigger_git_poll(self) -> None:
        self.d.trigger_git_poll()

    def healthy(self) -> bool:
        return self.d.healthy()

    def ready(self) -> bool:
        return self.d.ready()


def run(conf: settings.Settings, forge_factory: ForgeFactory | None = None) -> int:
    """Run until SIGTERM or SIGINT; exit 0 after a clean drain, 2 (one line on stderr) when
    the specs ask for what the settings forbid."""
    try:
        daemon = Daemon(conf, forge_factory=forge_factory)
    except Refused as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_REFUSED
    refusal = daemon.refusal()
    if refusal is not None:
        daemon.close_unstarted()
        sys.stderr.write(refusal + "\n")
        return EXIT_REFUSED
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        daemon.log.info("signal received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    stop.wait()
    daemon.stop()
    return 0
