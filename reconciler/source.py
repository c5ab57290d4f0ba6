"""The git source: reads spec files from one branch of a repository (ARCHITECTURE "source").

Rules of this file:
- Clone once into a bare repository under `cache_dir`, reused across restarts; each poll asks
  `git ls-remote` for the branch head and fetches only when that commit is not already here.
  A force-push is followed: the fetch refspec is forced (`+`).
- Specs are read from the commit's tree (`ls-tree`, `cat-file`), never from a working tree.
- Every `*.yaml` / `*.yml` under `path` is a spec file. A symlink, a submodule or a blob larger
  than `spec.MAX_SPEC_BYTES` is refused with a SpecError for that file (line 1, no field);
  its content is never read.
- A file's revision is the last commit on the branch's first-parent line that changed it
  (for a merged pull request, the merge commit: the moment the change reached the branch).
  Only the commits since the previous poll are walked when the old head is an ancestor.
- git runs as a subprocess with an argument list (never a shell) and a timeout; credentials
  in a URL (`https://user:token@host/...`) never appear in an error message.
- `poll` holds a lock: a webhook and the scheduler may both ask for a poll at once.
- Older versions of a file (for the catalog's fallback when the head version is invalid) are
  read from the same first-parent line, newest first, at most HISTORY_DEPTH back, and lazily:
  usually the first older version is the one wanted. A removal ends a file's history (a file
  removed and added again is a new file, as it is for a running daemon), and versions the
  source would refuse at the head (symlink, submodule, too large) are skipped unread.
- With a SignaturePolicy, only a commit signed by a pinned key (checked by git against a
  dedicated keyring, GNUPGHOME) is read: an untrusted head is not deployed; the newest trusted
  commit on its first-parent line is read instead (at most HISTORY_DEPTH back), and the
  snapshot says why in `unverified`. Only the head's signature vouches for its tree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator

from reconciler import crashpoints, spec

SPEC_SUFFIXES = (".yaml", ".yml")
_MODE_SYMLINK = "120000"
_MODE_SUBMODULE = "160000"
# Userinfo runs to the last "@" of the authority: a password may hold a raw "@" that git
# accepts, and stopping at the first one would leave the rest of it visible.
_USERINFO_RE = re.compile(r"(?<=://)[^/\s'\"]*@")
_SCP_LIKE_RE = re.compile(r"^[^/]+:")
_BAD_BRANCH_RE = re.compile(r"(^[-/.])|(\.\.)|([\s~^:?*\[\\])|(@\{)|(/$)|(\.lock$)|(\.$)")
_URL_KEY = "reconciler.url"
_MODE_REMOVED = "000000"  # the new mode in `git log --raw` of a commit that removed the file
_REGULAR_MODES = ("100644", "100755")
HISTORY_DEPTH = 50  # older versions looked at: bounds the cost of a file broken for long


@dataclasses.dataclass(frozen=True)
class SpecFile:
    path: str  # path in the repository, e.g. "deploy-specs/biglearn-api.yaml"
    text: bytes  # the blob
    blob: str  # blob sha
    revision: str  # sha of the last commit (reachable from head) that changed this file


OlderVersions = Callable[[str], Iterable[SpecFile]]


def no_history(path: str) -> Iterable[SpecFile]:
    """The older versions of a file read outside git: none are known."""
    return ()


@dataclasses.dataclass(frozen=True)
class Snapshot:
    head: str
    files: tuple[SpecFile, ...]
    errors: tuple[spec.SpecError, ...]  # per-file refusals found while reading the tree
    fetched: bool  # whether this poll fetched
    # Versions of a path older than the one at `head`, newest first. It travels with the
    # snapshot so every reader of a poll (a fresh catalog in `apply` too) can fall back on them.
    older_versions: OlderVersions = dataclasses.field(default=no_history, compare=False, repr=False)
    # Why the branch head was not read (not signed by an allowed key), None when it was.
    unverified: str | None = None


# `git log --format=%G?`: G good; U good, key validity unknown (trust comes from the pinned
# fingerprint, not from the keyring's trust database, so U is as good as G here).
_GOOD_SIGNATURES = frozenset({"G", "U"})
_SIGNATURE_TROUBLE = {
    "N": "no signature",
    "B": "a bad signature",
    "E": "a signature that cannot be checked (its key is not in the keyring)",
    "X": "an expired signature",
    "Y": "a signature by an expired key",
    "R": "a signature by a revoked key",
}


@dataclasses.dataclass(frozen=True)
class SignaturePolicy:
    """Which commits may be deployed: those signed by one of `fingerprints` (primary key or
    signing subkey), verified against the public keys in the keyring at `gpg_home`."""

    gpg_home: pathlib.Path
    fingerprints: frozenset[str]

    @classmethod
    def of(cls, gpg_home: pathlib.Path | None, keys: Iterable[str]) -> SignaturePolicy:
        fingerprints = frozenset(normalize_fingerprint(k) for k in keys)
        if gpg_home is None or not fingerprints:
            raise ValueError("verifying signatures needs a keyring and at least one key")
        return cls(pathlib.Path(gpg_home).expanduser().resolve(), fingerprints)

    def judge(self, log_line: str) -> str | None:
        """None when `%G?%n%GF%n%GP` of a commit shows an allowed signer, else why not."""
        status, signer, primary = ([*log_line.split("\n"), "", ""])[:3]
        if status not in _GOOD_SIGNATURES:
            return _SIGNATURE_TROUBLE.get(status, f"signature status {status!r}")
        if {signer.upper(), primary.upper()} & self.fingerprints:
            return None
        return f"a signature by key {signer or primary}, which is not an allowed key"


def normalize_fingerprint(key: str) -> str:
    """A fingerprint as git prints it: 40 (or 64) hex digits, upper case, no spaces."""
    compact = "".join(key.split()).upper().removeprefix("0X")
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", compact):
        raise ValueError(f"{key!r} is not a full key fingerprint (40 or 64 hex digits)")
    return compact


class GitError(Exception):
    """git failed: remote unreachable, branch missing, timeout. The message is redacted."""


def redact(text: str) -> str:
    """Hide `user:password@` in every URL of `text`."""
    return _USERINFO_RE.sub("***@", text)


@dataclasses.dataclass(frozen=True)
class _Version:
    revision: str  # the first-parent commit that made this version
    mode: str  # "000000" when that commit removed the file
    blob: str


@dataclasses.dataclass(frozen=True)
class _Entry:
    mode: str
    kind: str
    blob: str
    size: int
    path: str


class GitSource:
    """One branch of one repository; `poll()` returns what `path` holds at the branch head."""

    def __init__(
        self,
        url: str,
        branch: str,
        path: str,
        cache_dir: pathlib.Path,
        timeout: float = 60.0,
        signatures: SignaturePolicy | None = None,
    ) -> None:
        if not url or url.startswith("-"):
            raise ValueError(f"not a repository URL: {redact(url)!r}")
        if not branch or _BAD_BRANCH_RE.search(branch):
            raise ValueError(f"not a branch name: {branch!r}")
        self.url = _absolute_if_local(url)
        self.branch = branch
        self.path = path.strip("/") if path.strip("/") != "." else ""
        self.repo_dir = pathlib.Path(cache_dir) / "repo.git"
        self.timeout = timeout
        self.fetch_count = 0  # fetches done by this object: lets callers (and tests) see cost
        self._last: Snapshot | None = None
        self.signatures = signatures
        self._seen: str | None = None  # the branch head of the last poll (may be untrusted)
        self._ready = False
        self._lock = threading.Lock()

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def poll(self) -> Snapshot:
        """The specs at the branch head; raises GitError when the remote cannot be read."""
        with self._lock:
            head = self._remote_head()
            if self._last is not None and self._seen == head:
                return dataclasses.replace(self._last, fetched=False)
            self._ensure_repo()
            fetched = False
            if not self._has_commit(head):
                head = self._fetch()
                fetched = True
            else:
                # Keep the commit referenced so gc never prunes what we read (a force-push
                # back to an older commit needs no fetch).
                self._git("update-ref", self.ref, head)
            trusted, unverified = self._trusted(head)
            if self._last is not None and self._last.head == trusted:
                snapshot = dataclasses.replace(self._last, fetched=fetched, unverified=unverified)
            else:
                snapshot = dataclasses.replace(self._read(trusted, fetched), unverified=unverified)
            self._last, self._seen = snapshot, head
            return snapshot

    # -- signatures -------------------------------------------------------------------------

    def _trusted(self, head: str) -> tuple[str, str | None]:
        """The commit to read for `head`, and why it is not `head` (None when it is)."""
        if self.signatures is None:
            return head, None
        why = self._signature_problem(head)
        if why is None:
            return head, None
        refusal = f"commit {head[:12]} on {self.branch} is not deployed: it has {why}"
        line = self._git(
            "rev-list", "--first-parent", "--skip=1", f"--max-count={HISTORY_DEPTH}", head, "--"
        )
        for sha in line.decode().split():
            if self._signature_problem(sha) is None:
                return sha, f"{refusal}; reading {sha[:12]}, the newest trusted commit"
        raise GitError(f"{refusal}, and none of the {HISTORY_DEPTH} commits before it is trusted")

    def _signature_problem(self, sha: str) -> str | None:
        assert self.signatures is not None
        out = self._git(
            "-c",
            "gpg.format=openpgp",
            "log",
            "-1",
            "--format=%G?%n%GF%n%GP",
            sha,
            env={"GNUPGHOME": str(self.signatures.gpg_home)},
        )
        return self.signatures.judge(out.decode().strip())

    # -- remote -----------------------------------------------------------------------------

    def _remote_head(self) -> str:
        out = self._git("ls-remote", self.url, self.ref, in_repo=False).decode()
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == self.ref:
                return sha
        raise GitError(f"branch {self.branch!r} not found in {redact(self.url)}")

    def _fetch(self) -> str:
        self.fetch_count += 1
        self._git(
            "fetch", "--quiet", "--no-tags", "--update-head-ok", self.url, f"+{self.ref}:{self.ref}"
        )
        # The remote may have moved since ls-remote: read what was actually fetched.
        return self._git("rev-parse", "--verify", f"{self.ref}^{{commit}}").decode().strip()

    def _ensure_repo(self) -> None:
        if self._ready:
            return
        key = redact(self.url)
        if self.repo_dir.exists() and self._config_url() != key:
            # Another repository (or a broken one) lives here: the cache is ours to replace.
            shutil.rmtree(self.repo_dir)
        if not self.repo_dir.exists():
            self.repo_dir.parent.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", str(self.repo_dir), in_repo=False)
            # The redacted URL identifies the cache; the credentials stay out of the config.
            self._git("config", _URL_KEY, key)
        self._ready = True

    def _config_url(self) -> str | None:
        try:
            return self._git("config", "--get", _URL_KEY).decode().strip()
        except GitError:
            return None

    def _has_commit(self, sha: str) -> bool:
        try:
            self._git("cat-file", "-e", f"{sha}^{{commit}}")
        except GitError:
            return False
        return True

    # -- tree -------------------------------------------------------------------------------

    def _read(self, head: str, fetched: bool) -> Snapshot:
        entries = self._spec_entries(head)
        refusals = {e.path: _refusal(e) for e in entries}
        errors = [err for err in refusals.values() if err is not None]
        accepted = [e for e in entries if refusals[e.path] is None]
        texts = self._blobs(accepted)
        revisions = self._revisions(head, [e.path for e in accepted])
        files = tuple(SpecFile(e.path, texts[e.blob], e.blob, revisions[e.path]) for e in accepted)
        return Snapshot(head, files, tuple(errors), fetched, lambda p: self.older_versions(p, head))

    def _spec_entries(self, head: str) -> list[_Entry]:
        args = ["ls-tree", "-r", "-l", "-z", head]
        if self.path:
            args += ["--", self.path]
        out = self._git("--literal-pathspecs", *args).decode("utf-8", "surrogateescape")
        entries = []
        for record in filter(None, out.split("\0")):
            meta, _, path = record.partition("\t")
            mode, kind, blob, size = meta.split()
            if path.endswith(SPEC_SUFFIXES):
                entries.append(_Entry(mode, kind, blob, int(size) if size != "-" else 0, path))
        return sorted(entries, key=lambda e: e.path)

    def _blobs(self, entries: list[_Entry]) -> dict[str, bytes]:
        """Blob texts by sha: reused from the last snapshot, the rest in one `cat-file`."""
        known = {f.blob: f.text for f in self._last.files} if self._last else {}
        wanted = sorted({e.blob for e in entries} - known.keys())
        if wanted:
            out = self._git("cat-file", "--batch", stdin="".join(f"{b}\n" for b in wanted))
            known.update(_parse_batch(out))
        return known

    def _revisions(self, head: str, paths: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        last = self._last
        if paths and last is not None and self._is_ancestor(last.head, head):
            # Files untouched since the last head keep their revision; walk only the new part.
            found = self._walk(f"{last.head}..{head}", paths)
            previous = {f.path: f.revision for f in last.files}
            found.update({p: previous[p] for p in paths if p not in found and p in previous})
        missing = [p for p in paths if p not in found]
        if missing:
            found.update(self._walk(head, missing))
        return found

    def _walk(self, revisions: str, paths: list[str]) -> dict[str, str]:
        """The newest commit in `revisions` (first-parent line) that changed each path."""
        out = self._git(
            "--literal-pathspecs",
            "log",
            "-z",
            "--first-parent",
            "--diff-merges=first-parent",
            "--no-renames",
            "--format=%x01%H",
            "--name-only",
            revisions,
            "--",
            *paths,
        ).decode("utf-8", "surrogateescape")
        wanted, found = set(paths), {}
        for record in filter(None, out.split("\x01")):
            sha, _, names = record.partition("\0")
            for name in names.removeprefix("\n").split("\0"):
                if name in wanted and name not in found:
                    found[name] = sha
        return found

    # -- history ----------------------------------------------------------------------------

    def older_versions(self, path: str, head: str) -> Iterator[SpecFile]:
        """Versions of `path` before its version at `head`, newest first (see the rules).

        Each is read only when the caller asks for it; GitError may come from any step.
        """
        versions = self._versions(path, head)
        if not versions or versions[0].mode == _MODE_REMOVED:
            return  # absent at head: a removed file has no versions to fall back on
        earlier = []
        for version in versions[1:]:
            if version.mode == _MODE_REMOVED:
                break
            if version.mode in _REGULAR_MODES:
                earlier.append(version)
        sizes = self._sizes({v.blob for v in earlier})
        for version in earlier:
            if sizes.get(version.blob, spec.MAX_SPEC_BYTES + 1) <= spec.MAX_SPEC_BYTES:
                text = self._git("cat-file", "blob", version.blob)
                yield SpecFile(path, text, version.blob, version.revision)

    def _versions(self, path: str, head: str) -> list[_Version]:
        """The changes to `path` on the first-parent line of `head`, newest first, bounded."""
        out = self._git(
            "--literal-pathspecs",
            "log",
            "-z",
            f"--max-count={HISTORY_DEPTH + 1}",  # + the version at head
            "--first-parent",
            "--diff-merges=first-parent",
            "--no-renames",
            "--no-abbrev",
            "--raw",
            "--format=%x01%H",
            head,
            "--",
            path,
        ).decode("utf-8", "surrogateescape")
        versions = []
        for record in filter(None, out.split("\x01")):
            sha, _, raw = record.partition("\0")
            fields = raw.removeprefix("\n").split("\0")
            for meta, name in zip(fields[::2], fields[1::2], strict=False):
                # `:<old mode> <new mode> <old blob> <new blob> <status>`
                parts = meta.lstrip(":").split()
                if name == path and len(parts) == 5:
                    versions.append(_Version(sha, parts[1], parts[3]))
        return versions

    def _sizes(self, blobs: set[str]) -> dict[str, int]:
        """Blob sizes in one call, so a huge old version is refused without being read."""
        if not blobs:
            return {}
        out = self._git("cat-file", "--batch-check", stdin="".join(f"{b}\n" for b in sorted(blobs)))
        sizes = {}
        for line in out.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "blob":
                sizes[parts[0]] = int(parts[2])
        return sizes

    def _is_ancestor(self, old: str, new: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", old, new)
        except GitError:
            return False
        return True

    # -- git --------------------------------------------------------------------------------

    def _git(
        self, *args: str, in_repo: bool = True, stdin: str = "", env: dict[str, str] | None = None
    ) -> bytes:
        """Run git (in the cache repository unless told); GitError, redacted, on failure."""
        argv = ["git"]
        if in_repo:
            argv += ["--git-dir", str(self.repo_dir)]
        argv += list(args)
        what = next((a for a in args if not a.startswith("-")), "git")  # ls-remote, fetch, ...
        crashpoints.hit(f"git.{what}.before")
        try:
            result = subprocess.run(
                argv,
                input=stdin.encode(),
                capture_output=True,
                timeout=self.timeout,
                env={**_git_env(), **(env or {})},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} timed out after {self.timeout:g}s") from exc
        except OSError as exc:
            raise GitError(redact(f"git could not run: {exc}")) from exc
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip()
            raise GitError(redact(f"git {args[0]} failed ({result.returncode}): {detail}"))
        crashpoints.hit(f"git.{what}.after")
        return result.stdout


def _refusal(entry: _Entry) -> spec.SpecError | None:
    if entry.mode == _MODE_SYMLINK:
        return spec.SpecError(entry.path, 1, "", "a symlink is not read as a spec")
    if entry.mode == _MODE_SUBMODULE or entry.kind != "blob":
        return spec.SpecError(entry.path, 1, "", "not a regular file")
    if entry.size > spec.MAX_SPEC_BYTES:
        return spec.SpecError(entry.path, 1, "", f"file is larger than {spec.MAX_SPEC_BYTES} bytes")
    return None


def _parse_batch(out: bytes) -> dict[str, bytes]:
    """`git cat-file --batch` output: `<sha> <type> <size>\\n<content>\\n` per object."""
    blobs, pos = {}, 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].decode().split()
        if len(header) != 3:
            raise GitError(f"git cat-file: unexpected answer {' '.join(header)!r}")
        size = int(header[2])
        start = header_end + 1
        blobs[header[0]] = out[start : start + size]
        pos = start + size + 1
    return blobs


def _absolute_if_local(url: str) -> str:
    """A local path is made absolute, since git runs with `--git-dir` in the cache."""
    if "://" in url or _SCP_LIKE_RE.match(url):
        return url
    return str(pathlib.Path(url).expanduser().resolve())


def _git_env() -> dict[str, str]:
    # Never wait on a password prompt: a daemon has no one to type it.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def blob_sha(data: bytes) -> str:
    """git's object id of a blob with this content (for files read outside git)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
