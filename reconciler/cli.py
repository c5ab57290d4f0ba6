"""`reconciler`: the command line of CONTRACT section 4.

Rules of this file:
- Exit codes: 0 ok, 1 a check failed (invalid spec, rollout failed), 2 usage error.
- Options layer as flags > `RECONCILER_<OPTION>` environment > `--config` file > defaults.
  They are declared in settings.py; each command's flags are generated from there, and a
  command reads only the options it uses (others' variables and config keys are ignored).
- A usage error is one line naming the option as the user wrote it, and exit 2.
- Commands that change a running daemon go through its HTTP API; `plan`, `apply` and
  `validate` work without one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import heapq
import json
import os
import pathlib
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, NoReturn, TypeVar

import yaml

from reconciler import (
    __version__,
    assemble,
    catalog,
    engine,
    logs,
    notify,
    plans,
    settings,
    source,
    spec,
)
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import StateDirLocked, Store, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TERMINAL = frozenset({Phase.IN_SYNC, Phase.FAILED, Phase.BLOCKED, Phase.PAUSED})
T = TypeVar("T")


class UsageError(Exception):
    """A usage error: printed as one line after `reconciler: `, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = _parse(parser, argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return EXIT_USAGE
        conf = load_settings(args, os.environ)
    except UsageError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version print and stop argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
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


# --- options: generated from settings.options() -----------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with each usage error one line that says where to look (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):  # `--timeout: ...`, as a setting's error reads
            raise UsageError(message.removeprefix("argument "))
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _Help(argparse.HelpFormatter):
    """Lines wrap between words only: `--poll-interval`, `deploy-specs` stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
            break_on_hyphens=False,
        )  # fmt: skip


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = getattr(args, "command", None)
        prog = f"reconciler {command}" if command else "reconciler"
        where = f"{command}: " if command else ""
        # The flags only: the value after an unknown flag may be a secret (--token T).
        shown = [a.split("=")[0] for a in unknown if a.startswith("-")] or unknown
        raise UsageError(f"{where}unrecognized arguments: {' '.join(shown)} (see `{prog} --help`)")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconciler",
        description="Roll new machine images out to CloudFormation stacks from git: "
        "migrations first, then the API servers. Start with `reconciler demo`.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, handler, help_text, extra in _COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Help)
        extra(p)
        _add_options(p, name)
        p.set_defaults(handler=handler)
    return parser


CONTRACT_COMMON = frozenset(
    {"repo", "branch", "path", "state-dir", "listen", "endpoint-url", "log-format", "poll-interval"}
)


def _add_options(p: argparse.ArgumentParser, command: str) -> None:
    """The flags of the settings `command` uses; the config-only ones named in the epilog."""
    group = p.add_argument_group(
        "settings", "each also RECONCILER_<NAME> in the environment and a key of --config"
    )
    quiet = []
    for _, opt, field in settings.options():
        if command not in opt.commands:
            if opt.name in CONTRACT_COMMON:
                # CONTRACT section 4 names these common to every command: a script may pass
                # them to any; one this command does not use is accepted, unshown, unread.
                p.add_argument(f"--{opt.name}", dest=f"unused_{_dest(opt)}", help=argparse.SUPPRESS)
            continue
        if not opt.flag:
            quiet.append(opt.name if opt.env else f"{opt.name} (config file only)")
            continue
        group.add_argument(
            f"--{opt.name}",
            dest=_dest(opt),
            nargs="?" if opt.switch else None,
            const="true" if opt.switch else None,
            metavar="BOOL" if opt.switch else opt.name.split("-")[-1].upper(),
            help=f"{opt.help}{_shown_default(opt, field)} [env {opt.env_name}]",
        )
    group.add_argument(
        "--config", metavar="FILE", help="YAML file of settings [env RECONCILER_CONFIG]"
    )
    if quiet:
        p.epilog = f"Also read (docs/contract.md), not flags: {', '.join(quiet)}."


def _dest(opt: settings.Option) -> str:
    return "setting_" + opt.name.replace("-", "_")


def _shown_default(opt: settings.Option, field: dataclasses.Field[Any]) -> str:
    value = field.default
    if opt.shown_default is not None:
        return f" (default {opt.shown_default})"
    if value is dataclasses.MISSING or value in (None, (), False):
        return ""
    if isinstance(value, dt.timedelta):
        return f" (default {spec.format_duration(value)})"
    return f" (default {value})"


def load_settings(
    args: argparse.Namespace, environ: os._Environ[str] | dict[str, str]
) -> settings.Settings:
    """Flags over environment over config file over defaults, for the options `args.command`
    uses; the environment variables and config keys of other commands are not read."""
    declared = [(p, o) for p, o, _ in settings.options() if args.command in o.commands]
    given: dict[str, tuple[str, object]] = {}  # option name -> (as the user wrote it, value)
    config = getattr(args, "config", None) or environ.get("RECONCILER_CONFIG")
    if config:
        for key, value in _config_file(pathlib.Path(config)).items():
            given[key] = (f"--config {config}: {key}", value)
    for _, opt in declared:
        if opt.env and environ.get(opt.env_name):  # empty counts as unset, as in Click
            given[opt.name] = (opt.env_name, environ[opt.env_name])
        flag = getattr(args, _dest(opt), None)
        if flag is not None:
            given[opt.name] = (f"--{opt.name}", flag)
    conf = settings.Settings()
    for path, opt in declared:
        if opt.name in given and opt.parse is not None:
            where, value = given[opt.name]
            try:
                conf = settings.replace(conf, path, opt.parse(_text(value)))
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}") from exc
    if args.command in settings.RUN:
        conf = _notify_sinks(conf, given.get("notify"))
    _check_signatures(conf.git, given.get("verify-signatures", ("",))[0])
    return conf


def _text(value: object) -> str:
    """A config file's YAML value as the text a flag would carry; ValueError if it has none."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(str(v) for v in value)
    if value is None:
        raise ValueError("wants a value, got none")
    raise ValueError(f"wants a single value, not a {type(value).__name__}")


def _check_signatures(git: settings.GitSettings, where: str) -> None:
    """--verify-signatures with no keyring or no key would trust nothing: a usage error."""
    if git.verify_signatures:
        try:
            source.SignaturePolicy.of(git.gpg_home, git.allowed_keys)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from exc


def _notify_sinks(conf: settings.Settings, given: tuple[str, object] | None) -> settings.Settings:
    """The config file's `notify:` list (sinks with routing), checked with the flags' sinks."""
    where, raw = given or ("notify", None)
    try:
        conf = settings.replace(conf, "notify.sinks", notify.parse_sinks(raw))
    except ValueError as exc:
        raise UsageError(f"{where.removesuffix(': notify')}: {exc}") from exc
    try:
        notify.configured(conf.notify)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return conf


def _config_file(path: pathlib.Path) -> dict[str, Any]:
    """The file's settings; a key no command knows is refused, naming it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as exc:  # where, not the line itself: it may hold a secret
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"--config {path}: not YAML: {exc.problem}{at}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--config {path}: {' '.join(str(exc).split())}") from exc
    known = {opt.name for _, opt, _ in settings.options()}
    if not isinstance(data, dict) or set(data) - known:
        unknown = sorted(set(data) - known) if isinstance(data, dict) else data
        raise UsageError(f"--config {path}: unknown option(s) {unknown}")
    return data


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """A parser for argparse's `type=`: its ValueError becomes argparse's one-line error."""

    def checked(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return checked


def _rfc3339(text: str) -> str:
    """A time the daemon accepts for `--until` (as a spec's pause.until), checked here."""
    try:
        until = spec.Pause.model_validate({"reason": "-", "until": text}).until
    except ValueError:
        until = None
    if until is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time, such as 2026-12-01T18:00:00Z")
    return text


# --- validate -------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, conf: settings.Settings) -> int:
    paths = [pathlib.Path(p) for p in args.paths] or [pathlib.Path(conf.git.path)]
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
    specs, fleets, errors = catalog.load_paths(paths)
    for error in errors:
        print(error)
    if errors:
        print(f"{len(errors)} error(s) in {len({e.file for e in errors})} file(s)", file=sys.stderr)
        return EXIT_FAILED
    print(f"{len(specs)} spec(s) valid: {', '.join(sorted(specs)) or '-'}")
    if fleets:  # a folder without fleets prints what it printed before fleets existed
        print(f"{len(fleets)} fleet(s) valid: {', '.join(sorted(fleets))}")
    return EXIT_OK


# --- plan and apply -------------------------------------------------------------------


@dataclasses.dataclass
class Local:
    """What `plan` and `apply` need without a daemon: specs from git, an engine."""

    specs: dict[str, catalog.LoadedSpec]
    fleets: dict[str, catalog.LoadedFleet]
    errors: tuple[spec.SpecError, ...]
    engine: engine.Engine
    store: Store


def _local(conf: settings.Settings) -> Local:
    """The engine keeps the fleets' order; `plan` previews with it, storing nothing."""
    cat = catalog.Catalog()
    with assemble.git_source(conf) as specs:  # its `git cat-file` readers end here
        cat.update(specs.poll())
    store = Store.in_state_dir(conf.state_dir)
    metrics = Metrics()
    eng = assemble.reconcile_engine(conf, assemble.clients(conf, metrics), store, metrics)
    eng.set_fleets(cat.fleets)
    # A turn is judged from the members the engine knows: all of them, before any step.
    for loaded in cat.specs.values():
        eng.track(loaded)
    return Local(cat.specs, cat.fleets, cat.errors, eng, store)


def cmd_plan(args: argparse.Namespace, conf: settings.Settings) -> int:
    local = _local(conf)
    rows = plans.rows(local.engine, local.specs.values(), local.fleets, args.change_set)
    errors = [str(e) for e in local.errors]
    print(plans.render(rows, plans.fleets(rows, local.fleets), errors, args.format))
    return EXIT_FAILED if errors else EXIT_OK


def cmd_apply(args: argparse.Namespace, conf: settings.Settings) -> int:
    # The state dir's lock, as `run` takes it: two processes stepping the same stacks from
    # one store would each send what the other already sent.
    try:
        lock = Store.lock_state_dir(conf.state_dir)
    except StateDirLocked as exc:
        raise StoreError(
            f"apply: {exc} (with a daemon there, ask it: `reconciler sync NAME`)"
        ) from exc
    with lock:
        return _apply(args, conf)


def _apply(args: argparse.Namespace, conf: settings.Settings) -> int:
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
    # --interval defaults to a rollout's tick, as the daemon's.
    interval = args.interval or conf.scheduling.active_interval.total_seconds()
    return _apply_wait(local, conf.scheduling.workers, args.timeout, interval)


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
    conf: settings.Settings,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    missing: Any = None,
) -> Any:
    """The daemon's JSON answer; `missing` (when not None) stands for a 404 answer."""
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
        if exc.code == 404 and missing is not None:
            return missing
        detail = exc.read().decode(errors="replace")
        raise UsageError(f"daemon answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise UsageError(f"no daemon at {url}: {exc.reason}") from exc


def cmd_status(args: argparse.Namespace, conf: settings.Settings) -> int:
    path = f"/api/v1/stacks/{args.name}" if args.name else "/api/v1/stacks"
    data = _daemon(conf, "GET", path)
    stacks = [data] if args.name else data["stacks"]
    fleets: list[dict[str, Any]] = []
    if not args.name:
        # A daemon from before fleets answers 404: it has none to show.
        fleets = _daemon(conf, "GET", "/api/v1/fleets", missing={}).get("fleets", [])
        data = {**data, "fleets": fleets}
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
        if s.get("drift"):  # absent from a daemon older than drift reports
            print(f"{'':<24} drift: {plans.drift_line(s['drift'])}")
    if fleets:
        print()
        print(_fleet_table(fleets))
    return EXIT_OK


def _fleet_table(fleets: list[dict[str, Any]]) -> str:
    """FLEETS: per fleet its step now (the first with a member not done) of all, members
    done of all, those under way, failures against the budget, and why it is halted."""
    lines = [
        "FLEETS",
        f"{'NAME':<24} {'HALTED':<7} {'STEP':<6} {'DONE':<8} {'FAILED':<7} {'IN FLIGHT':<30} "
        "REASON",
    ]
    for f in fleets:
        steps = f["steps"]
        pending = [s["step"] for s in steps if len(s["done"]) < len(s["members"])]
        step = f"{pending[0]}/{len(steps)}" if pending else "done"
        done = sum(len(s["done"]) for s in steps)
        members = sum(len(s["members"]) for s in steps)
        moving = f["inFlight"]
        flight = ", ".join(moving[:3]) + (f" +{len(moving) - 3}" if len(moving) > 3 else "")
        failed = f"{len(f['failed'])}/{f['failureBudget']}"
        halt = f["halt"]
        lines.append(
            f"{f['name']:<24} {'yes' if f['halted'] else 'no':<7} {step:<6} "
            f"{f'{done}/{members}':<8} {failed:<7} {flight or '-':<30} "
            f"{halt['reason'] if halt else ''}".rstrip()
        )
    return "\n".join(lines)


def _control(action: str) -> Callable[[argparse.Namespace, settings.Settings], int]:
    def run(args: argparse.Namespace, conf: settings.Settings) -> int:
        fleet: str | None = getattr(args, "fleet", None)
        if (args.name is None) == (fleet is None):
            raise UsageError(f"{action}: give a spec NAME or --fleet NAME, exactly one")
        body: dict[str, Any] = {}
        if action in ("pause", "override-window"):
            body["reason"] = args.reason
            if args.until and fleet is not None:
                raise UsageError("--until: a fleet pause lasts until `resume --fleet`")
            if args.until:
                body["until"] = args.until
        path = f"/api/v1/fleets/{fleet}" if fleet is not None else f"/api/v1/stacks/{args.name}"
        answer = _daemon(conf, "POST", f"{path}/{action}", body)
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


def _fleet_name(text: str) -> str:
    if not spec.NAME_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a fleet name ([a-z0-9-], 1 to 63 characters)")
    return text


def _target(p: argparse.ArgumentParser) -> None:
    """A spec NAME or `--fleet NAME` (which one is checked when the command runs)."""
    p.add_argument("name", nargs="?", metavar="NAME", help="metadata.name of the spec")
    p.add_argument(
        "--fleet",
        type=_arg(_fleet_name),
        metavar="NAME",
        help="metadata.name of a Fleet: act on the fleet as a whole instead of one spec",
    )


def _pause_args(p: argparse.ArgumentParser) -> None:
    _target(p)
    p.add_argument(
        "--reason",
        required=True,
        type=_arg(settings.parse_text),
        help="why; shown in status and logs",
    )
    p.add_argument(
        "--until", type=_arg(_rfc3339), help="RFC 3339 time when the pause ends by itself"
    )


def _override_args(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument(
        "--reason", required=True, type=_arg(settings.parse_text), help="why; recorded and logged"
    )
    p.add_argument(
        "--until",
        type=_arg(_rfc3339),
        help="RFC 3339 time the override ends (default: in one hour)",
    )


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
    p.add_argument(
        "--change-set",
        action="store_true",
        help="create (and delete) a change set for each guarded update whose verdict is not "
        "known: needs cloudformation:CreateChangeSet, DescribeChangeSet, DeleteChangeSet",
    )


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        action="store_true",
        help="drive each spec to convergence, up to --workers specs stepped at once",
    )
    p.add_argument(
        "--timeout",
        type=_arg(settings.parse_duration),
        default="1h",
        help="with --wait: give up after this long (default 1h)",
    )
    p.add_argument(
        "--interval",
        type=_arg(settings.parse_seconds),
        default=None,
        help="with --wait: seconds between two steps of one spec (default: --active-interval)",
    )


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        choices=["happy", "migration-fails", "update-rolls-back", "paused", "fleet", "bump"],
        default="happy",
    )
    p.add_argument("--keep-running", action="store_true", help="stay up to look at it")
    p.add_argument(
        "--timeout",
        type=_arg(settings.parse_seconds),
        default=120.0,
        help="seconds before giving up (default 120)",
    )


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
    (
        "pause",
        _control("pause"),
        "pause a stack at runtime, or halt a fleet (--fleet)",
        _pause_args,
    ),
    (
        "resume",
        _control("resume"),
        "resume a stack paused at runtime, or a halted fleet (--fleet)",
        _target,
    ),
    ("approve", _control("approve"), "approve the switch after migrations", _name),
    (
        "retry",
        _control("retry"),
        "retry a failed rollout now, or a fleet's failed members, lifting its halt (--fleet)",
        _target,
    ),
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
