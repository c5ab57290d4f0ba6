"""`reconciler`: the command line of CONTRACT section 4.

Rules of this file:
- Exit codes: 0 ok, 1 a check failed (invalid spec, rollout failed), 2 usage error.
- Options layer as flags > `RECONCILER_<OPTION>` environment > `--config` file > defaults.
- Commands that change a running daemon go through its HTTP API; `plan`, `apply` and
  `validate` work without one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import heapq
import json
import math
import os
import pathlib
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import yaml

from reconciler import (
    __version__,
    assemble,
    catalog,
    engine,
    logs,
    model,
    notify,
    settings,
    source,
    spec,
)
from reconciler.aws.ratelimit import parse_rate
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TERMINAL = frozenset({Phase.IN_SYNC, Phase.FAILED, Phase.BLOCKED, Phase.PAUSED})


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"{text!r} is not true or false")
    return lowered in ("1", "true", "yes")


# (flag, settings path, parser, help): the options every command understands.
COMMON: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("repo", "git.repo", str, "URL or path of the git repository with the specs (default .)"),
    ("branch", "git.branch", str, "branch to follow (default main)"),
    ("path", "git.path", str, "folder of spec files in the repository (default deploy-specs)"),
    ("state-dir", "state_dir", pathlib.Path, "where the git clone and the store live"),
    ("listen", "http.listen", str, "HTTP address of the daemon (default 127.0.0.1:9108)"),
    ("endpoint-url", "aws.endpoint_url", str, "AWS endpoint, e.g. a local emulator"),
    ("log-format", "log_format", str, "json | console | auto"),
    ("log-level", "log_level", str, "debug | info | warning"),
    ("poll-interval", "git.poll_interval", spec.parse_duration, "git poll period, e.g. 30s"),
    ("token", "http.token", str, "bearer token of the daemon's controls"),
    ("webhook-secret", "http.webhook_secret", str, "HMAC secret of the git webhook"),
    (
        "allow-unauthenticated-controls",
        "http.allow_unauthenticated_controls",
        _boolean,
        "accept runtime controls without a token (never on a shared network)",
    ),
    (
        "workers",
        "scheduling.workers",
        _positive_int,
        "reconcile steps that may run at once (default 8)",
    ),
    (
        "aws-rate",
        "aws.rate",
        parse_rate,
        "upper bound of AWS requests per second per account, region and service, "
        "e.g. 50/s (default); halves on throttling",
    ),
    (
        "active-interval",
        "scheduling.active_interval",
        spec.parse_duration,
        "reconcile period while a rollout moves (default 1s)",
    ),
    # Webhook URLs are secrets: the environment variables keep them out of `ps`.
    ("notify-url", "notify.url", str, "JSON webhook told of rollout transitions (a secret)"),
    ("notify-slack-url", "notify.slack_url", str, "Slack webhook told of transitions (a secret)"),
    (
        "lock-table",
        "replicas.lock_table",
        str,
        "DynamoDB table [REGION:]NAME shared by replicas (store and per-stack leases)",
    ),
    ("replica-id", "replicas.replica_id", str, "this replica's name in leases (hostname-pid)"),
    ("lease-ttl", "replicas.lease_ttl", spec.parse_duration, "per-stack lease length (30s)"),
    (
        "verify-signatures",
        "git.verify_signatures",
        _boolean,
        "deploy only commits signed by an allowed key (needs --gpg-home, --allowed-keys)",
    ),
    ("gpg-home", "git.gpg_home", pathlib.Path, "keyring (GNUPGHOME) with the allowed public keys"),
    (
        "allowed-keys",
        "git.allowed_keys",
        lambda text: tuple(k for k in text.replace(",", " ").split() if k),
        "fingerprints of the keys allowed to sign deployed commits, comma-separated",
    ),
)
SWITCHES = frozenset({"verify-signatures"})  # flags that need no value, like allow-*


class UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        conf = load_settings(args, os.environ)
    except UsageError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(conf.log_format, conf.log_level)  # type: ignore[arg-type]
    handler: Callable[[argparse.Namespace, settings.Settings], int] = args.handler
    try:
        return handler(args, conf)
    except UsageError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except source.GitError as exc:
        print(f"reconciler: git: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StoreError as exc:
        # e.g. a second daemon on a state dir in use: one line, not a traceback.
        print(f"reconciler: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


# --- options --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Roll new machine images out to CloudFormation stacks from git: "
        "migrations first, then the API servers. Start with `reconciler demo`.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    for flag, _, _, help_text in COMMON:
        is_switch = flag.startswith("allow-") or flag in SWITCHES
        common.add_argument(
            f"--{flag}",
            nargs="?" if is_switch else None,
            const="true" if is_switch else None,
            help=f"{help_text} [env RECONCILER_{_env(flag)}]",
        )
    common.add_argument("--config", help="YAML file with the same option names")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, handler, help_text, extra in _COMMANDS:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        extra(p)
        p.set_defaults(handler=handler)
    return parser


def _env(flag: str) -> str:
    return flag.upper().replace("-", "_")


def load_settings(
    args: argparse.Namespace, environ: os._Environ[str] | dict[str, str]
) -> settings.Settings:
    """Flags over environment over config file over defaults."""
    values: dict[str, Any] = {}
    config = getattr(args, "config", None) or environ.get("RECONCILER_CONFIG")
    if config:
        values.update(_config_file(pathlib.Path(config)))
    for flag, _, _, _ in COMMON:
        env = environ.get(f"RECONCILER_{_env(flag)}")
        if env is not None:
            values[flag] = env
        given = getattr(args, flag.replace("-", "_"), None)
        if given is not None:
            values[flag] = given
    conf = settings.Settings()
    for flag, path, parse, _ in COMMON:
        if flag in values:
            try:
                conf = _set(conf, path, parse(str(values[flag])))
            except ValueError as exc:
                raise UsageError(f"--{flag}: {exc}") from exc
    if conf.log_format not in ("json", "console", "auto"):
        raise UsageError("--log-format must be json, console or auto")
    _check_signatures(conf.git)
    return _notify_sinks(conf, values.get("notify"))


def _check_signatures(git: settings.GitSettings) -> None:
    """--verify-signatures with no keyring or no key would trust nothing: a usage error."""
    if git.verify_signatures:
        try:
            source.SignaturePolicy.of(git.gpg_home, git.allowed_keys)
        except ValueError as exc:
            raise UsageError(f"--verify-signatures: {exc}") from exc


def _notify_sinks(conf: settings.Settings, raw: object) -> settings.Settings:
    """The config file's `notify:` list (sinks with routing), checked with the flags' sinks."""
    try:
        conf = _set(conf, "notify.sinks", notify.parse_sinks(raw))
        notify.configured(conf.notify)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return conf


def _config_file(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--config {path}: {exc}") from exc
    known = {flag for flag, _, _, _ in COMMON} | {"notify"}
    if not isinstance(data, dict) or set(data) - known:
        unknown = sorted(set(data) - known) if isinstance(data, dict) else data
        raise UsageError(f"--config {path}: unknown option(s) {unknown}")
    return data


def _set(conf: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(conf, **{head: value})
    return dataclasses.replace(conf, **{head: _set(getattr(conf, head), rest, value)})


# --- validate -------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, conf: settings.Settings) -> int:
    paths = [pathlib.Path(p) for p in args.paths] or [pathlib.Path(conf.git.path)]
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
    specs, errors = catalog.load_paths(paths)
    for error in errors:
        print(error)
    if errors:
        print(f"{len(errors)} error(s) in {len({e.file for e in errors})} file(s)", file=sys.stderr)
        return EXIT_FAILED
    print(f"{len(specs)} spec(s) valid: {', '.join(sorted(specs)) or '-'}")
    return EXIT_OK


# --- plan and apply -------------------------------------------------------------------


@dataclasses.dataclass
class Local:
    """What `plan` and `apply` need without a daemon: specs from git, an engine."""

    specs: dict[str, catalog.LoadedSpec]
    errors: tuple[spec.SpecError, ...]
    engine: engine.Engine
    store: Store


def _local(conf: settings.Settings) -> Local:
    cat = catalog.Catalog()
    cat.update(assemble.git_source(conf).poll())
    store = Store.in_state_dir(conf.state_dir)
    metrics = Metrics()
    clients = assemble.clients(conf, metrics)
    eng = engine.Engine(
        clients, store, metrics, assemble.policy(conf), fresh=conf.scheduling.active_interval
    )
    return Local(cat.specs, cat.errors, eng, store)


def cmd_plan(args: argparse.Namespace, conf: settings.Settings) -> int:
    local = _local(conf)
    rows = []
    for loaded in sorted(local.specs.values(), key=lambda s: s.deployment.name):
        observed, decision = local.engine.preview(loaded)
        rows.append(_plan_row(loaded, observed, decision))
    errors = [str(e) for e in local.errors]
    print(_render_plan(rows, errors, args.format))
    return EXIT_FAILED if errors else EXIT_OK


def _plan_row(
    loaded: catalog.LoadedSpec, observed: model.Observed, decision: model.Decision
) -> dict[str, Any]:
    sp = loaded.deployment.spec
    live = dict(observed.stack.parameters) if observed.stack else {}
    return {
        "name": loaded.deployment.name,
        "stackName": sp.stack_name,
        "revision": loaded.revision,
        "desiredImage": sp.image,
        "liveImage": live.get(sp.parameter_names.api_image),
        "stackStatus": observed.stack.status if observed.stack else None,
        "phase": str(decision.phase),
        "next": decision.message,
        "update": decision.update.changes if decision.update else None,
        "updateKind": decision.update.kind if decision.update else None,
    }


def _render_plan(rows: list[dict[str, Any]], errors: list[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"stacks": rows, "errors": errors}, indent=2)
    if fmt == "markdown":
        lines = [
            "| spec | stack | desired image | live image | phase | next step |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| `{r['name']}` | {r['stackName']} | `{r['desiredImage']}` | "
                f"`{r['liveImage']}` | {r['phase']} | {_md(r['next'])} |"
            )
        lines += [f"\n:warning: `{e}`" for e in errors]
        return "\n".join(lines)
    lines = []
    for r in rows:
        lines.append(f"{r['name']} ({r['stackName']}): {r['liveImage']} -> {r['desiredImage']}")
        lines.append(f"  phase: {r['phase']}; next: {r['next']}")
        if r["update"]:
            changes = ", ".join(f"{k}={v}" for k, v in sorted(r["update"].items()))
            lines.append(f"  would update ({r['updateKind']}): {changes}")
    lines += [f"error: {e}" for e in errors]
    return "\n".join(lines) or "no specs"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def cmd_apply(args: argparse.Namespace, conf: settings.Settings) -> int:
    timeout, interval = _wait_options(args, conf)  # before git or AWS: a typo costs nothing
    local = _local(conf)
    for error in local.errors:
        print(f"error: {error}", file=sys.stderr)
    if not local.specs:
        print("no specs to apply", file=sys.stderr)
        return EXIT_FAILED if local.errors else EXIT_OK
    if not args.wait:
        results = [local.engine.step(loaded) for _, loaded in sorted(local.specs.items())]
        for r in results:
            print(_result_line(r))
        failed = any(r.phase in (Phase.FAILED, Phase.BLOCKED) or r.error for r in results)
        return EXIT_FAILED if failed or local.errors else EXIT_OK
    return _apply_wait(local, conf.scheduling.workers, timeout, interval)


def _wait_options(args: argparse.Namespace, conf: settings.Settings) -> tuple[dt.timedelta, float]:
    """`--timeout` and `--interval`, or a one-line usage error naming the option."""
    try:
        timeout = spec.parse_duration(args.timeout)
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from exc
    if args.interval is None:  # a rollout's tick, as the daemon's
        return timeout, conf.scheduling.active_interval.total_seconds()
    try:
        interval = float(args.interval)
    except ValueError:
        interval = math.nan
    if not math.isfinite(interval) or interval <= 0:
        raise UsageError(
            f"--interval: {args.interval!r} is not a number of seconds above zero, such as 2 or 0.5"
        )
    return timeout, interval


def _result_line(r: engine.StepResult) -> str:
    sent = f" [update {r.sent}]" if r.sent else ""
    err = f" error: {r.error}" if r.error else ""
    return f"{r.name}: {r.phase}: {r.message}{sent}{err}"


def _apply_wait(local: Local, workers: int, timeout: dt.timedelta, interval: float) -> int:
    """Drive every spec to a terminal phase in the foreground, printing each change."""
    # Every spec is known before any step, as in the daemon: the first steps run at once and
    # each must see the whole set (a promotion's upstream, the stacks per account).
    for loaded in local.specs.values():
        local.engine.track(loaded)
    waiting = _Waiting(local, interval)
    with futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
        try:
            waiting.run(pool, time.monotonic() + timeout.total_seconds())
        finally:
            # Ctrl-C or the timeout: queued steps are dropped, the ones in flight finish.
            pool.shutdown(wait=True, cancel_futures=True)
    unfinished = waiting.unfinished()
    if unfinished:
        print(
            f"timed out after {spec.format_duration(timeout)}; not finished: {unfinished}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    ok = all(r.phase in (Phase.IN_SYNC, Phase.PAUSED) for r in waiting.results.values())
    return EXIT_OK if ok and not local.errors else EXIT_FAILED


class _Waiting:
    """`apply --wait`: every spec stepped on a pool, each `interval` after its last step.

    The main thread keeps a heap of (due time, name) and hands due specs to the pool; a spec
    goes back on the heap only when its step has returned, so one spec never has two steps
    at once, and with more specs than workers each waits its turn in the pool's queue
    instead of behind another spec's whole rollout.
    """

    def __init__(self, local: Local, interval: float) -> None:
        self.local = local
        self.interval = interval
        self.results: dict[str, engine.StepResult] = {}
        self._done: set[str] = set()
        self._last: dict[str, str] = {}
        self._print = threading.Lock()  # one line at a time; also guards the results
        self._wake = threading.Event()  # a step returned; the main thread has work

    def run(self, pool: futures.Executor, deadline: float) -> None:
        """Until every spec is done or the deadline (time.monotonic()) passes."""
        due = [(time.monotonic(), name) for name in sorted(self.local.specs)]
        running: dict[futures.Future[bool], str] = {}
        while (due or running) and time.monotonic() < deadline:
            self._submit_due(pool, due, running)
            until = min(due[0][0] if due else deadline, deadline)
            # An Event, not time.sleep: a returning step wakes it at once, Ctrl-C ends it.
            self._wake.wait(max(until - time.monotonic(), 0.0))
            self._wake.clear()
            self._collect(due, running)

    def _submit_due(
        self,
        pool: futures.Executor,
        due: list[tuple[float, str]],
        running: dict[futures.Future[bool], str],
    ) -> None:
        while due and due[0][0] <= time.monotonic():
            _, name = heapq.heappop(due)
            future = pool.submit(self.step, name)
            future.add_done_callback(lambda _: self._wake.set())
            running[future] = name

    def _collect(
        self, due: list[tuple[float, str]], running: dict[futures.Future[bool], str]
    ) -> None:
        """Specs whose step returned and are not done go back on the heap, `interval` on."""
        for future in [f for f in running if f.done()]:
            name = running.pop(future)
            if not future.result():  # a step's exception (say the store) ends the command
                # AWS offers no push; polling is the only way to see a stack move.
                heapq.heappush(due, (time.monotonic() + self.interval, name))

    def step(self, name: str) -> bool:
        """One step of `name` on a worker; prints its line if it changed; True once done."""
        r = self.local.engine.step(self.local.specs[name])
        line = _result_line(r)
        done = r.phase in TERMINAL and r.requeue != "active"
        with self._print:
            if self._last.get(name) != line:
                print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} {line}", flush=True)
                self._last[name] = line
            self.results[name] = r
            if done:
                self._done.add(name)
        return done

    def unfinished(self) -> str:
        """The specs not done, with their last phase: `a (Migrating), b (not stepped)`."""
        with self._print:
            names = sorted(set(self.local.specs) - self._done)
            return ", ".join(
                f"{n} ({self.results[n].phase if n in self.results else 'not stepped'})"
                for n in names
            )


# --- commands through the daemon's HTTP API ------------------------------------------


def _daemon(
    conf: settings.Settings, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    url = f"http://{conf.http.listen}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if conf.http.token:
        request.add_header("Authorization", f"Bearer {conf.http.token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise UsageError(f"daemon answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise UsageError(f"no daemon at {url}: {exc.reason}") from exc


def cmd_status(args: argparse.Namespace, conf: settings.Settings) -> int:
    path = f"/api/v1/stacks/{args.name}" if args.name else "/api/v1/stacks"
    data = _daemon(conf, "GET", path)
    stacks = [data] if args.name else data["stacks"]
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{'NAME':<24} {'STACK':<20} {'PHASE':<17} {'LIVE':<22} {'DESIRED':<22} MESSAGE")
    for s in stacks:
        live = s["live"].get("image") or "-"  # read through the spec's parameterNames
        print(
            f"{s['name']:<24} {s['stackName']:<20} {s['phase']:<17} {live:<22} "
            f"{s['desired']['image']:<22} {s['message']}"
        )
    return EXIT_OK


def _control(action: str) -> Callable[[argparse.Namespace, settings.Settings], int]:
    def run(args: argparse.Namespace, conf: settings.Settings) -> int:
        body: dict[str, Any] = {}
        if action in ("pause", "override-window"):
            body["reason"] = args.reason
            if args.until:
                body["until"] = args.until
        answer = _daemon(conf, "POST", f"/api/v1/stacks/{args.name}/{action}", body)
        print(json.dumps(answer, indent=2))
        return EXIT_OK

    return run


def cmd_history(args: argparse.Namespace, conf: settings.Settings) -> int:
    rows = _daemon(conf, "GET", f"/api/v1/stacks/{args.name}/history")["history"]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        print(
            f"#{r['id']} {r['startedAt']} {r.get('fromImage') or '-'} -> {r['image']} "
            f"rev {r['revision'][:12]}: {r['result'] or 'in progress'}"
            + (f" ({r['reason']})" if r.get("reason") else "")
        )
        for label, key in (
            ("migrate", "phase1StartedAt"),
            ("migrated", "migratedAt"),
            ("switch", "switchStartedAt"),
            ("switched", "switchedAt"),
            ("finished", "finishedAt"),
        ):
            if r.get(key):
                print(f"    {label:<9} {r[key]}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, conf: settings.Settings) -> int:
    from reconciler import daemon  # noqa: PLC0415 (the daemon pulls in the scheduler)

    return daemon.run(conf)


def cmd_demo(args: argparse.Namespace, conf: settings.Settings) -> int:
    from reconciler.embedded import demo  # type: ignore[attr-defined,unused-ignore]  # noqa: PLC0415 (optional)

    result: int = demo.run(args.scenario, keep_running=args.keep_running, timeout=args.timeout)
    return result


def _no_args(p: argparse.ArgumentParser) -> None:
    pass


def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="metadata.name of the spec")


def _pause_args(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--reason", required=True, help="why; shown in status and logs")
    p.add_argument("--until", help="RFC 3339 time when the pause ends by itself")


def _override_args(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--reason", required=True, help="why; recorded and logged")
    p.add_argument("--until", help="RFC 3339 time the override ends (default: in one hour)")


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", choices=["table", "json"], default="table")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    _output(p)


def _history_args(p: argparse.ArgumentParser) -> None:
    _name(p)
    _output(p)


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="spec files or folders")


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text")


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        action="store_true",
        help="drive each spec to convergence, up to --workers specs stepped at once",
    )
    p.add_argument("--timeout", default="1h", help="with --wait: give up after this long")
    p.add_argument(
        "--interval",
        default=None,
        help="with --wait: seconds between two steps of one spec (default: --active-interval)",
    )


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        choices=["happy", "migration-fails", "update-rolls-back", "paused"],
        default="happy",
    )
    p.add_argument("--keep-running", action="store_true", help="stay up to look at it")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")


_COMMANDS: tuple[
    tuple[str, Callable[..., int], str, Callable[[argparse.ArgumentParser], None]], ...
] = (
    ("run", cmd_run, "run the daemon", _no_args),
    (
        "validate",
        cmd_validate,
        "check spec files (default: the --path folder)",
        _validate_args,
    ),
    (
        "plan",
        cmd_plan,
        "desired vs live and the next step per spec; changes nothing",
        _plan_args,
    ),
    ("apply", cmd_apply, "one reconcile step per spec now", _apply_args),
    (
        "status",
        cmd_status,
        "the table a running daemon reports",
        _status_args,
    ),
    ("pause", _control("pause"), "pause a stack at runtime", _pause_args),
    ("resume", _control("resume"), "resume a stack paused at runtime", _name),
    ("approve", _control("approve"), "approve the switch after migrations", _name),
    ("retry", _control("retry"), "retry a failed rollout now", _name),
    ("sync", _control("sync"), "reconcile a stack now", _name),
    (
        "override-window",
        _control("override-window"),
        "let a stack start a rollout outside its rollout windows (recorded)",
        _override_args,
    ),
    ("history", cmd_history, "past rollouts of a stack", _history_args),
    ("demo", cmd_demo, "the whole rollout on an embedded AWS emulator", _demo_args),
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
