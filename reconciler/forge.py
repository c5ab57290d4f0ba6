"""Bump pull requests on GitHub: its REST API over urllib (docs/decisions/0015-forge-client.md).

Rules of this file:
- Standard library only. Every HTTP call goes through `_Api.call`, which turns every way a
  call can fail (HTTP status, timeout, refused connection, bad JSON, odd shape) into one
  `ForgeError` whose message is one line naming the call; `propose` turns that into
  `Proposal(result="failed")`, so nothing raises out of it.
- The token travels only in the Authorization header: never in a URL, a message, a log or
  a repr, and never to another origin than the configured API (redirects and `Link` pages
  elsewhere are refused).
- Nothing is remembered between calls: what `propose` does is decided from the forge's
  pull requests each time, so a second call, or a restarted daemon, opens nothing twice.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import reconciler
from reconciler import bump as bumps
from reconciler import settings

API_VERSION = "2022-11-28"
USER_AGENT = f"reconciler/{reconciler.__version__}"
PER_PAGE = 100
"""GitHub's largest page of pull requests: fewest calls."""
SUPERSEDED = "Superseded by #{number}."


class ForgeError(Exception):
    """A forge call that did not give the answer wanted; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Pull:
    """The fields of a GitHub pull request `propose` decides on."""

    number: int
    url: str
    state: str
    merged: bool
    head: str
    head_repo: str
    title: str
    body: str

    @classmethod
    def from_json(cls, raw: Any) -> Pull:
        """Raises KeyError or TypeError on a shape GitHub does not send."""
        head_repo = raw["head"]["repo"]
        return cls(
            number=int(raw["number"]),
            url=str(raw["html_url"]),
            state=str(raw["state"]),
            merged=raw.get("merged_at") is not None,
            head=str(raw["head"]["ref"]),
            # A fork's repository can be deleted under its open pull request: repo is null.
            head_repo=str(head_repo["full_name"]) if head_repo else "",
            title=str(raw["title"] or ""),
            body=str(raw["body"] or ""),
        )


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect (a renamed repository answers 301) only to the API's own origin
    and only for reads: urllib would carry the Authorization header anywhere, and would
    turn a redirected POST into a GET."""

    def __init__(self, origin: str) -> None:
        super().__init__()
        self._origin = origin

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if req.get_method() != "GET" or _origin(newurl) != self._origin:
            return None  # urllib raises the HTTPError of the redirect itself
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Api:
    """One GitHub REST API at one origin with one token."""

    def __init__(self, api_url: str, token: str, timeout: float) -> None:
        self.base = api_url.rstrip("/")
        self._origin = _origin(self.base)
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_SameOriginRedirects(self._origin))

    def __repr__(self) -> str:
        return f"_Api({self.base!r})"

    def call(self, method: str, url: str, payload: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer of one call; `url` is absolute or a path under the API."""
        answer, _ = self._call(method, url, payload)
        return answer

    def pages(self, path: str, query: dict[str, str]) -> Iterator[Any]:
        """Every item of a paged list, following `Link: <...>; rel="next"`."""
        url: str | None = f"{path}?{urllib.parse.urlencode({**query, 'per_page': PER_PAGE})}"
        while url is not None:
            answer, link = self._call("GET", url, None)
            if not isinstance(answer, list):
                raise ForgeError(f"GET {path}: answered {type(answer).__name__}, not a list")
            yield from answer
            url = _next_page(link)
            if url is not None and _origin(url) != self._origin:
                # The next page would get our token: only the configured API may.
                raise ForgeError(f"GET {path}: next page is on another host")

    def _call(self, method: str, url: str, payload: dict[str, Any] | None) -> tuple[Any, str]:
        if url.startswith("/"):
            url = self.base + url
        what = f"{method} {urllib.parse.urlsplit(url).path}"
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked by settings)
            url,
            data=None if payload is None else json.dumps(payload).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": USER_AGENT,
                **({} if payload is None else {"Content-Type": "application/json"}),
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                raw = response.read()
                link = response.headers.get("Link", "")
        except urllib.error.HTTPError as err:
            raise ForgeError(self._scrub(f"{what}: HTTP {err.code} {_message(err)}")) from None
        except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise ForgeError(self._scrub(f"{what}: {_reason(err, self._timeout)}")) from None
        try:
            return (json.loads(raw) if raw else None), link
        except ValueError:
            raise ForgeError(f"{what}: answered something other than JSON") from None

    def _scrub(self, text: str) -> str:
        # Belt and braces: no server we talk to should echo the token, but a proxy might.
        scrubbed = text.replace(self._token, "***") if self._token else text
        return " ".join(scrubbed.split())


class GitHubForge:
    """Bump pull requests of one repository on GitHub or GitHub Enterprise Server."""

    def __init__(self, api_url: str, repo: str, token: str, timeout: float = 10.0) -> None:
        if not re.fullmatch(r"[^/\s]+/[^/\s]+", repo):
            raise ValueError(f"forge repository {repo!r} is not OWNER/NAME")
        self.repo = repo
        self.owner = repo.split("/", maxsplit=1)[0]
        self._api = _Api(api_url, token, timeout)
        self._pulls = "/repos/{}/{}/pulls".format(*(urllib.parse.quote(p) for p in repo.split("/")))

    def __repr__(self) -> str:
        return f"GitHubForge({self._api.base!r}, {self.repo!r})"

    def propose(self, bump: bumps.Bump, body: str) -> bumps.Proposal:
        """Open or update the pull request of `bump.branch`, then close the open ones of
        older branches under `bump.prefix`; one that a person closed is never reopened."""
        try:
            proposal = self._propose(bump, body)
        except ForgeError as err:
            return _failed(str(err))
        except (KeyError, TypeError, ValueError) as err:
            return _failed(f"GET {self._pulls}: unexpected pull request shape ({err!r})")
        return proposal

    def _propose(self, b: bumps.Bump, body: str) -> bumps.Proposal:
        pulls = self._pulls_of(b.branch, b.base)
        open_ = [p for p in pulls if p.state == "open"]
        merged = [p for p in pulls if p.merged]
        if open_:
            pull, result = self._refresh(open_[0], b.title, body)
        elif merged:
            # The image is in the base branch already; older open ones are still superseded.
            pull, result = merged[0], "unchanged"
        elif pulls:
            # Closed unmerged: a person said no to this image. Reopening or opening another
            # would undo their decision; a newer image gets a new branch and pull request.
            return bumps.Proposal("declined", number=pulls[0].number, url=pulls[0].url)
        else:
            pull, result = self._open(b, body)
        superseded = self._supersede(b, pull.number)
        return bumps.Proposal(result, number=pull.number, url=pull.url, superseded=superseded)

    def _pulls_of(self, branch: str, base: str) -> list[Pull]:
        """Every pull request, open or closed, of our repository's `branch` into `base`."""
        query = {"state": "all", "head": f"{self.owner}:{branch}", "base": base}
        pulls = [Pull.from_json(p) for p in self._api.pages(self._pulls, query)]
        return [p for p in pulls if p.head == branch and self._ours(p)]

    def _ours(self, pull: Pull) -> bool:
        """Its head is a branch of our repository, not a fork's of the same name; GitHub
        spells names as created, whatever case `--forge-repo` used."""
        return pull.head_repo.lower() == self.repo.lower()

    def _refresh(self, pull: Pull, title: str, body: str) -> tuple[Pull, bumps.ProposalResult]:
        if (pull.title, pull.body) == (title, body):
            return pull, "unchanged"
        answer = self._api.call(
            "PATCH", f"{self._pulls}/{pull.number}", {"title": title, "body": body}
        )
        return Pull.from_json(answer), "updated"

    def _open(self, b: bumps.Bump, body: str) -> tuple[Pull, bumps.ProposalResult]:
        payload = {"title": b.title, "head": b.branch, "base": b.base, "body": body}
        try:
            return Pull.from_json(self._api.call("POST", self._pulls, payload)), "opened"
        except ForgeError as err:
            if "HTTP 422" not in str(err):
                raise
        # 422 also answers "A pull request already exists": another replica, or our own
        # create whose answer was lost, got there first. Then it is found now.
        found = [p for p in self._pulls_of(b.branch, b.base) if p.state == "open"]
        if not found:
            raise ForgeError(f"POST {self._pulls}: HTTP 422 and no open pull request of {b.branch}")
        return self._refresh(found[0], b.title, body)

    def _supersede(self, b: bumps.Bump, number: int) -> tuple[int, ...]:
        """Close the other open pull requests of this policy, each saying which replaced it."""
        query = {"state": "open", "base": b.base}
        older = [
            p
            for p in map(Pull.from_json, self._api.pages(self._pulls, query))
            if p.head.startswith(b.prefix) and self._ours(p) and p.number != number
        ]
        for pull in older:
            note = SUPERSEDED.format(number=number)
            body = f"{pull.body}\n\n{note}" if pull.body else note
            # One PATCH with both: a crash cannot leave it closed without saying why.
            self._api.call(
                "PATCH", f"{self._pulls}/{pull.number}", {"body": body, "state": "closed"}
            )
        return tuple(sorted(p.number for p in older))


def repo_from_url(url: str) -> str:
    """OWNER/NAME of a git remote: https://host/o/r(.git), git@host:o/r(.git), ssh://..."""
    scp = re.fullmatch(r"(?:[^@/\s]+@)?[^:/\s]+:(?!//)(?P<path>[^\s]+)", url)
    if scp is not None:
        path = scp["path"]
    else:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"https", "http", "ssh", "git"} or not parts.hostname:
            raise ValueError(_unparsable(url))
        path = parts.path
    found = re.fullmatch(r"/*(?P<owner>[^/\s]+)/(?P<name>[^/\s]+?)(?:\.git)?/*", path)
    if found is None:
        raise ValueError(_unparsable(url))
    return f"{found['owner']}/{found['name']}"


def from_settings(conf: settings.ImageSettings, repo_url: str) -> GitHubForge:
    """The forge `--forge github` asks for; a ValueError says in one line what is missing."""
    if conf.forge != "github":
        raise ValueError(f"--forge {conf.forge} opens no pull requests")
    if not conf.forge_token:
        raise ValueError("--forge github needs RECONCILER_FORGE_TOKEN")
    repo = conf.forge_repo or repo_from_url(repo_url)
    return GitHubForge(conf.forge_api_url, repo, conf.forge_token)


def _failed(error: str) -> bumps.Proposal:
    return bumps.Proposal("failed", error=error)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _next_page(link: str) -> str | None:
    """The rel="next" URL of a Link header (RFC 8288), as GitHub pages its lists."""
    for part in link.split(","):
        found = re.fullmatch(r'\s*<([^>]*)>\s*;(?:.*;)?\s*rel="?next"?\s*(?:;.*)?', part)
        if found is not None:
            return found[1]
    return None


def _message(err: urllib.error.HTTPError) -> str:
    """GitHub's own one-line `message` ("Bad credentials"), else the HTTP reason."""
    try:
        message = json.loads(err.read() or b"{}").get("message")
    except (ValueError, AttributeError, OSError):
        message = None
    return str(message or err.reason or "")[:200]


def _reason(err: BaseException, timeout: float) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g}s"
    return f"failed ({type(reason).__name__}: {reason})"


def _unparsable(url: str) -> str:
    # The URL may carry a password (https://user:token@host/...): say only its shape.
    shown = re.sub(r"//[^/@\s]+@", "//***@", url)
    return f"cannot tell OWNER/NAME from the repository URL {shown}; set --forge-repo"
