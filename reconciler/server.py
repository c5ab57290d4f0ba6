"""The daemon's HTTP server (CONTRACT section 5): metrics, health, status, controls, webhook.

Rules of this file:
- Two halves. `App` routes and checks a request that is already read (no sockets, so it is
  tested as a function); `_Transport` and `_HTTPServer` read requests off sockets within
  limits and write responses. Swapping the transport (see docs/decisions/0003) leaves `App`.
- Every request is bounded: a body limit per route (413 before the body is read), a deadline
  for receiving the whole request (slowloris), a fixed number of worker threads (503 when
  all are busy), one request per connection (HTTP/1.0: no idle keep-alive holding a thread).
- Errors are JSON `{"error": "..."}` and never carry a secret or an internal exception text.
- Secrets are compared with `hmac.compare_digest`; a failed check triggers nothing.
- The status page (`/`, `/stacks/NAME`) is HTML rendered by `reconciler.page` from the same
  controller answers as the JSON routes, so it can show nothing the API does not.
- List responses are objects with one key (`{"stacks": [...]}`, `{"history": [...]}`), so
  fields can be added beside the list later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any, Protocol

import pydantic

from reconciler import logs, page, settings, spec, validation
from reconciler.metrics import Metrics

JSON = "application/json"


class ControlBody(pydantic.BaseModel):
    """The body of a control that reads nothing from it; keys no action reads are ignored."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


def _reason(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is missing")  # told as "<action> needs a reason"
    return value


class ReasonedBody(ControlBody):
    """pause and override-window: why (said to whoever looks at the stack), until when."""

    reason: Annotated[str, pydantic.BeforeValidator(_reason)]
    until: Annotated[spec.Time | None, pydantic.BeforeValidator(lambda v: v or None)] = None


CONTROL_BODIES: dict[str, type[ControlBody]] = {
    "sync": ControlBody,
    "pause": ReasonedBody,
    "resume": ControlBody,
    "approve": ControlBody,
    "retry": ControlBody,
    "override-window": ReasonedBody,
}
CONTROL_ACTIONS = tuple(CONTROL_BODIES)


def _no_until(value: Any) -> Any:
    if value:
        # A fleet's halt has no end of its own: ignoring `until` would leave it halted
        # past the time the caller meant.
        raise ValueError("a fleet pause has no until: it lasts until resume or retry")
    return None


class FleetPauseBody(ControlBody):
    """pause of a fleet: why (shown in every member's status and the fleet's)."""

    reason: Annotated[str, pydantic.BeforeValidator(_reason)]
    until: Annotated[None, pydantic.BeforeValidator(_no_until)] = None


# Under /api/v1/fleets/NAME/: a fleet is halted and lifted as a whole (reconciler.waves).
FLEET_CONTROL_BODIES: dict[str, type[ControlBody]] = {
    "pause": FleetPauseBody,
    "resume": ControlBody,
    "retry": ControlBody,
}
FLEET_CONTROL_ACTIONS = tuple(FLEET_CONTROL_BODIES)


def control_body(
    action: str, body: Mapping[str, Any], bodies: Mapping[str, type[ControlBody]] = CONTROL_BODIES
) -> ControlBody:
    """The body of `action`, checked; ValueError with one line naming the field at fault."""
    model = bodies.get(action)
    if model is None:
        raise ValueError(f"unknown action {action!r}")
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        if any(err["loc"] == ("reason",) for err in exc.errors()):
            raise ValueError(f"{action} needs a reason") from exc
        raise ValueError(validation.one_line(exc)) from exc


log = logs.get(component="http")


# How much one client may ask of the server: settings.HttpLimits (config `http-*`).
Limits = settings.HttpLimits
ACCEPT_POLL = 0.1  # seconds between checks for shutdown and expired deadlines


class Controller(Protocol):
    """What the server asks of the daemon."""

    def stacks(self) -> list[dict[str, Any]]: ...
    def stack(self, name: str) -> dict[str, Any] | None: ...
    def control(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def trigger_git_poll(self) -> None: ...
    def healthy(self) -> bool: ...
    def ready(self) -> bool: ...
    def history(self, name: str) -> list[dict[str, Any]] | None: ...
    def fleets(self) -> list[dict[str, Any]]: ...
    def fleet(self, name: str) -> dict[str, Any] | None: ...
    def fleet_control(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]: ...


# --- the application: a read request in, a response out ---------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    headers: Mapping[str, str]  # names in lower case
    body: bytes


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps(value, default=str, sort_keys=True).encode() + b"\n"
    return Response(status, body, JSON, headers)


def error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response(status, {"error": message}, headers)


def html_response(status: int, body: str) -> Response:
    return Response(status, body.encode(), page.CONTENT_TYPE, page.HEADERS)


def _now() -> str:
    """The time a page says it was made, to the second: a stale tab shows its age."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_Handler = Callable[[Request, Mapping[str, str]], Response]


@dataclasses.dataclass(frozen=True)
class _Route:
    name: str  # the metrics label: a route, never a path (paths carry stack names)
    pattern: str
    methods: Mapping[str, _Handler]
    body_limit: int = 0  # 0: the control limit

    def match(self, path: str) -> dict[str, str] | None:
        found = re.fullmatch(self.pattern, path)
        return None if found is None else found.groupdict()


class App:
    """Routing, authentication and the calls into the controller."""

    def __init__(
        self,
        controller: Controller,
        metrics: Metrics,
        token: str | None,
        webhook_secret: str | None,
        allow_unauthenticated_controls: bool,
        limits: Limits,
    ) -> None:
        self._controller = controller
        self._metrics = metrics
        self._token = token.encode() if token else None
        self._webhook_secret = webhook_secret.encode() if webhook_secret else None
        self._allow_unauthenticated = allow_unauthenticated_controls
        self._limits = limits
        actions = "|".join(CONTROL_ACTIONS)
        fleet_actions = "|".join(FLEET_CONTROL_ACTIONS)
        self._routes = (
            _Route("page", "/", {"GET": self._get_page}),
            _Route("stack_page", "/stacks/(?P<name>[^/]+)", {"GET": self._get_stack_page}),
            _Route("metrics", "/metrics", {"GET": self._get_metrics}),
            _Route("healthz", "/healthz", {"GET": self._get_health}),
            _Route("readyz", "/readyz", {"GET": self._get_ready}),
            _Route("stacks", "/api/v1/stacks", {"GET": self._get_stacks}),
            _Route("stack", "/api/v1/stacks/(?P<name>[^/]+)", {"GET": self._get_stack}),
            _Route("history", "/api/v1/stacks/(?P<name>[^/]+)/history", {"GET": self._get_history}),
            _Route(
                "control",
                f"/api/v1/stacks/(?P<name>[^/]+)/(?P<action>{actions})",
                {"POST": self._post_control},
            ),
            _Route("fleets", "/api/v1/fleets", {"GET": self._get_fleets}),
            _Route("fleet", "/api/v1/fleets/(?P<name>[^/]+)", {"GET": self._get_fleet}),
            _Route(
                "fleet_control",
                f"/api/v1/fleets/(?P<name>[^/]+)/(?P<action>{fleet_actions})",
                {"POST": self._post_fleet_control},
            ),
            _Route("hook", "/hooks/git", {"POST": self._post_hook}, limits.webhook_body),
        )

    def route(self, path: str) -> tuple[_Route, dict[str, str]] | None:
        for route in self._routes:
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    def route_name(self, path: str) -> str:
        found = self.route(path)
        return "unknown" if found is None else found[0].name

    def body_limit(self, path: str) -> int:
        found = self.route(path)
        limit = 0 if found is None else found[0].body_limit
        return limit or self._limits.control_body

    def handle(self, request: Request) -> Response:
        """The response to `request`; never raises."""
        found = self.route(request.path)
        if found is None:
            return error(404, "not found")
        route, params = found
        handler = route.methods.get(request.method)
        if handler is None:
            return error(405, "method not allowed", (("Allow", ", ".join(route.methods)),))
        try:
            return handler(request, {k: urllib.parse.unquote(v) for k, v in params.items()})
        except Exception:
            # The text of an unexpected exception may hold anything; it goes to the log
            # (which redacts), the client learns only that it happened.
            log.exception("request failed", route=route.name)
            return error(500, "internal error")

    # --- read-only routes

    def _get_metrics(self, _request: Request, _params: Mapping[str, str]) -> Response:
        body, content_type = self._metrics.exposition()
        return Response(200, body, content_type)

    def _get_health(self, _request: Request, _params: Mapping[str, str]) -> Response:
        ok = self._controller.healthy()
        return json_response(200 if ok else 503, {"status": "ok" if ok else "unhealthy"})

    def _get_ready(self, _request: Request, _params: Mapping[str, str]) -> Response:
        ok = self._controller.ready()
        return json_response(200 if ok else 503, {"status": "ready" if ok else "not ready"})

    def _get_stacks(self, _request: Request, _params: Mapping[str, str]) -> Response:
        return json_response(200, {"stacks": self._controller.stacks()})

    def _get_stack(self, _request: Request, params: Mapping[str, str]) -> Response:
        status = self._controller.stack(params["name"])
        if status is None:
            return error(404, f"no stack named {params['name']!r}")
        return json_response(200, status)

    def _get_history(self, _request: Request, params: Mapping[str, str]) -> Response:
        history = self._controller.history(params["name"])
        if history is None:
            return error(404, f"no stack named {params['name']!r}")
        return json_response(200, {"history": history})

    def _get_fleets(self, _request: Request, _params: Mapping[str, str]) -> Response:
        return json_response(200, {"fleets": self._controller.fleets()})

    def _get_fleet(self, _request: Request, params: Mapping[str, str]) -> Response:
        fleet = self._controller.fleet(params["name"])
        if fleet is None:
            return error(404, f"no fleet named {params['name']!r}")
        return json_response(200, fleet)

    # --- the status page: read-only, the JSON routes' data as HTML

    def _get_page(self, _request: Request, _params: Mapping[str, str]) -> Response:
        body = page.index(self._controller.stacks(), self._controller.fleets(), _now())
        return html_response(200, body)

    def _get_stack_page(self, _request: Request, params: Mapping[str, str]) -> Response:
        name = params["name"]
        status = self._controller.stack(name)
        history = self._controller.history(name)
        if status is None or history is None:
            return html_response(404, page.not_found(name, _now()))
        return html_response(200, page.stack_page(status, history, _now()))

    # --- controls

    def _authorize(self, request: Request) -> Response | None:
        """None when the request may use a control; the refusal otherwise."""
        if self._token is None:
            if self._allow_unauthenticated:
                return None
            return error(403, "controls are disabled: the daemon has no API token configured")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token):
            return None
        return error(401, "a valid bearer token is required", (("WWW-Authenticate", "Bearer"),))

    def _post_control(self, request: Request, params: Mapping[str, str]) -> Response:
        refusal = self._authorize(request)
        if refusal is not None:
            return refusal
        body = _json_object(request.body)
        if body is None:
            return error(400, "the body must be a JSON object")
        if self._controller.stack(params["name"]) is None:
            return error(404, f"no stack named {params['name']!r}")  # before judging the body
        try:
            control_body(params["action"], body)  # refused here, whatever the controller
            result = self._controller.control(params["name"], params["action"], body)
        except KeyError:
            return error(404, f"no stack named {params['name']!r}")
        except ValueError as exc:
            return error(400, str(exc))
        return json_response(200, result)

    def _post_fleet_control(self, request: Request, params: Mapping[str, str]) -> Response:
        """As _post_control, for a fleet: the same token, body and error rules."""
        refusal = self._authorize(request)
        if refusal is not None:
            return refusal
        body = _json_object(request.body)
        if body is None:
            return error(400, "the body must be a JSON object")
        name, action = params["name"], params["action"]
        if self._controller.fleet(name) is None:
            return error(404, f"no fleet named {name!r}")  # before judging the body
        try:
            control_body(action, body, FLEET_CONTROL_BODIES)
            result = self._controller.fleet_control(name, action, body)
        except KeyError:
            return error(404, f"no fleet named {name!r}")
        except ValueError as exc:
            return error(400, str(exc))
        return json_response(200, result)

    # --- webhook

    def _signed(self, request: Request) -> bool:
        if self._webhook_secret is None:
            return True
        given = request.headers.get("x-hub-signature-256", "")
        digest = hmac.new(self._webhook_secret, request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), f"sha256={digest}".encode())

    def _post_hook(self, request: Request, _params: Mapping[str, str]) -> Response:
        if not self._signed(request):
            return error(401, "missing or wrong X-Hub-Signature-256")
        if request.headers.get("x-github-event") == "ping":
            return json_response(200, {"status": "pong"})
        self._controller.trigger_git_poll()
        return json_response(202, {"status": "git poll started"})


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object ({} when empty); None when it is anything else."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None
    return value if isinstance(value, dict) else None


# --- the transport: sockets, threads, limits ------------------------------------------------


class _Transport(http.server.BaseHTTPRequestHandler):
    """Reads one request within the limits, hands it to the App, writes the answer."""

    server: _HTTPServer
    server_version = "reconciler"
    sys_version = ""  # the Python version is nobody's business
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        # Per read; the server's deadline bounds the whole request.
        self.connection.settimeout(self.server.limits.request_timeout)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, send_body: bool = True) -> None:
        app = self.server.app
        path = urllib.parse.urlsplit(self.path).path
        body = self._read_body(app.body_limit(path))
        if not self.server.unwatch(self.connection):
            # The headers may have "ended" only because the socket was shut: do not act on
            # half a request (a control without its body, say).
            self.close_connection = True
            return
        if isinstance(body, Response):
            response = body
        else:
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = app.handle(Request(self.command, path, headers, body))
        self.server.metrics.http_request(app.route_name(path), response.status)
        self._write(response, send_body)
        if response.status == 413:
            self._discard_rest()

    def _read_body(self, limit: int) -> bytes | Response:
        """The request body, or the response that refuses it."""
        if "Transfer-Encoding" in self.headers:
            return error(411, "send a Content-Length; chunked bodies are not accepted")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return error(400, "Content-Length is not a number")
        if length < 0:
            return error(400, "Content-Length is negative")
        if length > limit:
            return error(413, f"the body may have at most {limit} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            return error(400, "the body ended before Content-Length")
        return body

    def _write(self, response: Response, send_body: bool = True) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)
        self.wfile.flush()

    def _discard_rest(self) -> None:
        """Read what the client still sends, briefly, so it sees the 413 and not a reset."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1.0
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(65536):
                    return

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests, as the standard library finds them, answered in JSON."""
        self.server.metrics.http_request("invalid", code)
        self.close_connection = True
        # Before a request line is parsed the stdlib assumes HTTP/0.9, which has no status
        # line or headers; we never speak 0.9, and a client deserves a status.
        self.request_version = self.protocol_version
        with contextlib.suppress(OSError):
            self._write(error(code, message or HTTPStatus(code).phrase))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line may carry a query string with a secret; the path alone is enough.
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path  # unset if unparsable
        log.debug("http request", method=getattr(self, "command", ""), path=path, status=code)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("http problem", client=self.client_address[0], detail=format % args)


class _HTTPServer(http.server.HTTPServer):
    """An HTTPServer with a bounded pool of threads and a deadline per request."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], app: App, metrics: Metrics, limits: Limits
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_threads)
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._open: set[socket.socket] = set()
        # Sockets cut off by a deadline or by stop(): what was read of them is not a request.
        self._cut_off: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, _Transport)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's FQDN up in DNS, which can take seconds.
        super(http.server.HTTPServer, self).server_bind()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        worker = threading.Thread(
            target=self._work, args=(request, client_address), name="http-worker", daemon=True
        )
        with self._lock:
            self._workers.add(worker)
            self._open.add(request)
            self._deadlines[request] = time.monotonic() + self.limits.request_timeout
        worker.start()

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._open.discard(request)
                self._deadlines.pop(request, None)
                self._cut_off.discard(request)
                self._workers.discard(threading.current_thread())
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """All workers are busy: say so at once instead of queueing behind slow clients."""
        self.metrics.http_request("overload", 503)
        body = json.dumps({"error": "too many requests in progress"}).encode()
        head = (
            "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: 1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            request.setblocking(False)  # a full send buffer must not stall the accept loop
            request.send(head.encode() + body)
        self.shutdown_request(request)

    def unwatch(self, request: socket.socket) -> bool:
        """Lift the deadline of a request that is fully read; False if it was cut off first."""
        with self._lock:
            self._deadlines.pop(request, None)
            return request not in self._cut_off

    def service_actions(self) -> None:
        """Called by serve_forever between accepts: cut off clients past their deadline."""
        now = time.monotonic()
        with self._lock:
            late = [sock for sock, deadline in self._deadlines.items() if deadline <= now]
            for sock in late:
                del self._deadlines[sock]
            self._cut_off.update(late)
        for sock in late:
            log.info("cutting off a slow client", timeout=self.limits.request_timeout)
            _cut(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request is routine; anything else is a bug of ours.
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("client connection lost", client=str(client_address[0]))
        else:
            log.exception("http transport failed", client=str(client_address[0]))

    def close_all(self) -> list[threading.Thread]:
        """Cut every open connection; the workers that were serving them."""
        with self._lock:
            sockets, workers = list(self._open), list(self._workers)
            self._cut_off.update(sockets)
        for sock in sockets:
            _cut(sock)
        return workers


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


def _cut(sock: socket.socket) -> None:
    """Wake a thread blocked reading `sock`: its read returns at once with nothing."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# --- the public face ------------------------------------------------------------------------


parse_listen = settings.parse_listen  # the `--listen` syntax, declared with the option


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume it reaches the network
        return False


class Server:
    """The daemon's HTTP server, serving from a background thread between start() and stop()."""

    def __init__(
        self,
        listen: str,
        controller: Controller,
        metrics: Metrics,
        token: str | None,
        webhook_secret: str | None,
        allow_unauthenticated_controls: bool = False,
        *,
        limits: Limits | None = None,
    ) -> None:
        self._host, self._port = parse_listen(listen)
        self._limits = limits or Limits()
        self._metrics = metrics
        self._app = App(
            controller, metrics, token, webhook_secret, allow_unauthenticated_controls,
            self._limits,
        )  # fmt: skip
        self._exposed_unsigned = not is_loopback(self._host) and not webhook_secret
        self._exposed_open = (
            not is_loopback(self._host) and allow_unauthenticated_controls and not token
        )
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a background thread; returns once the socket listens."""
        if self._httpd is not None:
            raise RuntimeError("the server is already started")
        server_class = _HTTPServer6 if ":" in self._host else _HTTPServer
        self._httpd = server_class((self._host, self._port), self._app, self._metrics, self._limits)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(ACCEPT_POLL,),
            name="http-server", daemon=True,
        )  # fmt: skip
        self._thread.start()
        self._warn_if_exposed()
        log.info("http server listening", address=f"{self.address[0]}:{self.address[1]}")

    def _warn_if_exposed(self) -> None:
        if self._exposed_unsigned:
            log.warning(
                "HTTP SERVER REACHABLE BEYOND LOOPBACK WITHOUT A WEBHOOK SECRET: anyone who "
                "can reach it can trigger git polls; set a webhook secret",
                host=self._host,
            )
        if self._exposed_open:
            log.warning(
                "HTTP SERVER REACHABLE BEYOND LOOPBACK WITH UNAUTHENTICATED CONTROLS: anyone "
                "who can reach it can pause, approve and retry rollouts; set an API token",
                host=self._host,
            )

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop accepting, cut open connections, wait briefly for requests in progress."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()  # returns after the accept loop's next poll
        deadline = time.monotonic() + self._limits.shutdown_grace
        for worker in httpd.close_all():
            # A worker still inside the controller is left behind: it is a daemon thread.
            worker.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        log.info("http server stopped")
