"""The daemon's HTTP server (CONTRACT section 5), served for real on 127.0.0.1, port 0."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

from reconciler.metrics import Metrics
from reconciler.server import Limits, Server, parse_listen

TOKEN = "t0ken-for-tests-123"
SECRET = "hook-secret-456"
STATUS = {"name": "api", "stackName": "Stack1", "phase": "InSync"}
FLEET = {"name": "web", "halted": False, "steps": []}


class FakeController:
    """Records what the server asked; answers from its fields."""

    def __init__(self) -> None:
        self.is_healthy = True
        self.is_ready = True
        self.polls = 0
        self.controls: list[tuple[str, str, dict[str, Any]]] = []
        self.fleet_controls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_with: Exception | None = None

    def stacks(self) -> list[dict[str, Any]]:
        if self.fail_with is not None:
            raise self.fail_with
        return [STATUS]

    def stack(self, name: str) -> dict[str, Any] | None:
        return STATUS if name == "api" else None

    def control(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if name != "api":
            raise KeyError(name)
        if action == "pause" and "reason" not in body:
            raise ValueError("pause needs a reason")
        self.controls.append((name, action, body))
        return {"name": name, "action": action, "accepted": True}

    def fleets(self) -> list[dict[str, Any]]:
        return [FLEET]

    def fleet(self, name: str) -> dict[str, Any] | None:
        return FLEET if name == "web" else None

    def fleet_control(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if name != "web":
            raise KeyError(name)
        self.fleet_controls.append((name, action, body))
        return {"name": name, "action": action, "result": "done"}

    def trigger_git_poll(self) -> None:
        self.polls += 1

    def healthy(self) -> bool:
        return self.is_healthy

    def ready(self) -> bool:
        return self.is_ready

    def history(self, name: str) -> list[dict[str, Any]] | None:
        return [{"image": "ami-1", "result": "succeeded"}] if name == "api" else None


@contextmanager
def serving(
    controller: FakeController | None = None,
    token: str | None = TOKEN,
    webhook_secret: str | None = SECRET,
    allow_unauthenticated_controls: bool = False,
    limits: Limits | None = None,
    metrics: Metrics | None = None,
) -> Iterator[Server]:
    server = Server(
        "127.0.0.1:0",
        controller or FakeController(),
        metrics or Metrics(),
        token,
        webhook_secret,
        allow_unauthenticated_controls,
        limits=limits,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return Reply(conn.getresponse())
    finally:
        conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(body: bytes, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event}


def raw_connection(server: Server) -> socket.socket:
    return socket.create_connection(server.address, timeout=5)


# --- read-only routes ----------------------------------------------------------------------


def test_metrics_serves_the_prometheus_exposition() -> None:
    with serving() as server:
        reply = call(server, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"reconciler_build_info" in reply.body


def test_healthz_and_readyz_follow_the_controller() -> None:
    controller = FakeController()
    with serving(controller) as server:
        ok = (call(server, "GET", "/healthz").status, call(server, "GET", "/readyz").status)
        controller.is_healthy = controller.is_ready = False
        down = (call(server, "GET", "/healthz").status, call(server, "GET", "/readyz").status)
    assert (ok, down) == ((200, 200), (503, 503))


def test_stacks_lists_every_status_under_one_key() -> None:
    with serving() as server:
        reply = call(server, "GET", "/api/v1/stacks")
    assert (reply.status, reply.json()) == (200, {"stacks": [STATUS]})
    assert reply.headers["Content-Type"] == "application/json"


def test_one_stack_by_name_and_404_json_for_an_unknown_one() -> None:
    with serving() as server:
        known = call(server, "GET", "/api/v1/stacks/api")
        unknown = call(server, "GET", "/api/v1/stacks/nope")
    assert (known.status, known.json()) == (200, STATUS)
    assert unknown.status == 404
    assert "nope" in unknown.json()["error"]


def test_history_of_a_stack_and_404_for_an_unknown_one() -> None:
    with serving() as server:
        known = call(server, "GET", "/api/v1/stacks/api/history")
        unknown = call(server, "GET", "/api/v1/stacks/nope/history")
    assert known.json() == {"history": [{"image": "ami-1", "result": "succeeded"}]}
    assert unknown.status == 404


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow() -> None:
    with serving() as server:
        missing = call(server, "GET", "/nothing/here")
        wrong = call(server, "POST", "/metrics")
        wrong_control = call(server, "GET", "/api/v1/stacks/api/sync")
    assert (missing.status, missing.json()) == (404, {"error": "not found"})
    assert (wrong.status, wrong.headers["Allow"]) == (405, "GET")
    assert (wrong_control.status, wrong_control.headers["Allow"]) == (405, "POST")


def test_a_query_string_does_not_change_the_route() -> None:
    with serving() as server:
        assert call(server, "GET", "/healthz?verbose=1").status == 200


def test_an_unexpected_controller_error_is_500_without_its_text() -> None:
    controller = FakeController()
    controller.fail_with = RuntimeError(f"boom with {TOKEN}")
    with serving(controller) as server:
        reply = call(server, "GET", "/api/v1/stacks")
    assert (reply.status, reply.json()) == (500, {"error": "internal error"})


def test_a_malformed_request_gets_a_json_400() -> None:
    with serving() as server, raw_connection(server) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        answer = sock.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400")
    assert "error" in json.loads(body)


def test_requests_are_counted_by_route_not_by_path() -> None:
    metrics = Metrics()
    with serving(metrics=metrics) as server:
        call(server, "GET", "/api/v1/stacks/nope")
    body, _ = metrics.exposition()
    assert b'reconciler_http_requests_total{code="404",handler="stack"} 1.0' in body


# --- controls ------------------------------------------------------------------------------


def test_a_control_with_the_token_reaches_the_controller_with_its_body() -> None:
    controller = FakeController()
    body = {"reason": "incident 42", "until": "2026-12-01T00:00:00Z"}
    with serving(controller) as server:
        reply = call(
            server, "POST", "/api/v1/stacks/api/pause", json.dumps(body).encode(), bearer()
        )
    assert reply.status == 200
    assert reply.json() == {"name": "api", "action": "pause", "accepted": True}
    assert controller.controls == [("api", "pause", body)]


@pytest.mark.parametrize("action", ["sync", "resume", "approve", "retry"])
def test_every_control_action_works_without_a_body(action: str) -> None:
    controller = FakeController()
    with serving(controller) as server:
        reply = call(server, "POST", f"/api/v1/stacks/api/{action}", headers=bearer())
    assert reply.status == 200
    assert controller.controls == [("api", action, {})]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong-token", "wrong-scheme", "no-scheme"],
)
def test_a_control_without_the_right_bearer_token_is_401_and_does_nothing(
    headers: dict[str, str],
) -> None:
    controller = FakeController()
    with serving(controller) as server:
        reply = call(server, "POST", "/api/v1/stacks/api/sync", headers=headers)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in reply.body.decode()
    assert controller.controls == []


def test_controls_are_refused_when_no_token_is_configured() -> None:
    controller = FakeController()
    with serving(controller, token=None) as server:
        reply = call(server, "POST", "/api/v1/stacks/api/sync")
    assert reply.status == 403
    assert controller.controls == []


def test_controls_work_without_a_token_when_explicitly_allowed() -> None:
    controller = FakeController()
    with serving(controller, token=None, allow_unauthenticated_controls=True) as server:
        reply = call(server, "POST", "/api/v1/stacks/api/sync")
    assert reply.status == 200
    assert controller.controls == [("api", "sync", {})]


def test_a_control_for_an_unknown_stack_is_404() -> None:
    with serving() as server:
        reply = call(server, "POST", "/api/v1/stacks/nope/sync", headers=bearer())
    assert reply.status == 404


def test_a_bad_control_request_is_400_with_the_controllers_message() -> None:
    with serving() as server:
        reply = call(server, "POST", "/api/v1/stacks/api/pause", b"{}", bearer())
    assert (reply.status, reply.json()) == (400, {"error": "pause needs a reason"})


@pytest.mark.parametrize(
    ("action", "body", "message"),
    [
        ("pause", {"reason": 5}, "pause needs a reason"),
        ("pause", {"reason": "  "}, "pause needs a reason"),
        ("override-window", {"until": "2026-12-01T00:00:00Z"}, "override-window needs a reason"),
        (
            "pause",
            {"reason": "x", "until": "tomorrow"},
            "until: 'tomorrow' is not an RFC 3339 time",
        ),
        ("override-window", {"reason": "x", "until": "2026-12-01T00:00:00"}, "until: a time needs"),
        ("pause", {"reason": "x", "until": 12}, "until: a time is an RFC 3339 string"),
    ],
)
def test_a_bad_field_of_a_control_body_is_400_naming_it(
    action: str, body: dict[str, Any], message: str
) -> None:
    """The body is checked at the edge: one line naming the field; the controller is not
    reached."""
    controller = FakeController()
    with serving(controller) as server:
        path = f"/api/v1/stacks/api/{action}"
        reply = call(server, "POST", path, json.dumps(body).encode(), bearer())
    assert reply.status == 400
    assert reply.json()["error"].startswith(message) and "\n" not in reply.json()["error"]
    assert controller.controls == []


def test_keys_a_control_does_not_read_are_ignored() -> None:
    """As before: a pause with a note, a sync with a reason, are accepted."""
    controller = FakeController()
    pause = {"reason": "incident 42", "note": "see the ticket"}
    with serving(controller) as server:
        call(server, "POST", "/api/v1/stacks/api/pause", json.dumps(pause).encode(), bearer())
        call(server, "POST", "/api/v1/stacks/api/sync", b'{"reason": "x"}', bearer())
    assert controller.controls == [("api", "pause", pause), ("api", "sync", {"reason": "x"})]


def test_a_control_for_an_unknown_stack_is_404_whatever_its_body() -> None:
    with serving() as server:
        reply = call(server, "POST", "/api/v1/stacks/nope/pause", b"{}", bearer())
    assert reply.status == 404


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b"\xff\xfe"])
def test_a_control_body_that_is_not_a_json_object_is_400(body: bytes) -> None:
    controller = FakeController()
    with serving(controller) as server:
        reply = call(server, "POST", "/api/v1/stacks/api/sync", body, bearer())
    assert reply.status == 400
    assert controller.controls == []


def test_an_unknown_control_action_is_404() -> None:
    with serving() as server:
        reply = call(server, "POST", "/api/v1/stacks/api/explode", headers=bearer())
    assert reply.status == 404


# --- fleets


def test_fleets_list_under_one_key_and_one_fleet_or_a_json_404() -> None:
    with serving() as server:
        listed = call(server, "GET", "/api/v1/fleets")
        one = call(server, "GET", "/api/v1/fleets/web")
        missing = call(server, "GET", "/api/v1/fleets/nope")
    assert (listed.status, listed.json()) == (200, {"fleets": [FLEET]})
    assert (one.status, one.json()) == (200, FLEET)
    assert (missing.status, missing.json()) == (404, {"error": "no fleet named 'nope'"})
    assert missing.body.count(b"\n") == 1


@pytest.mark.parametrize("action", ["pause", "resume", "retry"])
def test_a_fleet_control_follows_the_stack_controls_token_rules(action: str) -> None:
    """Without the token: 401 (403 with none configured), and nothing reaches the daemon;
    with it, the body goes through as sent."""
    controller = FakeController()
    body = b'{"reason": "incident 7"}'
    with serving(controller) as server:
        wrong = call(server, "POST", f"/api/v1/fleets/web/{action}", body, bearer("nope"))
        right = call(server, "POST", f"/api/v1/fleets/web/{action}", body, bearer())
    with serving(controller, token=None) as server:
        closed = call(server, "POST", f"/api/v1/fleets/web/{action}", body)
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert closed.status == 403
    assert right.status == 200, right.body
    assert controller.fleet_controls == [("web", action, {"reason": "incident 7"})]


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/v1/fleets/web/pause", b"{}", 400, "pause needs a reason"),
        ("/api/v1/fleets/web/pause", b'{"reason": " "}', 400, "pause needs a reason"),
        ("/api/v1/fleets/web/pause", b"[1]", 400, "the body must be a JSON object"),
        ("/api/v1/fleets/nope/pause", b"{}", 404, "no fleet named 'nope'"),
        ("/api/v1/fleets/web/approve", b"{}", 404, "not found"),
    ],
)
def test_a_bad_fleet_control_is_refused_in_one_json_line_and_does_nothing(
    path: str, body: bytes, status: int, error: str
) -> None:
    controller = FakeController()
    with serving(controller) as server:
        reply = call(server, "POST", path, body, bearer())
    assert (reply.status, reply.json()) == (status, {"error": error})
    assert controller.fleet_controls == []


def test_a_fleet_pause_refuses_until_rather_than_ignore_it() -> None:
    """A stack's pause ends by itself at `until`; a fleet's does not, so a caller who
    asks for one is told, not left with a halt that outlives what was meant."""
    controller = FakeController()
    body = b'{"reason": "x", "until": "2026-12-01T00:00:00Z"}'
    with serving(controller) as server:
        reply = call(server, "POST", "/api/v1/fleets/web/pause", body, bearer())
    assert reply.status == 400
    assert "until" in reply.json()["error"] and "resume" in reply.json()["error"]
    assert controller.fleet_controls == []


# --- webhook -------------------------------------------------------------------------------


def test_a_correctly_signed_push_starts_a_git_poll_with_202() -> None:
    controller = FakeController()
    body = b'{"ref": "refs/heads/main"}'
    with serving(controller) as server:
        reply = call(server, "POST", "/hooks/git", body, signed(body))
    assert reply.status == 202
    assert controller.polls == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        signed(b"another body"),
        signed(b'{"ref": "refs/heads/main"}', secret="wrong"),
        {"X-Hub-Signature-256": "sha256=zz"},
    ],
    ids=["missing", "other-body", "wrong-secret", "garbage"],
)
def test_a_push_without_a_valid_signature_is_401_and_triggers_nothing(
    headers: dict[str, str],
) -> None:
    controller = FakeController()
    with serving(controller) as server:
        reply = call(server, "POST", "/hooks/git", b'{"ref": "refs/heads/main"}', headers)
    assert reply.status == 401
    assert controller.polls == 0


def test_a_push_is_accepted_unsigned_when_no_secret_is_configured() -> None:
    controller = FakeController()
    with serving(controller, webhook_secret=None) as server:
        reply = call(server, "POST", "/hooks/git", b"{}")
    assert reply.status == 202
    assert controller.polls == 1


def test_a_ping_event_answers_200_and_starts_nothing() -> None:
    controller = FakeController()
    body = b'{"zen": "Keep it logically awesome."}'
    with serving(controller) as server:
        reply = call(server, "POST", "/hooks/git", body, signed(body, event="ping"))
    assert reply.status == 200
    assert controller.polls == 0


# --- limits --------------------------------------------------------------------------------


def test_a_webhook_body_over_the_limit_is_413_and_triggers_nothing() -> None:
    controller = FakeController()
    body = b"x" * 2048
    with serving(controller, limits=Limits(webhook_body=1024)) as server:
        reply = call(server, "POST", "/hooks/git", body, signed(body))
    assert reply.status == 413
    assert controller.polls == 0


def test_a_control_body_over_64_kib_is_413() -> None:
    controller = FakeController()
    body = json.dumps({"reason": "x" * 70_000}).encode()
    with serving(controller) as server:
        reply = call(server, "POST", "/api/v1/stacks/api/pause", body, bearer())
    assert reply.status == 413
    assert controller.controls == []


def test_a_client_sending_a_large_body_sees_the_413_not_a_reset() -> None:
    """The server refuses from Content-Length, then drains, so the answer reaches the client."""
    body = b"x" * (2 * 1024 * 1024)
    with serving() as server:
        reply = call(server, "POST", "/hooks/git", body, signed(body))
    assert reply.status == 413


def test_a_chunked_body_is_refused_with_411() -> None:
    with serving() as server, raw_connection(server) as sock:
        sock.sendall(b"POST /hooks/git HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.0 411")


def test_a_slow_client_does_not_block_others() -> None:
    with serving() as server, raw_connection(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never finishes
        started = time.monotonic()
        reply = call(server, "GET", "/healthz")
        assert reply.status == 200
        assert time.monotonic() - started < 2


def test_a_slow_client_is_cut_off_at_the_request_deadline() -> None:
    with serving(limits=Limits(request_timeout=0.5)) as server, raw_connection(server) as slow:
        slow.sendall(b"POST /hooks/git HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        started = time.monotonic()
        slow.settimeout(5)
        while slow.recv(4096):  # whatever comes, the server must close the connection
            pass
        assert time.monotonic() - started < 3


def test_a_control_cut_off_mid_headers_is_not_carried_out() -> None:
    """Headers that "end" because the server shut the socket are not a request."""
    controller = FakeController()
    limits = Limits(request_timeout=0.5)
    with serving(controller, limits=limits) as server, raw_connection(server) as slow:
        head = f"POST /api/v1/stacks/api/sync HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nX-Pad: "
        slow.sendall(head.encode())
        assert drip_until_closed(slow)
        assert call(server, "GET", "/healthz").status == 200  # and it still serves others
    assert controller.controls == []


def drip_until_closed(sock: socket.socket, seconds: float = 5) -> bool:
    """Send a byte every 0.1 s, each read well within any per-read timeout, until cut off."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
            if sock.recv(1) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_slow_client_dripping_bytes_is_still_cut_off() -> None:
    """The deadline covers the whole request, not each read."""
    with serving(limits=Limits(request_timeout=0.5)) as server, raw_connection(server) as slow:
        started = time.monotonic()
        assert drip_until_closed(slow)
        assert time.monotonic() - started < 3


def test_when_every_worker_is_busy_new_requests_get_503_at_once() -> None:
    with serving(limits=Limits(max_threads=1)) as server, raw_connection(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")  # holds the only worker
        reply = call(server, "GET", "/healthz")
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "1"


def test_stop_returns_promptly_with_a_slow_client_connected() -> None:
    server = Server("127.0.0.1:0", FakeController(), Metrics(), TOKEN, SECRET)
    server.start()
    address = server.address
    with raw_connection(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        call(server, "GET", "/healthz")  # the slow connection is surely being served
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)


def test_stop_twice_and_stop_before_start_are_harmless() -> None:
    server = Server("127.0.0.1:0", FakeController(), Metrics(), TOKEN, SECRET)
    server.stop()
    server.start()
    server.stop()
    server.stop()


# --- start-up ------------------------------------------------------------------------------


def test_listening_beyond_loopback_without_a_webhook_secret_warns_loudly() -> None:
    server = Server("0.0.0.0:0", FakeController(), Metrics(), TOKEN, None)
    with structlog.testing.capture_logs() as entries:
        server.start()
        server.stop()
    warnings = [e for e in entries if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "WITHOUT A WEBHOOK SECRET" in warnings[0]["event"]


def test_listening_on_loopback_without_a_secret_does_not_warn() -> None:
    with structlog.testing.capture_logs() as entries, serving(webhook_secret=None):
        pass
    assert [e for e in entries if e["log_level"] == "warning"] == []


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:0", ("::1", 0)),
        (":9108", ("0.0.0.0", 9108)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_listen_addresses_parse(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9108", "host:", "host:http", "host:70000"])
def test_bad_listen_addresses_are_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(listen)
