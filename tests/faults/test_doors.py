"""The daemon's doors, from outside a real `reconciler run` process.

Unit tests hold each rule on the HTTP app (tests/unit/test_http.py: the webhook HMAC in
test_a_push_without_a_valid_signature_is_401_and_triggers_nothing, the token in
test_a_control_without_the_right_bearer_token_is_401_and_does_nothing, body limits in
test_a_webhook_body_over_the_limit_is_413_and_triggers_nothing); here a whole daemon is
asked, and every byte it writes (stderr JSON logs, /metrics, each HTTP error body, CLI
output) is searched for planted secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import pathlib
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from reconciler.embedded import Emulator
from tests.e2e.conftest import clean_env, free_port, reconciler_command, wait_until
from tests.faults.conftest import stack_parameters
from tests.faults.daemonkit import spec_yaml
from tests.integration.gitrepo import GitRepo

pytestmark = pytest.mark.e2e

TOKEN = "tok-PLANTED-7f3a9c"
HOOK_SECRET = "hook-PLANTED-91c2e4"
GIT_PASSWORD = "gitpw-PLANTED-55d0aa"
AWS_SECRET = "awskey-PLANTED-0b1e77"
NOTIFY_PASSWORD = "notify-PLANTED-3c3c3c"
PLANTED = (TOKEN, HOOK_SECRET, GIT_PASSWORD, AWS_SECRET, NOTIFY_PASSWORD)
GIT_URL = f"https://deployer:{GIT_PASSWORD}@git.example.invalid/specs.git"


class Daemon:
    """One `reconciler run` subprocess, its log file, and every answer it gave."""

    def __init__(self, tmp: pathlib.Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = tmp / f"daemon-{self.port}.log"
        self.answers: list[bytes] = []
        listen = next((a for a in args if a.startswith("0.0.0.0:")), None)
        self.base = f"http://127.0.0.1:{listen.split(':')[1] if listen else self.port}"
        command = [*reconciler_command(), "run", "--state-dir", str(tmp / f"state-{self.port}")]
        if listen is None:
            command += ["--listen", f"127.0.0.1:{self.port}"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "--log-format", "json", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
            )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, body, headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as answer:
                code, data = int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            code, data = exc.code, exc.read()
        self.answers.append(data)
        return code, data

    def up(self) -> bool:
        with contextlib.suppress(OSError):
            return self.request("GET", "/healthz")[0] == 200
        return False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=40)


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    with Emulator(update_seconds=0.2) as emu:
        image = emu.register_image("biglearn-v1")
        emu.create_stack("Stack1", stack_parameters(image))
        yield emu, image


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        with contextlib.suppress(Exception):
            d.proc.kill()


def _signed(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push"}


@pytest.mark.slow
def test_no_planted_secret_reaches_a_log_line_a_metric_an_error_body_or_the_cli(
    tmp_path: pathlib.Path, emulator: tuple[Emulator, str], daemons: list[Daemon]
) -> None:
    """A daemon holding a token, a webhook secret, a git URL password, an AWS secret key and
    a notification URL password, logging at debug, is driven through its error paths (wrong
    and missing credentials, oversized bodies, a git remote that goes away, a notification
    sink that refuses): none of the five secrets appears in anything it or the CLI wrote."""
    emu, image = emulator
    repo = GitRepo(tmp_path / "repo")
    repo.commit("spec", {"deploy-specs/app.yaml": spec_yaml("app", "Stack1", image, "2s")})
    # git rewrites the URL to the local repository: the daemon holds (and must hide) a real
    # password, and the fetch still works. git is given the URL without the password (that
    # goes to its credential helper), so that is the URL rewritten.
    env = clean_env(
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"url.{repo.path}.insteadOf",
        GIT_CONFIG_VALUE_0=GIT_URL.replace(f"deployer:{GIT_PASSWORD}@", ""),
    )
    args = [
        "--repo", GIT_URL, "--endpoint-url", emu.endpoint_url, "--log-level", "debug",
        "--token", TOKEN, "--webhook-secret", HOOK_SECRET, "--poll-interval", "60s",
        "--notify-url", f"http://alerts:{NOTIFY_PASSWORD}@127.0.0.1:{free_port()}/hook",
    ]  # fmt: skip
    d = Daemon(tmp_path, args, env)
    daemons.append(d)
    wait_until(lambda: d.request("GET", "/readyz")[0] == 200 if d.up() else None, 30, "ready")
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    bad, auth = {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Bearer {TOKEN}"}
    for method, path, body, headers in [
        ("POST", "/api/v1/stacks/app/pause", b'{"reason": "x"}', {}),
        ("POST", "/api/v1/stacks/app/pause", b'{"reason": "x"}', bad),
        ("POST", "/api/v1/stacks/app/pause", b"x" * (65 * 1024), auth),
        ("POST", "/api/v1/stacks/nope/sync", b"", auth),
        ("POST", "/api/v1/stacks/app/pause", b"{not json", auth),
        ("POST", "/hooks/git", push, {}),
        ("POST", "/hooks/git", push, _signed(push, "wrong-secret")),
        ("POST", "/hooks/git", b"x" * (1024 * 1024 + 1), _signed(b"", HOOK_SECRET)),
        ("POST", "/api/v1/stacks/app/pause", b'{"reason": "leak test"}', auth),
    ]:  # fmt: skip
        code, _ = d.request(method, path, body, headers)
        assert code >= 400 or path.endswith("pause"), (path, code)
    # The remote goes away; a signed push makes the daemon poll it at once and fail.
    repo.path.rename(tmp_path / "repo-gone")
    assert d.request("POST", "/hooks/git", push, _signed(push, HOOK_SECRET))[0] == 202
    wait_until(lambda: "git poll failed" in d.log(), 20, "a failed git poll")
    wait_until(lambda: "notification failed" in d.log(), 20, "a failed notification")
    d.request("GET", "/metrics")
    d.request("GET", "/api/v1/stacks")
    listen = ["--listen", d.base.removeprefix("http://")]  # only commands that ask the daemon
    cli = [
        subprocess.run(
            [*reconciler_command(), *command],
            capture_output=True, text=True, env=env, timeout=30, check=False, cwd=tmp_path,
        )
        for command in (
            ["status", "--token", TOKEN, *listen],
            ["pause", "app", "--reason", "cli", "--token", "wrong-" + TOKEN[::-1], *listen],
            ["plan", "--repo", GIT_URL, "--endpoint-url", emu.endpoint_url],
        )
    ]  # fmt: skip
    d.stop()
    captured = {
        "daemon log": d.log(),
        "http answers": b"\n".join(d.answers).decode("utf-8", "replace"),
        "cli": "\n".join(r.stdout + r.stderr for r in cli),
    }
    assert "***" in captured["daemon log"]  # something was redacted, not merely absent
    for where, text in captured.items():
        for secret in PLANTED:
            assert secret not in text, f"{secret} leaked into the {where}"
        assert "PLANTED" not in text, f"part of a planted secret in the {where}"


def test_beyond_loopback_without_secrets_the_daemon_warns_loudly_and_controls_need_a_token(
    tmp_path: pathlib.Path, emulator: tuple[Emulator, str], daemons: list[Daemon]
) -> None:
    """Listening on 0.0.0.0 with no webhook secret logs the loud warning at start; without a
    token, controls are refused (403) unless --allow-unauthenticated-controls says otherwise,
    which beyond loopback draws a second loud warning."""
    emu, image = emulator
    repo = GitRepo(tmp_path / "repo")
    repo.commit("spec", {"deploy-specs/app.yaml": spec_yaml("app", "Stack1", image)})
    common = ["--repo", str(repo.path), "--endpoint-url", emu.endpoint_url]
    closed = Daemon(tmp_path, [*common, "--listen", f"0.0.0.0:{free_port()}"], clean_env())
    daemons.append(closed)
    wait_until(closed.up, 30, "the first daemon")
    code, body = closed.request("POST", "/api/v1/stacks/app/sync")
    assert code == 403 and b"no API token configured" in body
    closed.stop()
    opened = Daemon(
        tmp_path,
        [*common, "--listen", f"0.0.0.0:{free_port()}", "--allow-unauthenticated-controls"],
        clean_env(),
    )
    daemons.append(opened)
    wait_until(opened.up, 30, "the second daemon")
    wait_until(lambda: opened.request("GET", "/readyz")[0] == 200, 30, "ready")
    assert opened.request("POST", "/api/v1/stacks/app/sync")[0] == 200
    opened.stop()
    warnings = [json.loads(line) for line in closed.log().splitlines() if "BEYOND LOOPBACK" in line]
    assert [w["level"] for w in warnings] == ["warning"]
    assert "WITHOUT A WEBHOOK SECRET" in warnings[0]["event"] and warnings[0]["host"] == "0.0.0.0"
    assert "WITH UNAUTHENTICATED CONTROLS" in opened.log()
