"""A fake of GitHub's pull-request REST API for the tests and `reconciler demo`.

Rules of this file:
- It answers what GitHub documents for the calls the daemon makes (list, get, create,
  update and merge pull requests) with GitHub's statuses and messages: 401 "Bad
  credentials", 404 "Not Found", 422 "Validation Failed" for a missing field or a second
  open pull request of the same head and base ("A pull request already exists for ..."),
  405 for merging a closed one, `Link` headers on paged lists.
- It is a real HTTP server on 127.0.0.1 in a thread, so the client under test runs its
  real urllib path. Every request is recorded so tests can count calls.
- With `origin` (the specs repository the daemon pushes to and fetches from) a merge is a
  real git merge commit on the base branch, as GitHub's default merge method makes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import http.server
import json
import os
import pathlib
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

_IDENTITY = {
    "GIT_AUTHOR_NAME": "GitHub",
    "GIT_AUTHOR_EMAIL": "noreply@github.com",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
}
_ZERO = "0" * 40


class Refused(Exception):
    """An answer other than success: the status and GitHub's JSON body."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(f"{status} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message}
        if errors is not None:
            self.body["errors"] = errors


@dataclasses.dataclass
class _Pull:
    number: int
    title: str
    body: str | None
    head: str
    base: str
    created: dt.datetime
    head_owner: str
    """Another owner's: a pull request from a fork."""
    state: str = "open"
    merged_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    merge_commit_sha: str | None = None


@dataclasses.dataclass(frozen=True)
class Call:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]


class FakeGitHub:
    """GitHub's pull requests of one repository, served at `api_url` while entered."""

    def __init__(
        self,
        repo: str = "owner/name",
        token: str = "fake-github-token",  # noqa: S107 (a fake's credential)
        origin: pathlib.Path | None = None,
        page_size: int = 100,
    ) -> None:
        self.repo = repo
        self.owner = repo.split("/", maxsplit=1)[0]
        self.token = token
        self.origin = origin
        self.page_size = page_size
        """At most this many items a page, whatever `per_page` asks: small to test paging."""
        self.calls: list[Call] = []
        self._pulls: dict[int, _Pull] = {}
        self._lock = threading.Lock()
        self._failures: dict[int, int] = {}
        self._released = threading.Event()
        self._released.set()
        self._hold_method: str | None = None
        self._waiting = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clock = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    # --- the server ---------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        # A short poll: shutdown waits for the loop to notice, and tests start many fakes.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.01)
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()  # a held request must not keep shutdown waiting
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    @property
    def api_url(self) -> str:
        assert self._server is not None, "enter the FakeGitHub first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- what tests and the demo do -------------------------------------------------------

    def fail(self, status: int, times: int = 1, after: int = 0) -> None:
        """Answer `times` requests with `status`, as GitHub does when it is down, after
        letting `after` more through."""
        with self._lock:
            first = len(self.calls) + after
            self._failures.update({first + i: status for i in range(times)})

    @contextlib.contextmanager
    def hold(self, method: str | None = None) -> Iterator[None]:
        """Keep requests (of `method`, or all) waiting unanswered until the block ends: a
        client's timeout, a lost answer or a race between two clients, without sleeping."""
        with self._lock:
            self._hold_method = method
            self._released.clear()
        try:
            yield
        finally:
            self._released.set()

    @property
    def waiting(self) -> int:
        """Requests held by `hold` now."""
        with self._lock:
            return self._waiting

    def pulls(self) -> list[dict[str, Any]]:
        """Every pull request as GitHub would show it, oldest first."""
        with self._lock:
            return [self._json(p) for p in sorted(self._pulls.values(), key=lambda p: p.number)]

    def pull(self, number: int) -> dict[str, Any]:
        with self._lock:
            return self._json(self._get(number))

    def count(self, method: str, path_suffix: str = "") -> int:
        """How many `method` requests went to a path ending with `path_suffix`."""
        return sum(1 for c in self.calls if c.method == method and c.path.endswith(path_suffix))

    def merge(self, number: int) -> str:
        """Merge pull request `number` as its merge button would; the merge commit's sha."""
        with self._lock:
            return self._merge(self._get(number), {})

    def close(self, number: int) -> None:
        """A person closes pull request `number` unmerged."""
        with self._lock:
            self._update(self._get(number), {"state": "closed"})

    # --- the API ----------------------------------------------------------------------------

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, Any, str]:
        """Status, JSON body and Link header of one request."""
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query))
        self._wait_if_held(method)
        with self._lock:
            self.calls.append(Call(method, parts.path, query))
            try:
                failure = self._failures.pop(len(self.calls) - 1, None)
                if failure is not None:
                    raise Refused(failure, "Server Error")
                self._authorize(headers.get("Authorization", ""))
                payload = _payload(raw)
                return self._route(method, parts.path, query, payload)
            except Refused as refused:
                return refused.status, refused.body, ""

    def _wait_if_held(self, method: str) -> None:
        with self._lock:
            held = not self._released.is_set() and self._hold_method in {None, method}
            self._waiting += held
        if held:
            self._released.wait()
            with self._lock:
                self._waiting -= 1

    def _authorize(self, header: str) -> None:
        # GitHub takes both schemes for a token.
        if header not in {f"Bearer {self.token}", f"token {self.token}"}:
            raise Refused(401, "Bad credentials")

    def _route(
        self, method: str, path: str, query: dict[str, str], payload: dict[str, Any]
    ) -> tuple[int, Any, str]:
        path = path.lower()  # GitHub's owner and repository names ignore case
        prefix = f"/repos/{self.repo.lower()}/pulls"
        one = re.fullmatch(re.escape(prefix) + r"/(\d+)(/merge)?", path)
        if path == prefix and method == "GET":
            return self._list(path, query)
        if path == prefix and method == "POST":
            return 201, self._json(self._create(payload)), ""
        if one is not None and one[2] is None and method == "GET":
            return 200, self._json(self._get(int(one[1]))), ""
        if one is not None and one[2] is None and method == "PATCH":
            return 200, self._json(self._update(self._get(int(one[1])), payload)), ""
        if one is not None and one[2] is not None and method == "PUT":
            sha = self._merge(self._get(int(one[1])), payload)
            return (
                200,
                {"sha": sha, "merged": True, "message": "Pull Request successfully merged"},
                "",
            )
        raise Refused(404, "Not Found")

    def _list(self, path: str, query: dict[str, str]) -> tuple[int, Any, str]:
        state = query.get("state", "open")
        if state not in {"open", "closed", "all"}:
            raise Refused(422, "Validation Failed", [_invalid("state")])
        pulls = [p for p in self._pulls.values() if state in {"all", p.state}]
        if "head" in query:
            owner, _, ref = query["head"].partition(":")
            pulls = [p for p in pulls if (p.head_owner.lower(), p.head) == (owner.lower(), ref)]
        if "base" in query:
            pulls = [p for p in pulls if p.base == query["base"]]
        pulls.sort(key=lambda p: p.number, reverse=True)  # GitHub: newest first
        size = min(int(query.get("per_page", "30")), 100, self.page_size)
        page = int(query.get("page", "1"))
        last = max(1, -(-len(pulls) // size))
        items = [self._json(p) for p in pulls[(page - 1) * size : page * size]]
        links = []
        if page < last:
            links.append(f'<{self._page_url(path, query, page + 1)}>; rel="next"')
            links.append(f'<{self._page_url(path, query, last)}>; rel="last"')
        return 200, items, ", ".join(links)

    def _page_url(self, path: str, query: dict[str, str], page: int) -> str:
        return f"{self.api_url}{path}?{urllib.parse.urlencode({**query, 'page': page})}"

    def _create(self, payload: dict[str, Any]) -> _Pull:
        for field in ("title", "head", "base"):
            if not isinstance(payload.get(field), str) or not payload[field]:
                raise Refused(422, "Validation Failed", [_missing(field)])
        owner, _, head = payload["head"].rpartition(":")
        owner = owner or self.owner
        base = payload["base"]
        if self._open_of(head, base, owner) is not None:
            message = f"A pull request already exists for {owner}:{head}."
            raise Refused(422, "Validation Failed", [_custom(message)])
        if self.origin is not None and owner == self.owner:
            self._check_branches(head, base)
        number = max(self._pulls, default=0) + 1
        body = payload.get("body")
        pull = _Pull(number, payload["title"], body, head, base, self._tick(), owner)
        self._pulls[number] = pull
        return pull

    def _check_branches(self, head: str, base: str) -> None:
        assert self.origin is not None
        for field, branch in (("head", head), ("base", base)):
            if self._sha(branch) is None:
                raise Refused(422, "Validation Failed", [_invalid(field)])
        if self._git("rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}") == "0":
            message = f"No commits between {base} and {head}"
            raise Refused(422, "Validation Failed", [_custom(message)])

    def _update(self, pull: _Pull, payload: dict[str, Any]) -> _Pull:
        for field in ("title", "body", "state", "base"):
            if field in payload and not isinstance(payload[field], str | None):
                raise Refused(422, "Validation Failed", [_invalid(field)])
        state = payload.get("state", pull.state)
        if state not in {"open", "closed"}:
            raise Refused(422, "Validation Failed", [_invalid("state")])
        reopen = state == "open" and pull.state == "closed"
        again = self._open_of(pull.head, pull.base, pull.head_owner)
        if reopen and (pull.merged_at is not None or again is not None):
            message = "state cannot be changed. The pull request cannot be reopened."
            raise Refused(422, "Validation Failed", [_custom(message)])
        pull.title = payload.get("title") or pull.title
        pull.body = payload.get("body", pull.body)
        if state != pull.state:
            pull.state = state
            pull.closed_at = self._tick() if state == "closed" else None
        return pull

    def _merge(self, pull: _Pull, payload: dict[str, Any]) -> str:
        if pull.state != "open":
            raise Refused(405, "Pull Request is not mergeable")
        if payload.get("merge_method", "merge") != "merge":
            raise Refused(422, "Validation Failed", [_invalid("merge_method")])
        if "sha" in payload and payload["sha"] != self._head_sha(pull):
            raise Refused(409, "Head branch was modified. Review and try the merge again.")
        sha = self._git_merge(pull) if self.origin is not None else f"{pull.number:040x}"
        pull.state = "closed"
        pull.merged_at = pull.closed_at = self._tick()
        pull.merge_commit_sha = sha
        return sha

    # --- git --------------------------------------------------------------------------------

    def _git_merge(self, pull: _Pull) -> str:
        """A merge commit of head into base, made with plumbing so a bare origin works too;
        a base checked out in a non-bare origin moves through `git merge --ff-only`, so its
        working tree follows."""
        base, head = self._sha(pull.base), self._sha(pull.head)
        if base is None or head is None:
            raise Refused(405, "Pull Request is not mergeable")
        tree = self._git_status("merge-tree", "--write-tree", base, head)
        if tree is None:
            raise Refused(405, "Pull Request is not mergeable")
        message = f"Merge pull request #{pull.number} from {self.owner}/{pull.head}\n\n{pull.title}"
        merged = self._git(
            "commit-tree", tree.splitlines()[0], "-p", base, "-p", head, "-m", message
        )
        if self._checked_out(pull.base):
            self._git("merge", "--ff-only", "--quiet", merged)
        else:
            self._git("update-ref", f"refs/heads/{pull.base}", merged, base)
        return merged

    def _checked_out(self, branch: str) -> bool:
        if self._git("rev-parse", "--is-bare-repository") == "true":
            return False
        return self._git_status("symbolic-ref", "-q", "HEAD") == f"refs/heads/{branch}"

    def _head_sha(self, pull: _Pull) -> str:
        return (self._sha(pull.head) if self.origin is not None else None) or _ZERO

    def _sha(self, branch: str) -> str | None:
        return self._git_status("rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}")

    def _git(self, *args: str) -> str:
        out = self._git_status(*args)
        if out is None:
            raise RuntimeError(f"git {' '.join(args)} failed in {self.origin}")
        return out

    def _git_status(self, *args: str) -> str | None:
        """git's output, or None when it exits non-zero."""
        assert self.origin is not None
        done = subprocess.run(
            ["git", "-C", str(self.origin), *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **_IDENTITY},
        )
        return done.stdout.strip() if done.returncode == 0 else None

    # --- shapes -----------------------------------------------------------------------------

    def _get(self, number: int) -> _Pull:
        if number not in self._pulls:
            raise Refused(404, "Not Found")
        return self._pulls[number]

    def _open_of(self, head: str, base: str, owner: str) -> _Pull | None:
        found = (
            p
            for p in self._pulls.values()
            if p.state == "open" and (p.head, p.base, p.head_owner) == (head, base, owner)
        )
        return next(found, None)

    def _tick(self) -> dt.datetime:
        # Distinct, ordered times without a clock: tests compare them.
        self._clock += dt.timedelta(seconds=1)
        return self._clock

    def _json(self, pull: _Pull) -> dict[str, Any]:
        name = self.repo.split("/")[1]
        repo = {"full_name": self.repo, "name": name}
        head_repo = {"full_name": f"{pull.head_owner}/{name}", "name": name}
        html = f"https://github.example/{self.repo}/pull/{pull.number}"
        return {
            "url": f"{self._api_url_or_blank()}/repos/{self.repo}/pulls/{pull.number}",
            "html_url": html,
            "number": pull.number,
            "state": pull.state,
            "title": pull.title,
            "body": pull.body,
            "draft": False,
            "user": {"login": "reconciler"},
            "created_at": _iso(pull.created),
            "closed_at": _iso(pull.closed_at),
            "merged_at": _iso(pull.merged_at),
            "merge_commit_sha": pull.merge_commit_sha,
            "head": {
                "ref": pull.head,
                "label": f"{pull.head_owner}:{pull.head}",
                "sha": self._head_sha(pull),
                "repo": head_repo,
            },
            "base": {"ref": pull.base, "label": f"{self.owner}:{pull.base}", "repo": repo},
        }

    def _api_url_or_blank(self) -> str:
        return self.api_url if self._server is not None else ""


def _handler(fake: FakeGitHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body, link = fake.serve(self.command, self.path, self.headers, raw)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if link:
                self.send_header("Link", link)
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # a client that timed out is gone
                self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read `fake.calls`, not stderr

    return Handler


def _payload(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        payload = json.loads(raw)
    except ValueError:
        raise Refused(400, "Problems parsing JSON") from None
    if not isinstance(payload, dict):
        raise Refused(400, "Problems parsing JSON")
    return payload


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _missing(field: str) -> dict[str, str]:
    return {"resource": "PullRequest", "code": "missing_field", "field": field}


def _invalid(field: str) -> dict[str, str]:
    return {"resource": "PullRequest", "code": "invalid", "field": field}


def _custom(message: str) -> dict[str, str]:
    return {"resource": "PullRequest", "code": "custom", "message": message}
