"""A counting reverse proxy in front of moto, and the record worker behind it.

`python -m tests.bench.proxy --upstream http://127.0.0.1:PORT --bucket B --prefix P` prints
`PORT <n>` and serves on 127.0.0.1 until its standard input closes or SIGTERM. Every tool
under test (the daemon, `reconciler apply`, sceptre) and the record worker use it as their
AWS endpoint; the harness makes its own setup and ground-truth calls straight to moto.

- Forwards every request unchanged (same method, path, headers, body; keep-alive to moto)
  and counts it by (service, operation, client): the service from the SigV4 credential
  scope, the operation from `Action=` (query protocol), `X-Amz-Target` (json protocol),
  `/service/S/operation/OP` (rpc-v2-cbor) or, for S3, the method and path. The client is
  `worker` for the record worker's requests (its User-Agent carries `bench-worker`),
  `tool` for everything else. Answers that are not 2xx/3xx are counted again by status.
- Throttling on request (`POST /__bench/throttle?every=3`): every 3rd request of the tool
  is answered by the proxy itself, as AWS would throttle it, without reaching moto
  (query: `Throttling: Rate exceeded`; json: ThrottlingException; EC2:
  RequestLimitExceeded; S3: 503 SlowDown). Injected answers are counted as requests too.
- The record worker: once moto has answered an UpdateStack that sets
  `MigrationLcImageId` to X with `MigrationDesiredCapacity` >= 1, a worker thread writes
  `s3://BUCKET/PREFIX/STACK/X.json` (`succeeded`) with boto3 through this very proxy, once
  per (stack, image): the migration instance of the job, finishing at once.
- The live image and capacities of each stack, from the UpdateStack calls moto accepted
  (seeded by the harness with `POST /__bench/live`), so the harness can see convergence
  without polling moto and loading it.
- `GET /__bench/converged?image=X`: how many stacks run X with no migration instance.
- `GET /__bench/stats`: every count, moto's answer time summed per operation, the times
  (CLOCK_MONOTONIC, comparable across the processes of one machine) of each accepted
  UpdateStack, the records written.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import http.client
import json
import logging
import queue
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.bench import moto_proc

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/([^/,]+)/aws4_request")
_STACK_ARN = re.compile(r"^arn:aws[a-z-]*:cloudformation:[^:]*:\d*:stack/([^/]+)/")
_MEMBER = re.compile(r"^Parameters\.member\.(\d+)\.(ParameterKey|ParameterValue|UsePreviousValue)$")
WORKER_AGENT = "bench-worker"
CONTROL = "/__bench/"
TRACKED = ("LcImageId", "MigrationLcImageId", "MigrationDesiredCapacity", "Asg1DesiredCapacity")


# --- what a request is ----------------------------------------------------------------


def service_of(headers: Any) -> str:
    found = _SCOPE.search(headers.get("Authorization", "") or "")
    return found.group(2) if found else "unsigned"


def s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets"
    if key:
        if method == "PUT":
            return "UploadPart" if "partNumber" in query else "PutObject"
        if method == "POST":
            return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(
            method, method + "Object"
        )
    sub = next((k for k in query if k not in {"prefix", "delimiter", "max-keys"}), "")
    if method == "GET":
        if "list-type" in query:
            return "ListObjectsV2"
        return "GetBucket" + sub.title().replace("-", "") if sub else "ListObjects"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    verb = {"HEAD": "Head", "PUT": "Create" if not sub else "Put", "DELETE": "Delete"}.get(
        method, method.title()
    )
    return f"{verb}Bucket{sub.title().replace('-', '')}"


def form_of(headers: Any, body: bytes, query: str) -> dict[str, list[str]]:
    ctype = headers.get("Content-Type", "") or ""
    text = body.decode("utf-8", "replace") if "x-www-form-urlencoded" in ctype else query
    return urllib.parse.parse_qs(text, keep_blank_values=True)


def operation_of(
    service: str, method: str, path: str, headers: Any, form: dict[str, list[str]]
) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    parts = urllib.parse.urlsplit(path)
    if service == "s3":
        return s3_operation(method, parts.path, urllib.parse.parse_qs(parts.query, True))
    if parts.path.startswith("/service/") and "/operation/" in parts.path:
        return parts.path.rsplit("/", 1)[-1]
    return form.get("Action", ["?"])[0]


def protocol_of(service: str, headers: Any) -> str:
    if service == "s3":
        return "s3"
    if headers.get("X-Amz-Target"):
        return "json"
    return "ec2" if service == "ec2" else "query"


def throttle_answer(protocol: str) -> tuple[int, dict[str, str], bytes]:
    if protocol == "s3":
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
            "<Message>Please reduce your request rate.</Message><RequestId>x</RequestId></Error>"
        )
        return 503, {"Content-Type": "application/xml"}, body.encode()
    if protocol == "json":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": "ThrottlingException",
            "x-amzn-RequestId": "x",
        }
        return 400, headers, body.encode()
    if protocol == "ec2":  # EC2's own error shape; botocore reads no other there
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error>"
            "<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
            "</Error></Errors><RequestID>x</RequestID></Response>"
        )
        return 503, {"Content-Type": "text/xml"}, body.encode()
    body = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
        "<Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>"
    )
    return 400, {"Content-Type": "text/xml"}, body.encode()


def stack_of(form: dict[str, list[str]]) -> str:
    name = form.get("StackName", [""])[0]
    found = _STACK_ARN.match(name)
    return found.group(1) if found else name


def parameters_of(form: dict[str, list[str]]) -> dict[str, str | None]:
    """ParameterKey -> the value sent, None for UsePreviousValue."""
    members: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for field, values in form.items():
        found = _MEMBER.match(field)
        if found:
            members[found.group(1)][found.group(2)] = values[0]
    out: dict[str, str | None] = {}
    for m in members.values():
        if "ParameterKey" in m:
            previous = m.get("UsePreviousValue", "false").lower() == "true"
            out[m["ParameterKey"]] = None if previous else m.get("ParameterValue")
    return out


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the shared state -----------------------------------------------------------------


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.errors: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self.upstream_s: dict[tuple[str, str], float] = collections.defaultdict(float)
        self.throttle_every = 0
        self.tool_seen = 0  # the tool's requests, for "every k-th"
        self.update_times: list[float] = []  # accepted UpdateStack calls, CLOCK_MONOTONIC
        self.live: dict[str, dict[str, str]] = {}
        self.records_done: set[tuple[str, str]] = set()
        self.records_written = 0
        self.records_failed = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "now": time.monotonic(),
                "requests": [[*k, n] for k, n in sorted(self.requests.items())],
                "errors": [[*k, n] for k, n in sorted(self.errors.items())],
                "upstream_s": [[*k, round(t, 4)] for k, t in sorted(self.upstream_s.items())],
                "throttle_every": self.throttle_every,
                "update_times": list(self.update_times),
                "records_queued": len(self.records_done),
                "records_written": self.records_written,
                "records_failed": self.records_failed,
                "live": {k: dict(v) for k, v in self.live.items()},
            }


class RecordWorker:
    """Writes each migration record as soon as phase 1 reaches its stack."""

    def __init__(self, state: State, endpoint: str, bucket: str, prefix: str, threads: int) -> None:
        import boto3  # noqa: PLC0415 - only the worker needs it
        from botocore.config import Config  # noqa: PLC0415

        self.state, self.bucket, self.prefix = state, bucket, prefix.strip("/")
        self.jobs: queue.Queue[tuple[str, str]] = queue.Queue()
        config = Config(
            user_agent_extra=WORKER_AGENT,
            retries={"mode": "standard", "total_max_attempts": 5},
            s3={"addressing_style": "path"},
            max_pool_connections=threads,
        )
        self.s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )
        for i in range(threads):
            threading.Thread(target=self._run, name=f"record-{i}", daemon=True).start()

    def offer(self, stack: str, image: str) -> None:
        with self.state.lock:
            if (stack, image) in self.state.records_done:
                return
            self.state.records_done.add((stack, image))
        self.jobs.put((stack, image))

    def _run(self) -> None:
        while True:
            stack, image = self.jobs.get()
            now = now_rfc3339()
            record = {
                "image": image,
                "status": "succeeded",
                "progress": "1/1",
                "instanceId": "i-bench",
                "startedAt": now,
                "updatedAt": now,
            }
            key = "/".join(p for p in (self.prefix, stack, f"{image}.json") if p)
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=json.dumps(record).encode(),
                    ContentType="application/json",
                )
                ok = True
            except Exception:  # counted, and shown by the harness
                logging.exception("record %s/%s not written", self.bucket, key)
                ok = False
            with self.state.lock:
                if ok:
                    self.state.records_written += 1
                else:
                    self.state.records_failed += 1


# --- the server -----------------------------------------------------------------------


class Proxy(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, upstream: str, state: State) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.state = state
        self.worker: RecordWorker | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    # --- reading and answering --------------------------------------------------------

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding", "") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(length) if length else b""

    def _answer(
        self, status: int, headers: dict[str, str] | list[tuple[str, str]], body: bytes
    ) -> None:
        self.send_response(status)
        items = list(headers.items()) if isinstance(headers, dict) else headers
        sent_length = False
        for k, v in items:
            if k.lower() == "content-length":
                if self.command != "HEAD":
                    continue
                sent_length = True
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        elif not sent_length:
            self.send_header("Content-Length", "0")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        if self.path.startswith(CONTROL):
            self._control(body)
            return
        state = self.server.state
        service = service_of(self.headers)
        split = urllib.parse.urlsplit(self.path)
        form = form_of(self.headers, body, split.query) if service != "s3" else {}
        op = operation_of(service, self.command, self.path, self.headers, form)
        agent = self.headers.get("User-Agent", "") or ""
        client = "worker" if WORKER_AGENT in agent else "tool"
        with state.lock:
            state.requests[(service, op, client)] += 1
            throttle = False
            if client == "tool":
                state.tool_seen += 1
                every = state.throttle_every
                throttle = every > 0 and state.tool_seen % every == 0
            if throttle:
                state.errors[(service, op, client, "throttled-injected")] += 1
        if throttle:
            self._answer(*throttle_answer(protocol_of(service, self.headers)))
            return
        started = time.monotonic()
        try:
            status, headers, answer = self._forward(body)
        except OSError as exc:
            with state.lock:
                state.errors[(service, op, client, "502")] += 1
            self._answer(502, {"Content-Type": "text/plain"}, str(exc).encode())
            return
        with state.lock:
            state.upstream_s[(service, op)] += time.monotonic() - started
            if status >= 400:
                state.errors[(service, op, client, str(status))] += 1
        if op == "UpdateStack" and status == 200:
            self._updated(form)
        self._answer(status, headers, answer)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
        if not any(k.lower() == "content-length" for k, _ in headers) and (
            body or self.command in {"POST", "PUT", "PATCH"}
        ):
            headers.append(("Content-Length", str(len(body))))
        for attempt in (1, 2):
            conn = self._upstream(fresh=attempt == 2)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body or None)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt == 2:
                    raise
                continue
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            if resp.will_close:
                conn.close()
            return resp.status, out, data
        raise OSError("unreachable")

    def _upstream(self, fresh: bool) -> http.client.HTTPConnection:
        local = _LOCAL.__dict__
        conn: http.client.HTTPConnection | None = local.get("conn")
        if conn is None or fresh:
            conn = http.client.HTTPConnection(
                self.server.upstream_host, self.server.upstream_port, timeout=120
            )
            local["conn"] = conn
        return conn

    def _updated(self, form: dict[str, list[str]]) -> None:
        state = self.server.state
        stack = stack_of(form)
        params = parameters_of(form)
        with state.lock:
            state.update_times.append(time.monotonic())
            live = state.live.setdefault(stack, {})
            for k, v in params.items():
                if v is not None and k in TRACKED:
                    live[k] = v
        image, capacity = params.get("MigrationLcImageId"), params.get("MigrationDesiredCapacity")
        worker = self.server.worker
        if worker is not None and image and capacity and capacity.isdigit() and int(capacity):
            worker.offer(stack, image)

    # --- the harness's controls -------------------------------------------------------

    def _control(self, body: bytes) -> None:
        state = self.server.state
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query)
        name = split.path.removeprefix(CONTROL)
        answer: Any = {"ok": True}
        if name == "stats":
            answer = state.stats()
        elif name == "converged":  # stacks on ?image=X with no migration instance: cheap
            image = query.get("image", [""])[0]
            with state.lock:
                answer = {
                    "converged": sum(
                        1
                        for live in state.live.values()
                        if live.get("LcImageId") == image
                        and live.get("MigrationDesiredCapacity") == "0"
                    )
                }
        elif name == "throttle":
            with state.lock:
                state.throttle_every = int(query.get("every", ["0"])[0])
                state.tool_seen = 0
        elif name == "live":
            seeded = json.loads(body or b"{}")
            with state.lock:
                for stack, params in seeded.items():
                    state.live[stack] = {k: str(v) for k, v in params.items() if k in TRACKED}
        else:
            self._answer(404, {"Content-Type": "text/plain"}, b"unknown control")
            return
        self._answer(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())


_LOCAL = threading.local()  # one keep-alive connection to moto per handler thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.proxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="moto's URL")
    parser.add_argument("--bucket", required=True, help="bucket of the migration records")
    parser.add_argument("--prefix", default="", help="key prefix of the migration records")
    parser.add_argument("--record-threads", type=int, default=4)
    args = parser.parse_args(argv)
    state = State()
    server = Proxy(args.upstream, state)
    server.worker = RecordWorker(state, server.url, args.bucket, args.prefix, args.record_threads)
    serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serve.daemon = True
    serve.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    moto_proc.wait_until_stopped()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
