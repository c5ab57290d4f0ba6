"""The command line's options, generated from settings.options(): each command lists the
options it uses, reads only their environment variables and config keys, and answers every
bad value with one line naming the option as the user wrote it, exit 2, no traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from reconciler import catalog, cli, model, plans, settings, spec, waves
from reconciler.store import Store
from tests.unit import test_catalog

# Texts to try as a bad value; each option's parser must refuse at least one of them.
# An existing file is no directory (for --state-dir and --gpg-home).
CANDIDATES = ("", " ", "nonsense", "two words", "-1", "0", __file__)
COMMANDS = [name for name, *_ in cli._COMMANDS]
# What each command needs besides options to get as far as reading them.
REQUIRED: dict[str, list[str]] = {
    "pause": ["app", "--reason", "why"],
    "override-window": ["app", "--reason", "why"],
    **{c: ["app"] for c in ("resume", "approve", "retry", "sync", "history")},
}


@pytest.fixture(autouse=True)
def _no_reconciler_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell running the tests may set RECONCILER_*; none of it may leak in."""
    for name in list(__import__("os").environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)


def bad_value(parse: Callable[[str], Any], *, empty: bool = True) -> str:
    for text in CANDIDATES if empty else CANDIDATES[1:]:
        try:
            parse(text)
        except (ValueError, argparse.ArgumentTypeError):
            return text
    raise AssertionError(f"no bad value in CANDIDATES for {parse}: add one")


def setting_cases() -> Iterator[tuple[str, settings.Option]]:
    for command in COMMANDS:
        for _, opt, _ in settings.options():
            if command in opt.commands and opt.parse is not None:
                yield command, opt


def argument_cases() -> Iterator[tuple[str, argparse.Action]]:
    """The command-specific options that take a value (apply --timeout, plan --format...)."""
    for command, sub in _subparsers().items():
        for action in sub._actions:
            is_setting = action.dest.startswith(("setting_", "unused_")) or action.dest == "config"
            if action.option_strings and action.nargs != 0 and not is_setting:
                yield command, action


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err


def assert_one_line_naming(err: str, name: str) -> None:
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("reconciler: ") and name in err, err
    assert err.split(name, 1)[1].strip(" :`'"), f"says nothing of what is wanted: {err}"


# --- every bad value, every option, every command -----------------------------------------


@pytest.mark.parametrize(("command", "opt"), [(c, o) for c, o in setting_cases() if o.flag])
def test_a_bad_flag_value_is_one_line_naming_the_flag(
    command: str, opt: settings.Option, capsys: pytest.CaptureFixture[str]
) -> None:
    assert opt.parse is not None
    bad = bad_value(opt.parse)
    code, err = run([command, *REQUIRED.get(command, []), f"--{opt.name}={bad}"], capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line_naming(err, f"--{opt.name}")


@pytest.mark.parametrize(("command", "opt"), [(c, o) for c, o in setting_cases() if o.env])
def test_a_bad_environment_value_is_one_line_naming_the_variable(
    command: str,
    opt: settings.Option,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert opt.parse is not None
    monkeypatch.setenv(opt.env_name, bad_value(opt.parse, empty=False))
    code, err = run([command, *REQUIRED.get(command, [])], capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line_naming(err, opt.env_name)


@pytest.mark.parametrize(("command", "opt"), list(setting_cases()))
def test_a_bad_config_value_is_one_line_naming_the_file_and_the_key(
    command: str, opt: settings.Option, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    assert opt.parse is not None
    config = tmp_path / "reconciler.yaml"
    config.write_text(yaml.safe_dump({opt.name: bad_value(opt.parse)}))
    code, err = run([command, *REQUIRED.get(command, []), "--config", str(config)], capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line_naming(err, f"--config {config}: {opt.name}")


@pytest.mark.parametrize(
    ("command", "action"), list(argument_cases()), ids=lambda v: getattr(v, "dest", v)
)
def test_a_bad_value_of_a_command_option_is_one_line_naming_it(
    command: str, action: argparse.Action, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = action.option_strings[-1]
    if action.choices:
        bad = "nonsense"
    elif action.type is not None:
        bad = bad_value(action.type)  # type: ignore[arg-type]
    else:
        pytest.fail(f"{command} {flag} takes any text: give it a type that says what is wanted")
    required = [a for a in REQUIRED.get(command, []) if a != flag]
    if flag == "--reason":
        required = required[:1]
    code, err = run([command, *required, f"{flag}={bad}"], capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line_naming(err, flag)


def test_the_examples_of_the_issue_say_what_is_wanted(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["run", "--listen", "nonsense"], capsys)
    assert (code, err) == (
        2,
        "reconciler: --listen: listen address must be HOST:PORT, not 'nonsense'\n",
    )
    code, err = run(["apply", "--wait", "--timeout", "900"], capsys)
    assert code == 2 and "--timeout: '900' is not a duration such as 90s" in err
    code, err = run(["plan", "--aws-rate", "lots"], capsys)
    assert (code, err) == (
        2,
        "reconciler: --aws-rate: 'lots' is not a rate such as 50/s or 600/m\n",
    )


def test_a_config_file_that_is_not_yaml_or_missing_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("listen: [\n")
    for path in (broken, tmp_path / "missing.yaml"):
        code, err = run(["status", "--config", str(path)], capsys)
        assert code == 2
        assert_one_line_naming(err, f"--config {path}")


def test_a_structured_value_where_text_is_wanted_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("listen: {host: x}\n")
    code, err = run(["status", "--config", str(config)], capsys)
    assert code == 2
    assert_one_line_naming(err, f"--config {config}: listen")


# --- each command its own options ---------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_exactly_the_options_the_command_uses(command: str) -> None:
    actions = _subparsers()[command]._actions
    listed = {s for a in actions for s in a.option_strings if a.dest.startswith("setting_")}
    used = {f"--{o.name}" for _, o, _ in settings.options() if command in o.commands and o.flag}
    assert listed == used


def test_apply_lists_no_daemon_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["apply", "--help"])
    text = capsys.readouterr().out
    for daemon_only in ("--webhook-secret", "--lease-ttl", "--notify-url", "--listen", "--token"):
        assert daemon_only not in text
    assert "--workers" in text and "--aws-rate" in text


def test_a_flag_the_command_does_not_use_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run(["apply", "--webhook-secret", "s3cret"], capsys)
    assert code == 2
    assert_one_line_naming(err, "--webhook-secret")
    assert "apply" in err and "s3cret" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_the_contracts_common_flags_are_accepted_by_every_command_and_unused_ones_unread(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """CONTRACT section 4 calls these common: a script may pass them to any command. One the
    command does not use is taken, not shown in --help and not read (nor its value checked)."""
    parser = cli.build_parser()
    usage = _subparsers()[command].format_help()
    for name in sorted(cli.CONTRACT_COMMON):
        args = parser.parse_args([command, *REQUIRED.get(command, []), f"--{name}", "nonsense"])
        (opt,) = [o for _, o, _ in settings.options() if o.name == name]
        if command not in opt.commands:
            assert f"--{name}" not in usage
            assert cli.load_settings(args, {}) == settings.Settings(
                replicas=cli.load_settings(args, {}).replicas
            )


@pytest.mark.parametrize("command", COMMANDS)
def test_environment_and_config_of_other_commands_are_ignored(
    command: str, tmp_path: pathlib.Path
) -> None:
    """One environment and one config file serve every command: what this command does not
    use is not read, even when it would be a bad value for the command that does."""
    others = [o for _, o, _ in settings.options() if command not in o.commands and o.parse]
    env = {o.env_name: bad_value(o.parse, empty=False) for o in others if o.env and o.parse}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({o.name: bad_value(o.parse) for o in others if o.parse}))
    args = cli.build_parser().parse_args(
        [command, *REQUIRED.get(command, []), "--config", str(config)]
    )
    assert cli.load_settings(args, env) == settings.Settings(
        replicas=cli.load_settings(args, {}).replicas  # the replica id is per process
    )


def test_an_unknown_config_key_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("listen: 127.0.0.1:1\nlisten_address: x\n")
    code, err = run(["status", "--config", str(config)], capsys)
    assert code == 2
    assert_one_line_naming(err, "listen_address")


def test_an_empty_environment_variable_counts_as_unset() -> None:
    args = cli.build_parser().parse_args(["status"])
    conf = cli.load_settings(args, {"RECONCILER_TOKEN": "", "RECONCILER_LISTEN": ""})
    assert (conf.http.token, conf.http.listen) == (None, "127.0.0.1:9108")


def test_flags_over_environment_over_config_over_defaults(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("workers: 3\naws-rate: 600/m\nactive-interval: 5s\nallowed-keys: []\n")
    args = cli.build_parser().parse_args(["apply", "--config", str(config), "--workers", "5"])
    conf = cli.load_settings(args, {"RECONCILER_WORKERS": "4", "RECONCILER_AWS_RATE": "20"})
    assert (conf.scheduling.workers, conf.aws.rate) == (5, 20.0)
    assert conf.scheduling.active_interval.total_seconds() == 5
    assert conf.git.branch == "main"


def test_config_only_tunables_reach_the_settings_tree(tmp_path: pathlib.Path) -> None:
    """The HTTP limits, notification retries, rollout backoff and stop grace: settings."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "http-max-threads: 4\nhttp-request-timeout: 2.5\nnotify-retry-attempts: 3\n"
        "backoff-base: 1m\nstop-grace: 10s\n"
    )
    conf = cli.load_settings(cli.build_parser().parse_args(["run", "--config", str(config)]), {})
    assert (conf.http.limits.max_threads, conf.http.limits.request_timeout) == (4, 2.5)
    assert conf.notify.retry_attempts == 3
    assert conf.scheduling.backoff_base.total_seconds() == 60
    assert conf.scheduling.stop_grace.total_seconds() == 10


def test_every_option_names_a_real_command_and_is_declared_once() -> None:
    names = [o.name for _, o, _ in settings.options()]
    assert len(names) == len(set(names))
    for _, opt, _ in settings.options():
        assert opt.commands and opt.commands <= set(COMMANDS), opt.name
    assert set(COMMANDS) == settings.COMMANDS


# --- the git URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "remote",
    [
        "deploy@git.example.com:org/specs.git",
        "git@github.com:example/deploy-specs.git",
        "git.example.com:specs.git",
        "https://git.example.com/org/specs.git",
        "ssh://deploy@git.example.com:2222/org/specs.git",
        "file:///srv/git/specs.git",
    ],
)
def test_a_remote_repository_is_cloned_from_as_written(remote: str) -> None:
    assert settings.GitSettings(repo=remote).url == remote


@pytest.mark.parametrize("local", [".", "specs", "../specs", "./odd:name", "/srv/repos/a:b"])
def test_a_local_path_is_made_absolute(local: str) -> None:
    """As git tells them apart: a slash before the first colon makes it a path."""
    assert settings.GitSettings(repo=local).url == str(pathlib.Path(local).resolve())


# --- apply and the state dir lock ------------------------------------------------------------


def test_apply_refuses_a_state_dir_in_use_in_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon (or another apply) holds the state dir: apply says so, naming it, exit 1 as
    `run` does, and touches neither git nor AWS."""
    state = tmp_path / "state"
    with Store.lock_state_dir(state):
        code, err = run(["apply", "--repo", str(tmp_path), "--state-dir", str(state)], capsys)
    assert code == cli.EXIT_FAILED
    assert_one_line_naming(err, f"state dir {state} is in use")
    assert "reconciler sync" in err
    assert not (state / "git").exists()


def test_apply_holds_the_state_dir_lock_while_it_steps(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    seen: list[str] = []

    def stepping(args: argparse.Namespace, conf: settings.Settings) -> int:
        with pytest.raises(cli.StateDirLocked):
            Store.lock_state_dir(conf.state_dir)
        seen.append("locked")
        return cli.EXIT_OK

    monkeypatch.setattr(cli, "_apply", stepping)
    assert cli.main(["apply", "--state-dir", str(state)]) == cli.EXIT_OK
    assert seen == ["locked"]
    Store.lock_state_dir(state).release()  # and released after


def test_docs_name_every_option() -> None:
    """docs/contract.md is where a user finds the options: adding one means naming it there."""
    docs = (pathlib.Path(__file__).parents[2] / "docs" / "contract.md").read_text()
    missing = [
        o.name
        for _, o, _ in settings.options()
        if (f"`--{o.name}" if o.flag else f"`{o.name}") not in docs
    ]
    assert missing == []


@pytest.mark.parametrize(
    "opt", [o for _, o, f in settings.options() if not f.repr and o.flag], ids=lambda o: o.name
)
def test_a_bad_secret_is_not_quoted_back(
    opt: settings.Option, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    """Error lines reach CI logs and pod logs: a malformed token or webhook URL stays out."""
    command = sorted(opt.commands)[0]
    code, err = run([command, *REQUIRED.get(command, []), f"--{opt.name}=PLANTED secret"], capsys)
    assert code == 2 and f"--{opt.name}" in err and "PLANTED" not in err
    config = tmp_path / "c.yaml"
    config.write_text(f"{opt.name}: PLANTED secret\nbroken: [\n")
    code, err = run([command, *REQUIRED.get(command, []), "--config", str(config)], capsys)
    assert code == 2 and "PLANTED" not in err


def test_the_daemon_uses_the_tunables_it_is_given(tmp_path: pathlib.Path) -> None:
    """HTTP limits, notification retries and the rollout backoff reach the parts that use them."""
    from reconciler import daemon, notify, planner  # noqa: PLC0415 (the daemon is heavy)

    config = tmp_path / "c.yaml"
    config.write_text(
        f"state-dir: {tmp_path / 'state'}\nhttp-webhook-body: 2048\nnotify-retry-cap: 1m\n"
        "backoff-cap: 5m\n"
    )
    conf = cli.load_settings(cli.build_parser().parse_args(["run", "--config", str(config)]), {})
    d = daemon.Daemon(conf)
    try:
        assert d.server._limits.webhook_body == 2048
        assert d.notifier.backoff == notify.Backoff.of(conf.notify)
        assert d.notifier.backoff.cap.total_seconds() == 60
        assert d.engine.policy == planner.Policy.of(conf.scheduling)
    finally:
        d.store.close()
        d._lock_file.release()


def test_validate_counts_fleets_only_when_there_are_some(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of specs prints what it printed before fleets; fleets add a line of their own."""
    (tmp_path / "a.yaml").write_text(test_catalog.text("a"))
    assert cli.main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "1 spec(s) valid: a\n"
    (tmp_path / "fleets").mkdir()
    (tmp_path / "fleets" / "api.yaml").write_text(test_catalog.fleet("api"))
    (tmp_path / "b.yaml").write_text(test_catalog.labelled("b", app="api"))
    assert cli.main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "2 spec(s) valid: a, b\n1 fleet(s) valid: api\n"


# --- fleets: --fleet, the FLEETS table, the plan's steps -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["pause", "--reason", "why"],
        ["pause", "app", "--fleet", "api", "--reason", "why"],
        ["resume"],
        ["resume", "app", "--fleet", "api"],
        ["retry"],
        ["retry", "app", "--fleet=api"],
    ],
)
def test_a_control_takes_a_spec_name_or_a_fleet_exactly_one(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any daemon is asked (none listens on the default address here)."""
    code, err = run(argv, capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line_naming(err, "--fleet")
    assert "exactly one" in err


def test_a_fleet_pause_with_until_is_refused_naming_until(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["pause", "--fleet", "api", "--reason", "why", "--until", "2026-12-01T00:00:00Z"]
    code, err = run(argv, capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line_naming(err, "--until")


def test_a_fleet_control_posts_to_the_fleets_route(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[str, str, Any]] = []

    def daemon(conf: settings.Settings, method: str, path: str, body: Any = None) -> Any:
        asked.append((method, path, body))
        return {"name": "api", "action": path.rsplit("/", 1)[1], "result": "ok"}

    monkeypatch.setattr(cli, "_daemon", daemon)
    assert cli.main(["pause", "--fleet", "api", "--reason", "incident 7"]) == 0
    assert cli.main(["resume", "--fleet", "api"]) == 0
    assert cli.main(["retry", "--fleet", "api"]) == 0
    assert cli.main(["retry", "app"]) == 0
    assert asked == [
        ("POST", "/api/v1/fleets/api/pause", {"reason": "incident 7"}),
        ("POST", "/api/v1/fleets/api/resume", {}),
        ("POST", "/api/v1/fleets/api/retry", {}),
        ("POST", "/api/v1/stacks/app/retry", {}),
    ]


def _fleet_json(halted: bool) -> dict[str, Any]:
    halt = model.Halt("2 failed", dt.datetime(2026, 11, 26, tzinfo=dt.UTC), "budget")
    view = waves.FleetView(
        "api",
        "fleets/api.yaml",
        False,
        (
            waves.StepView(1, 1, ("api-c",), (), ("api-c",), ("api-c",)),
            waves.StepView(2, 1, ("api-a", "api-b"), ("api-a",), (), ()),
        ),
        halt if halted else None,
        0,
        ("api-c",),
    )
    return view.to_json()


STACK_JSON = {
    "name": "api-a",
    "stackName": "S1",
    "phase": "Migrating",
    "live": {"image": "ami-1"},
    "desired": {"image": "ami-2"},
    "message": "m",
}


@pytest.mark.parametrize("halted", [False, True])
def test_status_prints_a_fleets_table_after_the_stacks_and_fleets_in_json(
    halted: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = {
        "/api/v1/stacks": {"stacks": [STACK_JSON]},
        "/api/v1/fleets": {"fleets": [_fleet_json(halted)]},
    }
    monkeypatch.setattr(
        cli, "_daemon", lambda conf, method, path, body=None, missing=None: answers[path]
    )
    assert cli.main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("FLEETS")
    assert lines[0].startswith("NAME") and lines[1].startswith("api-a")
    assert lines[at + 1].split() == [
        "NAME",
        "HALTED",
        "STEP",
        "DONE",
        "FAILED",
        "IN",
        "FLIGHT",
        "REASON",
    ]
    row = lines[at + 2].split()
    assert row[:6] == ["api", "yes" if halted else "no", "2/2", "1/3", "1/0", "api-a"]
    assert row[6:] == (["2", "failed"] if halted else [])
    assert cli.main(["status", "--output", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fleets"][0]["name"] == "api" and data["stacks"] == [STACK_JSON]


def test_status_without_fleets_prints_no_fleets_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = {"/api/v1/stacks": {"stacks": [STACK_JSON]}, "/api/v1/fleets": {"fleets": []}}
    monkeypatch.setattr(
        cli, "_daemon", lambda conf, method, path, body=None, missing=None: answers[path]
    )
    assert cli.main(["status"]) == 0
    assert "FLEETS" not in capsys.readouterr().out


def test_plan_shows_each_members_fleet_and_step_and_which_move_in_which_step() -> None:
    steps = "  steps:\n    - matchLabels: {tier: canary}\n    - maxConcurrent: 25%\n"
    document = spec.parse_document(test_catalog.fleet("api", steps), "fleets/api.yaml")
    assert isinstance(document, spec.FleetDeployment)
    fleets = {"api": catalog.LoadedFleet(document, "fleets/api.yaml", "r", False, False)}

    def row(name: str, live: str, **labels: str) -> dict[str, Any]:
        parsed = spec.parse(
            test_catalog.labelled(name, test_catalog.AMI_A, **labels), f"{name}.yaml"
        )
        assert isinstance(parsed, spec.StackDeployment)
        loaded = catalog.LoadedSpec(parsed, f"{name}.yaml", "r", False)
        return {**plans._fleet_and_step(loaded, fleets), "name": name, "liveImage": live,
                "desiredImage": test_catalog.AMI_A}  # fmt: skip

    rows = [
        row("api-eu-1", "ami-1", app="api", tier="canary"),
        row("api-eu-2", "ami-1", app="api"),
        row("api-us-1", "ami-1", app="api"),
        row("api-us-2", test_catalog.AMI_A, app="api"),  # in sync: does not move
        row("web-1", "ami-1", app="web"),
    ]
    assert [(r["fleet"], r["step"]) for r in rows] == [
        ("api", 1), ("api", 2), ("api", 2), ("api", 2), (None, None),
    ]  # fmt: skip
    summary = plans.fleets(rows, fleets)
    assert [plans._fleet_line(f) for f in summary] == [
        "fleet api: step 1 (canary): api-eu-1; step 2 (25%, max 1): api-eu-2, api-us-1"
    ]
    rows[0]["liveImage"] = rows[1]["liveImage"] = rows[2]["liveImage"] = test_catalog.AMI_A
    assert plans.fleets(rows, fleets) == []


def test_plan_shows_drift_in_text_json_and_markdown() -> None:
    drift = [{"resource": "Asg1", "field": "desiredCapacity", "expected": "1", "live": "3"}]
    row = {
        "name": "api", "stackName": "S1", "revision": "r", "desiredImage": "ami-2",
        "liveImage": "ami-1", "stackStatus": "UPDATE_COMPLETE", "phase": "Blocked",
        "next": "held", "update": None, "updateKind": None, "drift": drift,
        "fleet": None, "step": None,
    }  # fmt: skip
    clean = {**row, "name": "web", "drift": []}
    text = plans.render([row, clean], [], [], "text").splitlines()
    assert "  drift: Asg1.desiredCapacity: expected 1, live 3" in text
    assert sum(1 for line in text if "drift" in line) == 1
    assert json.loads(plans.render([row], [], [], "json"))["stacks"][0]["drift"] == drift
    markdown = plans.render([row, clean], [], [], "markdown")
    assert "`api` drift: Asg1.desiredCapacity: expected 1, live 3" in markdown
    assert "`web` drift" not in markdown


def test_plan_shows_the_guards_verdict_in_text_json_and_markdown() -> None:
    base = {
        "name": "api", "stackName": "S1", "revision": "r", "desiredImage": "ami-2",
        "liveImage": "ami-1", "stackStatus": "UPDATE_COMPLETE", "phase": "UpdatingApi",
        "next": "switch", "update": {"LcImageId": "ami-2"}, "updateKind": "switch",
        "drift": [], "fleet": None, "step": None,
    }  # fmt: skip
    refused = {
        **base,
        "guard": {
            "verdict": "refused",
            "replaced": ["Box (AWS::EC2::Instance): Modify, replacement True"],
            "refused": ["Box (AWS::EC2::Instance): Modify, replacement True"],
        },
    }
    unknown = {
        **base,
        "name": "web",
        "guard": {"verdict": "unknown", "replaced": [], "refused": []},
    }
    allowed = {
        **base,
        "name": "db",
        "guard": {"verdict": "allowed", "replaced": [], "refused": []},
    }
    text = plans.render([refused, unknown, allowed], [], [], "text").splitlines()
    assert (
        "  guard: REFUSED, would replace or remove "
        "Box (AWS::EC2::Instance): Modify, replacement True" in text
    )
    assert "  guard: verdict not known yet; `plan --change-set` makes one" in text
    assert "  guard: allowed, replaces nothing" in text
    assert (
        json.loads(plans.render([refused], [], [], "json"))["stacks"][0]["guard"]
        == (refused["guard"])
    )
    markdown = plans.render([refused], [], [], "markdown")
    assert "<br>guard: REFUSED, would replace or remove Box" in markdown


def test_plan_change_set_is_a_flag_of_plan_only() -> None:
    args = cli.build_parser().parse_args(["plan", "--change-set"])
    assert args.change_set is True
    assert cli.build_parser().parse_args(["plan"]).change_set is False
