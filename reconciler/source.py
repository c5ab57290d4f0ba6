"""The git source: reads spec files from one branch of a repository (ARCHITECTURE "source").

Rules of this file:
- Clone once into a bare repository under `cache_dir`, reused across restarts; each poll asks
  `git ls-remote` for the branch head and fetches only when that commit is not already here.
  A force-push is followed: the fetch refspec is forced (`+`).
- Specs are read from the commit's tree through GitPython's object reader (one persistent
  `git cat-file` per kind of read, closed by `close()`), never from a working tree. Those reads
  are bounded by the timeout too: a reader that outlives it is killed (GitError).
- Every `*.yaml` / `*.yml` under `path` is a spec file. A symlink, a submodule or a blob larger
  than `spec.MAX_SPEC_BYTES` is refused with a SpecError for that file (line 1, no field);
  its content is never read.
- A file's revision is the last commit on the branch's first-parent line that changed it
  (for a merged pull request, the merge commit: the moment the change reached the branch).
  Only the commits since the previous poll are walked when the old head is an ancestor.
- Other git commands (ls-remote, fetch, log, ...) run as a subprocess with an argument list
  (never a shell) and a timeout; credentials in a URL (`https://user:token@host/...`) never
  appear in an error message.
- The password of an http(s) URL never reaches git's command line (where `ps` shows it to
  anyone on the host): git is given the URL without its userinfo, and the credentials through
  a credential helper that prints them from environment variables set for that git process
  only; the helpers of the user's own git config are cleared for it, so none stores them.
- `poll` holds a lock: a webhook and the scheduler may both ask for a poll at once. The
  object reader has its own lock: older versions are read lazily, from any thread.
- Older versions of a file (for the catalog's fallback when the head version is invalid) are
  read from the same first-parent line, newest first, at most HISTORY_DEPTH back, and lazily:
  usually the first older version is the one wanted. A removal ends a file's history (a file
  removed and added again is a new file, as it is for a running daemon), and versions the
  source would refuse at the head (symlink, submodule, too large) are skipped unread.
- With a SignaturePolicy, only a commit signed by a pinned key (checked by git against a
  dedicated keyring, GNUPGHOME) is read: an untrusted head is not deployed; the newest trusted
  commit on its first-parent line is read instead (at most HISTORY_DEPTH back), and the
  snapshot says why in `unverified`. Only the head's signature vouches for its tree.
- Bump commits (docs/contract.md, "Image policies and bump branches") are made in the cache
  repository with plumbing only (hash-object, a temporary index, commit-tree): no branch of
  the cache and no working tree changes. They leave the host only by `push_commit`, with the
  same credentials as a fetch; a push never forces, so a branch that moved is never lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping

# GitPython looks for git when imported and raises if there is none; commands that never read
# git (status, pause) must still run on a host without it. A poll then fails with a GitError.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
import git

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
_USERNAME_ENV, _PASSWORD_ENV = "RECONCILER_GIT_USERNAME", "RECONCILER_GIT_PASSWORD"
# Asked by git for an http(s) remote's credentials: prints them from the environment of that
# one git process. The empty value first clears the helpers of the user's config, so that
# none is asked instead or told to store the password (`store` would write it to a file).
_CREDENTIAL_HELPER = (
    "-c",
    "credential.helper=",
    "-c",
    'credential.helper=!f() { if [ "$1" = get ]; then'
    f' printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_ENV}" "${_PASSWORD_ENV}"; fi; }}; f',
)
# What GitPython's reader raises when git answers unexpectedly (a missing object, a tree it
# refuses to parse) or its process is gone.
_READER_ERRORS = (ValueError, TypeError, OSError, git.GitError, git.exc.ODBError)
HISTORY_DEPTH = 50  # older versions looked at: bounds the cost of a file broken for long
# Who made a bump commit: the daemon, not a person (and never a signer: it holds no key).
_BUMP_IDENTITY = {
    "GIT_AUTHOR_NAME": "reconciler",
    "GIT_AUTHOR_EMAIL": "reconciler@localhost",
    "GIT_COMMITTER_NAME": "reconciler",
    "GIT_COMMITTER_EMAIL": "reconciler@localhost",
}


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
        absolute = _absolute_if_local(url)
        self.url = redact(absolute)  # for messages and the cache's identity: no credentials
        # What git is given: the URL without a password, which travels in the environment.
        self._remote, self._credentials = _split_credentials(absolute)
        self.branch = branch
        # As git reads a pathspec: "./specs", "specs/" and "specs//" all mean "specs".
        normal = posixpath.normpath(path.strip("/") or ".")
        if normal == ".." or normal.startswith("../"):
            raise ValueError(f"not a path inside the repository: {path!r}")
        self.path = "" if normal == "." else normal
        self.repo_dir = pathlib.Path(cache_dir) / "repo.git"
        self.timeout = timeout
        self.fetch_count = 0  # fetches done by this object: lets callers (and tests) see cost
        self._last: Snapshot | None = None
        self.signatures = signatures
        self._seen: str | None = None  # the branch head of the last poll (may be untrusted)
        self._ready = False
        self._lock = threading.Lock()
        self._repo: git.Repo | None = None  # GitPython's object reader, opened by the first poll
        self._reader_lock = threading.Lock()  # its cat-file processes serve one read at a time

    def close(self) -> None:
        """Stop the object reader's `git cat-file` processes (a later read starts them again)."""
        with self._reader_lock:
            if self._repo is not None:
                self._repo.close()
                self._repo = None

    def __enter__(self) -> GitSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    @property
    def head(self) -> str | None:
        """The commit the last poll read (None before the first): what the specs are."""
        last = self._last
        return last.head if last is not None else None

    # -- bump commits and branches ----------------------------------------------------------

    def read_file(self, commit: str, path: str) -> str:
        """The text of `path` at `commit` (UTF-8), from the cache repository."""
        self._ensure_repo()
        return self._git("cat-file", "blob", f"{commit}:{path}").decode("utf-8")

    def commit_bump(self, base: str, edits: Mapping[str, str], message: str) -> str:
        """A commit whose parent is `base` and whose tree is base's with each path of `edits`
        holding its new text; its sha. No ref, index or working tree of the cache changes."""
        with self._lock:
            self._ensure_repo()
            with tempfile.TemporaryDirectory(dir=self.repo_dir) as scratch:
                index = {"GIT_INDEX_FILE": str(pathlib.Path(scratch) / "index")}
                self._git("read-tree", base, env=index)
                for path, text in sorted(edits.items()):
                    mode = self._mode(base, path)
                    blob = self._git("hash-object", "-w", "--stdin", stdin=text.encode())
                    info = f"{mode},{blob.decode().strip()},{path}"
                    self._git("update-index", "--cacheinfo", info, env=index)
                tree = self._git("write-tree", env=index).decode().strip()
            made = self._git(
                "commit-tree", tree, "-p", base, env=_BUMP_IDENTITY, stdin=message.encode()
            )
        return made.decode().strip()

    def _mode(self, commit: str, path: str) -> str:
        """The file's mode at `commit` (an executable spec stays executable)."""
        out = self._git("--literal-pathspecs", "ls-tree", commit, "--", path).decode()
        mode = out.split(" ", 1)[0]
        if mode not in _REGULAR_MODES:
            raise GitError(f"{path} is not a regular file at {commit[:12]}")
        return mode

    def remote_branches(self, prefix: str) -> dict[str, str]:
        """The remote's branches whose names start with `prefix`: name -> sha."""
        out = self._git("ls-remote", "--heads", self._remote, in_repo=False, remote=True).decode()
        found = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            name = ref.removeprefix("refs/heads/")
            if name.startswith(prefix):
                found[name] = sha
        return found

    def push_commit(self, commit: str, branch: str) -> None:
        """Push `commit` to `branch` on the remote: created, or fast-forwarded, never forced
        (GitError when the branch moved elsewhere)."""
        if not branch or _BAD_BRANCH_RE.search(branch):
            raise ValueError(f"not a branch name: {branch!r}")
        self._ensure_repo()
        self._git("push", "--quiet", self._remote, f"{commit}:refs/heads/{branch}", remote=True)

    def delete_branches(self, branches: Iterable[str]) -> None:
        """Delete these branches on the remote (one push)."""
        refs = [f"refs/heads/{b}" for b in sorted(branches)]
        if refs:
            self._ensure_repo()
            self._git("push", "--quiet", "--delete", self._remote, *refs, remote=True)

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
        out = self._git("ls-remote", self._remote, self.ref, in_repo=False, remote=True).decode()
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == self.ref:
                return sha
        raise GitError(f"branch {self.branch!r} not found in {self.url}")

    def _fetch(self) -> str:
        self.fetch_count += 1
        self._git(
            "fetch",
            "--quiet",
            "--no-tags",
            "--update-head-ok",
            self._remote,
            f"+{self.ref}:{self.ref}",
            remote=True,
        )
        # The remote may have moved since ls-remote: read what was actually fetched.
        return self._git("rev-parse", "--verify", f"{self.ref}^{{commit}}").decode().strip()

    def _ensure_repo(self) -> None:
        if self._ready:
            return
        key = self.url
        if self.repo_dir.exists() and self._config_url() != key:
            # Another repository (or a broken one) lives here: the cache is ours to replace.
            self.close()
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
        with self._reading() as repo:
            try:
                found = bool(repo.odb.info(bytes.fromhex(sha)).type == b"commit")
            except ValueError:  # cat-file answered "missing" (a kill is told by _reading)
                found = False
        return found

    # -- tree -------------------------------------------------------------------------------

    def _read(self, head: str, fetched: bool) -> Snapshot:
        with self._reading() as repo:
            entries = _spec_entries(repo.commit(head).tree, self.path)
            refusals = {e.path: _refusal(e) for e in entries}
            accepted = [e for e in entries if refusals[e.path] is None]
            texts = self._blobs(repo, accepted)
        errors = [err for err in refusals.values() if err is not None]
        revisions = self._revisions(head, [e.path for e in accepted])
        files = tuple(SpecFile(e.path, texts[e.blob], e.blob, revisions[e.path]) for e in accepted)
        return Snapshot(head, files, tuple(errors), fetched, lambda p: self.older_versions(p, head))

    def _blobs(self, repo: git.Repo, entries: list[_Entry]) -> dict[str, bytes]:
        """Blob texts by sha: reused from the last snapshot, the rest read by the reader."""
        known = {f.blob: f.text for f in self._last.files} if self._last else {}
        for blob in sorted({e.blob for e in entries} - known.keys()):
            known[blob] = repo.odb.stream(bytes.fromhex(blob)).read()
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
                with self._reading() as repo:
                    text = repo.odb.stream(bytes.fromhex(version.blob)).read()
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
        """Blob sizes (headers only), so a huge old version is refused without being read."""
        sizes = {}
        with self._reading() as repo:
            for blob in sorted(blobs):
                info = repo.odb.info(bytes.fromhex(blob))
                if info.type == b"blob":
                    sizes[blob] = info.size
        return sizes

    def _is_ancestor(self, old: str, new: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", old, new)
        except GitError:
            return False
        return True

    # -- git ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[git.Repo]:
        """The object reader, for reads that finish within the timeout.

        A `cat-file` that does not answer in time is killed (a blocked read then ends) and
        the block raises GitError; the next read starts a fresh process.
        """
        crashpoints.hit("git.cat-file.before")
        with self._reader_lock:
            repo = self._reader()
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                _kill_readers(repo.git)

            timer = threading.Timer(self.timeout, expire)
            timer.daemon = True
            timer.start()
            try:
                yield repo
            except Exception as exc:
                repo.git.clear_cache()  # its answers may be out of step with its questions now
                if expired.is_set():
                    raise GitError(f"git cat-file timed out after {self.timeout:g}s") from exc
                if isinstance(exc, _READER_ERRORS):
                    raise GitError(redact(f"git cat-file failed: {exc}")) from exc
                raise
            finally:
                timer.cancel()
            if expired.is_set():
                repo.git.clear_cache()  # a read may have ended short, without an error
                raise GitError(f"git cat-file timed out after {self.timeout:g}s")
        crashpoints.hit("git.cat-file.after")

    def _reader(self) -> git.Repo:
        if self._repo is None:
            self._repo = git.Repo(self.repo_dir)
            self._repo.git.update_environment(**_git_env(), GIT_DIR=str(self.repo_dir))
        return self._repo

    def _git(
        self,
        *args: str,
        in_repo: bool = True,
        env: dict[str, str] | None = None,
        remote: bool = False,
        stdin: bytes | None = None,
    ) -> bytes:
        """Run git (in the cache repository unless told); GitError, redacted, on failure.

        `remote`: the command talks to the remote, so it is given the URL's credentials.
        `stdin`: what git reads (a blob, a commit message); nothing when None.
        """
        argv = ["git"]
        if in_repo:
            argv += ["--git-dir", str(self.repo_dir)]
        if remote and self._credentials:
            argv += _CREDENTIAL_HELPER
        argv += list(args)
        what = next((a for a in args if not a.startswith("-")), "git")  # ls-remote, fetch, ...
        crashpoints.hit(f"git.{what}.before")
        secrets = self._credentials if remote else {}
        try:
            result = subprocess.run(
                argv,
                # git never reads the daemon's own stdin: what it is given, or nothing
                stdin=subprocess.DEVNULL if stdin is None else None,
                input=stdin,
                capture_output=True,
                timeout=self.timeout,
                env={**os.environ, **_git_env(), **(env or {}), **secrets},
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


def _spec_entries(tree: git.Tree, path: str) -> list[_Entry]:
    """The `*.yaml`/`*.yml` entries under `path` in `tree` (all of it when `path` is "")."""
    try:
        top = tree / path if path else tree
    except KeyError:
        return []  # nothing at `path` in this commit
    entries = []
    for item in _leaves(top) if isinstance(top, git.Tree) else [top]:
        name = os.fspath(item.path)
        if not name.endswith(SPEC_SUFFIXES):
            continue
        if isinstance(item, git.Blob):
            mode = f"{item.mode:06o}"
            # A regular file's size says whether to read it; a symlink is refused unread.
            size = item.size if mode in _REGULAR_MODES else 0
            entries.append(_Entry(mode, "blob", item.hexsha, size, name))
        else:  # a submodule: a commit of another repository
            entries.append(_Entry(_MODE_SUBMODULE, "commit", item.hexsha, 0, name))
    return sorted(entries, key=lambda e: e.path)


def _leaves(tree: git.Tree) -> Iterator[git.Blob | git.Submodule]:
    """Every blob and submodule entry under `tree`, at any depth."""
    for item in tree:
        if isinstance(item, git.Tree):
            yield from _leaves(item)
        else:
            yield item


def _kill_readers(cmd: git.Git) -> None:
    """Kill the object reader's processes (from the timer's thread): blocked reads end."""
    for reader in (cmd.cat_file_all, cmd.cat_file_header):
        proc = getattr(reader, "proc", None)
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()


def _refusal(entry: _Entry) -> spec.SpecError | None:
    if entry.mode == _MODE_SYMLINK:
        return spec.SpecError(entry.path, 1, "", "a symlink is not read as a spec")
    if entry.mode == _MODE_SUBMODULE or entry.kind != "blob":
        return spec.SpecError(entry.path, 1, "", "not a regular file")
    if entry.size > spec.MAX_SPEC_BYTES:
        return spec.SpecError(entry.path, 1, "", f"file is larger than {spec.MAX_SPEC_BYTES} bytes")
    return None


def _absolute_if_local(url: str) -> str:
    """A local path is made absolute, since git runs with `--git-dir` in the cache."""
    if "://" in url or _SCP_LIKE_RE.match(url):
        return url
    return str(pathlib.Path(url).expanduser().resolve())


def _git_env() -> dict[str, str]:
    # Never wait on a password prompt: a daemon has no one to type it.
    return {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """An http(s) URL with a password: the URL without its userinfo, and the environment
    that hands the (percent-decoded) username and password to the credential helper.

    Other URLs are kept whole: an ssh user is not a secret, and git takes no password there.
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")  # a raw "@" may be part of the password
    if scheme.lower() not in ("http", "https") or not sep or not at or ":" not in userinfo:
        return url, {}
    username, _, password = (urllib.parse.unquote(part) for part in userinfo.partition(":"))
    if any(c in username + password for c in "\n\0"):
        raise ValueError(f"credentials with a line break cannot be given to git: {redact(url)}")
    return f"{scheme}{sep}{host}{slash}{path}", {_USERNAME_ENV: username, _PASSWORD_ENV: password}


def blob_sha(data: bytes) -> str:
    """git's object id of a blob with this content (for files read outside git)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
