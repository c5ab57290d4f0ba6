"""GitSource against real local repositories: clone, poll, fetch, force-push, refusals."""

from __future__ import annotations

import base64
import functools
import http.server
import os
import pathlib
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from reconciler import source as source_module
from reconciler import spec
from reconciler.catalog import Catalog
from reconciler.source import GitError, GitSource, Snapshot, blob_sha, redact

SPEC = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: {name}
spec:
  stackName: Stack1
  region: us-east-1
  image: {image}
"""
AMI_A = "ami-37884c4d"
AMI_B = "ami-0123456789abcdef0"


def spec_text(name: str = "biglearn-api", image: str = AMI_A) -> str:
    return SPEC.format(name=name, image=image)


class Upstream:
    """A repository with a working tree on `main` that the tests commit to, as people would."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        root.mkdir()
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    def write(self, path: str, text: str | bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    def commit(self, message: str, **files: str | bytes) -> str:
        """Write `files` (keyword names with `__` for `/`) and commit everything."""
        for name, text in files.items():
            self.write(name.replace("__", "/"), text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    # Commits need an identity; the user's global config must not change what the tests see.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")


@pytest.fixture
def upstream(tmp_path: pathlib.Path) -> Upstream:
    repo = Upstream(tmp_path / "upstream")
    repo.commit("first spec", **{"deploy-specs__biglearn-api.yaml": spec_text()})
    return repo


_opened: list[GitSource] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    """Each test's sources are closed after it: no `git cat-file` outlives its test."""
    yield
    while _opened:
        _opened.pop().close()


def source_for(repo: Upstream, tmp_path: pathlib.Path, **kwargs: float) -> GitSource:
    source = GitSource(str(repo.root), "main", "deploy-specs", tmp_path / "cache", **kwargs)
    _opened.append(source)
    return source


def by_path(snapshot: Snapshot) -> dict[str, str]:
    return {f.path: f.text.decode() for f in snapshot.files}


def test_first_poll_clones_bare_and_reads_specs_from_the_head_tree(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """The first poll clones (one fetch) into a bare cache and reads the spec blobs."""
    upstream.commit("not a spec", **{"README.md": "hi", "other__x.yaml": "outside path"})
    source = source_for(upstream, tmp_path)
    snapshot = source.poll()
    assert snapshot.head == upstream.head()
    assert snapshot.fetched and source.fetch_count == 1
    assert by_path(snapshot) == {"deploy-specs/biglearn-api.yaml": spec_text()}
    assert snapshot.errors == ()
    assert (source.repo_dir / "HEAD").exists() and not (source.repo_dir / "deploy-specs").exists()


def test_poll_does_not_fetch_when_the_head_did_not_move(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """An unchanged head costs one ls-remote: no fetch, the same files."""
    source = source_for(upstream, tmp_path)
    first = source.poll()
    second = source.poll()
    assert source.fetch_count == 1
    assert not second.fetched
    assert second.files == first.files and second.head == first.head


def test_a_new_commit_is_fetched(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """A moved head is fetched and its content read."""
    source = source_for(upstream, tmp_path)
    source.poll()
    head = upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    snapshot = source.poll()
    assert snapshot.fetched and source.fetch_count == 2
    assert snapshot.head == head
    assert AMI_B in by_path(snapshot)["deploy-specs/biglearn-api.yaml"]


def test_nested_yml_and_yaml_files_are_read(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """Every *.yaml and *.yml under the path, at any depth, is a spec file; others are not."""
    upstream.commit(
        "more",
        **{
            "deploy-specs__team__b.yml": spec_text("b"),
            "deploy-specs__notes.txt": "no",
        },
    )
    snapshot = source_for(upstream, tmp_path).poll()
    assert sorted(by_path(snapshot)) == [
        "deploy-specs/biglearn-api.yaml",
        "deploy-specs/team/b.yml",
    ]


def test_force_push_that_rewrites_history_is_followed(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A branch rewritten to an unrelated commit is fetched (forced refspec) and read."""
    source = source_for(upstream, tmp_path)
    upstream.commit("bad", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    assert AMI_B in by_path(source.poll())["deploy-specs/biglearn-api.yaml"]
    upstream.git("reset", "--quiet", "--hard", "HEAD~1")
    rewritten = upstream.commit("rewritten", **{"deploy-specs__new.yaml": spec_text("new")})
    snapshot = source.poll()
    assert snapshot.head == rewritten
    assert AMI_A in by_path(snapshot)["deploy-specs/biglearn-api.yaml"]
    assert "deploy-specs/new.yaml" in by_path(snapshot)
    assert source._git("rev-parse", source.ref).decode().strip() == rewritten


def test_reset_to_a_commit_already_held_needs_no_fetch(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Going back to a commit the cache already has is read without fetching."""
    first = upstream.head()
    source = source_for(upstream, tmp_path)
    upstream.commit("second", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    source.poll()
    upstream.git("reset", "--quiet", "--hard", first)
    snapshot = source.poll()
    assert snapshot.head == first and not snapshot.fetched and source.fetch_count == 1
    assert AMI_A in by_path(snapshot)["deploy-specs/biglearn-api.yaml"]


def test_cache_is_reused_across_restarts(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """A new GitSource on the same cache and URL finds the commit there and does not fetch."""
    source_for(upstream, tmp_path).poll()
    restarted = source_for(upstream, tmp_path)
    snapshot = restarted.poll()
    assert restarted.fetch_count == 0 and not snapshot.fetched
    assert by_path(snapshot) == {"deploy-specs/biglearn-api.yaml": spec_text()}


def test_cache_of_another_url_is_replaced(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """A cache made for another repository is not trusted: it is recreated and fetched."""
    source_for(upstream, tmp_path).poll()
    other = Upstream(tmp_path / "other")
    other.commit("other", **{"deploy-specs__o.yaml": spec_text("o")})
    source = source_for(other, tmp_path)
    snapshot = source.poll()
    assert source.fetch_count == 1
    assert list(by_path(snapshot)) == ["deploy-specs/o.yaml"]


def test_revision_is_the_commit_that_changed_each_file_not_head(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Each file's revision is its last changing commit, on the first poll and incrementally."""
    first = upstream.head()
    second = upstream.commit("b", **{"deploy-specs__b.yaml": spec_text("b")})
    upstream.commit("unrelated", **{"README.md": "x"})
    source = source_for(upstream, tmp_path)
    revisions = {f.path: f.revision for f in source.poll().files}
    assert revisions == {"deploy-specs/biglearn-api.yaml": first, "deploy-specs/b.yaml": second}

    third = upstream.commit("bump b", **{"deploy-specs__b.yaml": spec_text("b", AMI_B)})
    upstream.commit("unrelated again", **{"README.md": "y"})
    revisions = {f.path: f.revision for f in source.poll().files}
    assert revisions == {"deploy-specs/biglearn-api.yaml": first, "deploy-specs/b.yaml": third}


def test_revision_follows_a_change_and_revert_between_polls(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Same blob as last poll but changed and reverted since: the revert is the revision."""
    source = source_for(upstream, tmp_path)
    source.poll()
    upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    revert = upstream.commit("revert", **{"deploy-specs__biglearn-api.yaml": spec_text()})
    (file,) = source.poll().files
    assert file.revision == revert


def test_revision_of_a_merged_pull_request_is_the_merge_commit(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A change merged with --no-ff gets the merge commit: when it reached the branch."""
    upstream.git("checkout", "--quiet", "-b", "pr")
    upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    upstream.git("checkout", "--quiet", "main")
    upstream.commit("unrelated", **{"README.md": "x"})
    upstream.git("merge", "--quiet", "--no-ff", "-m", "merge pr", "pr")
    (file,) = source_for(upstream, tmp_path).poll().files
    assert file.revision == upstream.head()


def test_symlink_is_refused_and_not_read(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """A symlink named *.yaml is an error for that file (line 1), never followed."""
    (upstream.root / "deploy-specs" / "link.yaml").symlink_to("/etc/passwd")
    upstream.commit("link")
    snapshot = source_for(upstream, tmp_path).poll()
    assert list(by_path(snapshot)) == ["deploy-specs/biglearn-api.yaml"]
    (error,) = snapshot.errors
    assert (error.file, error.line, error.field) == ("deploy-specs/link.yaml", 1, "")
    assert "symlink" in error.message


def test_a_submodule_named_like_a_spec_is_refused(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A gitlink (another repository's commit) is not a file: an error for that path."""
    upstream.git(
        "update-index", "--add", "--cacheinfo", f"160000,{upstream.head()},deploy-specs/sub.yaml"
    )
    upstream.git("commit", "--quiet", "-m", "submodule")
    snapshot = source_for(upstream, tmp_path).poll()
    assert list(by_path(snapshot)) == [SPEC_PATH]
    (error,) = snapshot.errors
    assert (error.file, error.message) == ("deploy-specs/sub.yaml", "not a regular file")


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (".", ["deploy-specs/biglearn-api.yaml", "other/x.yml"]),  # the whole tree
        ("other", ["other/x.yml"]),
        ("./other//", ["other/x.yml"]),  # as git reads a pathspec
        ("deploy-specs/biglearn-api.yaml", ["deploy-specs/biglearn-api.yaml"]),  # one file
        ("nowhere", []),
    ],
)
def test_the_path_chooses_the_part_of_the_tree_read(
    upstream: Upstream, tmp_path: pathlib.Path, path: str, found: list[str]
) -> None:
    upstream.commit("other", **{"other__x.yml": spec_text("x"), "README.md": "hi"})
    source = GitSource(str(upstream.root), "main", path, tmp_path / "cache")
    _opened.append(source)
    assert sorted(by_path(source.poll())) == found


def test_file_over_the_size_limit_is_refused(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """A blob over spec.MAX_SPEC_BYTES is an error for that file, its content not read."""
    huge = "# " + "x" * spec.MAX_SPEC_BYTES + "\n"
    upstream.commit("huge", **{"deploy-specs__huge.yaml": huge})
    snapshot = source_for(upstream, tmp_path).poll()
    assert "deploy-specs/huge.yaml" not in by_path(snapshot)
    (error,) = snapshot.errors
    assert (error.file, error.line) == ("deploy-specs/huge.yaml", 1)
    assert str(spec.MAX_SPEC_BYTES) in error.message


def test_unreachable_remote_raises_and_a_later_poll_recovers(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A remote that cannot be read raises GitError; once back, polling works again."""
    source = source_for(upstream, tmp_path)
    source.poll()
    moved = upstream.root.with_name("moved")
    upstream.root.rename(moved)
    with pytest.raises(GitError):
        source.poll()
    moved.rename(upstream.root)
    head = upstream.commit("after outage", **{"deploy-specs__b.yaml": spec_text("b")})
    snapshot = source.poll()
    assert snapshot.head == head and len(snapshot.files) == 2


def test_first_poll_of_an_unreachable_remote_raises(tmp_path: pathlib.Path) -> None:
    """No repository at all: GitError, and nothing half-made blocks a later success."""
    source = GitSource(str(tmp_path / "nowhere"), "main", "deploy-specs", tmp_path / "cache")
    with pytest.raises(GitError):
        source.poll()


def test_missing_branch_raises(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """A branch the remote does not have is a GitError naming the branch."""
    source = GitSource(str(upstream.root), "release", "deploy-specs", tmp_path / "cache")
    with pytest.raises(GitError, match="release"):
        source.poll()


def test_errors_never_show_credentials() -> None:
    """user:password@ in a URL is redacted from messages."""
    source = GitSource(
        "https://bob:s3cret@127.0.0.1:1/repo.git", "main", "specs", pathlib.Path("/nonexistent")
    )
    with pytest.raises(GitError) as caught:
        source.poll()
    assert "s3cret" not in str(caught.value)
    assert redact("see https://bob:tok@host/r and ssh://git@h/x") == (
        "see https://***@host/r and ssh://***@h/x"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://bob:p@ss@host/r.git", "https://***@host/r.git"),  # raw "@" in a password
        ("'https://tok@host/r' failed", "'https://***@host/r' failed"),  # quoted, as git does
        ("https://host/r?who=a@b", "https://host/r?who=a@b"),  # an "@" after the host stays
    ],
)
def test_redact_hides_the_whole_userinfo(text: str, shown: str) -> None:
    """Nothing of a password survives redaction, and the rest of the URL stays readable."""
    assert redact(text) == shown


def test_missing_branch_message_and_cache_config_hide_credentials(
    upstream: Upstream, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "branch not found" error names the redacted URL, and the URL kept in the cache's
    config (which identifies it across restarts) has no credentials either."""
    url = "https://bob:s3cret@git.example.invalid/specs.git"
    source = GitSource(url, "main", "deploy-specs", tmp_path / "cache")
    git = source._git
    monkeypatch.setattr(
        source, "_git", lambda *a, **k: b"" if a[0] == "ls-remote" else git(*a, **k)
    )
    with pytest.raises(GitError) as caught:
        source.poll()
    assert "s3cret" not in str(caught.value) and "***@git.example.invalid" in str(caught.value)
    source._ensure_repo()
    config = (source.repo_dir / "config").read_text()
    assert "s3cret" not in config and "***@git.example.invalid" in config


@pytest.mark.parametrize("branch", ["", "-x", "a..b", "a b", "a:b", "refs/"])
def test_bad_branch_names_are_refused(branch: str) -> None:
    """Branch names that could be options or refspec syntax are refused up front."""
    with pytest.raises(ValueError, match="branch"):
        GitSource("/r", branch, "specs", pathlib.Path("/c"))


@pytest.mark.parametrize("path", ["..", "../specs", "specs/../.."])
def test_a_path_outside_the_repository_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="inside the repository"):
        GitSource("/r", "main", path, pathlib.Path("/c"))


def test_url_that_looks_like_an_option_is_refused() -> None:
    """A URL starting with '-' would be read by git as an option."""
    with pytest.raises(ValueError, match="URL"):
        GitSource("--upload-pack=evil", "main", "specs", pathlib.Path("/c"))
    with pytest.raises(ValueError, match="URL") as caught:
        GitSource("-https://bob:s3cret@host/r", "main", "specs", pathlib.Path("/c"))
    assert "s3cret" not in str(caught.value)


def test_blob_sha_matches_git(upstream: Upstream) -> None:
    """blob_sha computes git's object id, so local files compare with blobs."""
    assert blob_sha(spec_text().encode()) == upstream.git(
        "rev-parse", "HEAD:deploy-specs/biglearn-api.yaml"
    )


# -- older versions (the catalog's fallback when the head version is invalid) ---------------

SPEC_PATH = "deploy-specs/biglearn-api.yaml"


def older(source: GitSource, path: str = SPEC_PATH) -> list[tuple[str, str]]:
    """(text, revision) of each older version at the current head."""
    head = source.poll().head
    return [(f.text.decode(), f.revision) for f in source.older_versions(path, head)]


def test_older_versions_are_newest_first_with_the_commit_that_made_each(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Versions before the head one, newest first; a version merged from a pull request has
    the merge commit as its revision (first-parent line, as for the head version)."""
    first = upstream.head()
    upstream.git("checkout", "--quiet", "-b", "pr")
    upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    upstream.git("checkout", "--quiet", "main")
    upstream.git("merge", "--quiet", "--no-ff", "-m", "merge pr", "pr")
    merge = upstream.head()
    upstream.commit("unrelated", **{"README.md": "x"})
    upstream.commit("typo", **{"deploy-specs__biglearn-api.yaml": "{"})
    assert older(source_for(upstream, tmp_path)) == [
        (spec_text(image=AMI_B), merge),
        (spec_text(), first),
    ]


def test_older_versions_skip_refused_ones_and_stop_at_a_removal(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A symlink or oversized version is skipped unread; history before a removal belongs to
    another file (a running daemon dropped it), so it is not offered."""
    upstream.git("rm", "--quiet", SPEC_PATH)
    upstream.commit("remove")
    readded = upstream.commit("re-add", **{"deploy-specs__biglearn-api.yaml": spec_text("v")})
    (upstream.root / SPEC_PATH).unlink()
    (upstream.root / SPEC_PATH).symlink_to("/etc/passwd")
    upstream.commit("symlink")
    (upstream.root / SPEC_PATH).unlink()
    huge = "# " + "x" * spec.MAX_SPEC_BYTES + "\n"
    upstream.commit("huge", **{"deploy-specs__biglearn-api.yaml": huge})
    upstream.commit("typo", **{"deploy-specs__biglearn-api.yaml": "{"})
    assert older(source_for(upstream, tmp_path)) == [(spec_text("v"), readded)]


def test_older_versions_are_bounded(
    upstream: Upstream, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most HISTORY_DEPTH versions behind the head one are looked at."""
    monkeypatch.setattr(source_module, "HISTORY_DEPTH", 2)
    for n in range(4):
        upstream.commit(f"v{n}", **{"deploy-specs__biglearn-api.yaml": spec_text(f"v{n}")})
    assert [text for text, _ in older(source_for(upstream, tmp_path))] == [
        spec_text("v2"),
        spec_text("v1"),
    ]


def test_a_file_absent_at_head_has_no_older_versions(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A removed file is not managed: nothing to fall back on."""
    upstream.git("rm", "--quiet", SPEC_PATH)
    upstream.commit("remove")
    assert older(source_for(upstream, tmp_path)) == []


# -- source and catalog together -------------------------------------------------------------


def test_file_removed_from_git_stops_being_managed(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Deleting a spec file removes its stack from the catalog."""
    upstream.commit("b", **{"deploy-specs__b.yaml": spec_text("b")})
    source, catalog = source_for(upstream, tmp_path), Catalog()
    catalog.update(source.poll())
    assert sorted(catalog.specs) == ["b", "biglearn-api"]
    upstream.git("rm", "--quiet", "deploy-specs/b.yaml")
    upstream.commit("remove b")
    catalog.update(source.poll())
    assert sorted(catalog.specs) == ["biglearn-api"]


def test_invalid_newer_version_keeps_the_last_valid_one(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """A broken commit is reported with file and line; the last valid version stays, stale."""
    source, catalog = source_for(upstream, tmp_path), Catalog()
    good = upstream.head()
    catalog.update(source.poll())
    broken = spec_text(image=AMI_B).replace("region: us-east-1", "regoin: us-east-1")
    upstream.commit("typo", **{"deploy-specs__biglearn-api.yaml": broken})
    catalog.update(source.poll())
    loaded = catalog.specs["biglearn-api"]
    assert loaded.stale and loaded.revision == good
    assert loaded.deployment.spec.image == AMI_A
    located = {(e.file, e.line, e.field) for e in catalog.errors}
    assert ("deploy-specs/biglearn-api.yaml", 7, "spec.regoin") in located


def test_duplicate_names_in_git_manage_neither_new_file(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Two new files with one name: both reported, neither managed; the old one is unaffected."""
    upstream.commit(
        "dups", **{"deploy-specs__x1.yaml": spec_text("x"), "deploy-specs__x2.yaml": spec_text("x")}
    )
    catalog = Catalog()
    catalog.update(source_for(upstream, tmp_path).poll())
    assert sorted(catalog.specs) == ["biglearn-api"]
    assert {e.file for e in catalog.errors} == {"deploy-specs/x1.yaml", "deploy-specs/x2.yaml"}


def test_git_that_outlives_the_timeout_raises(upstream: Upstream, tmp_path: pathlib.Path) -> None:
    """Every git call is bounded: a timeout is a GitError, not a hung poll."""
    source = source_for(upstream, tmp_path, timeout=1e-6)
    with pytest.raises(GitError, match="timed out"):
        source.poll()


def test_a_fresh_catalog_reconciles_the_last_valid_commit_of_a_broken_file(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """CONTRACT 1 across restarts: a new Catalog (each `apply`, each daemon start) whose head
    version is invalid manages the last valid version from git, stale, and reports the head."""
    good = upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    broken = spec_text(image=AMI_A).replace("region: us-east-1", "regoin: us-east-1")
    upstream.commit("typo", **{"deploy-specs__biglearn-api.yaml": broken})
    catalog = Catalog()
    catalog.update(source_for(upstream, tmp_path).poll())
    loaded = catalog.specs["biglearn-api"]
    assert loaded.stale and loaded.revision == good
    assert loaded.deployment.spec.image == AMI_B
    located = {(e.file, e.line, e.field) for e in catalog.errors}
    assert ("deploy-specs/biglearn-api.yaml", 7, "spec.regoin") in located


# -- the object reader (GitPython's persistent `git cat-file`) -------------------------------


def cat_files() -> set[int]:
    """Pids of this process's `git cat-file` children."""
    pids = set()
    for proc in pathlib.Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"cat-file" in argv:
            pids.add(int(proc.name))
    return pids


def test_reads_keep_one_cat_file_process_and_close_stops_it(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """Polls and older versions reuse the reader's processes; close() ends them."""
    before = cat_files()
    source = source_for(upstream, tmp_path)
    source.poll()
    upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    list(source.older_versions(SPEC_PATH, source.poll().head))
    readers = cat_files() - before
    assert 1 <= len(readers) <= 2  # `--batch` and `--batch-check`, whatever the reads
    source.close()
    assert cat_files() - before == set()


def test_a_hung_cat_file_is_killed_at_the_timeout_and_a_later_poll_recovers(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """An object reader that stops answering is a GitError after the timeout, not a hung
    poll; the next poll starts a fresh reader and reads the specs."""
    source = source_for(upstream, tmp_path, timeout=2.0)
    source.poll()
    assert source._repo is not None
    cmd = source._repo.git
    cmd.clear_cache()
    for attr in ("cat_file_all", "cat_file_header"):  # readers that never answer
        hung = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        setattr(cmd, attr, type(cmd).AutoInterrupt(hung, ["sleep"]))
    upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    started = time.monotonic()
    with pytest.raises(GitError, match="cat-file timed out after 2s"):
        source.poll()
    assert time.monotonic() - started < 10
    assert AMI_B in by_path(source.poll())[SPEC_PATH]


def test_reads_from_several_threads_at_once_agree(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """The catalog may read older versions while a poll reads the tree: the reader is
    shared safely (one read at a time), and every thread sees the same versions."""
    for n in range(5):
        upstream.commit(f"v{n}", **{"deploy-specs__biglearn-api.yaml": spec_text(f"v{n}")})
    source = source_for(upstream, tmp_path)
    head = source.poll().head
    expected = [f.text for f in source.older_versions(SPEC_PATH, head)]
    results: list[list[bytes]] = []

    def read() -> None:
        for _ in range(5):
            source.poll()
            results.append([f.text for f in source.older_versions(SPEC_PATH, head)])

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 20


# -- credentials (never on git's command line) -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "given", "username", "password"),
    [
        ("https://bob:s3cret@host/r.git", "https://host/r.git", "bob", "s3cret"),
        ("https://bob:p@ss@host:8443/r", "https://host:8443/r", "bob", "p@ss"),  # raw "@"
        ("HTTP://b%40x:p%2Fw%3A@host/r", "HTTP://host/r", "b@x", "p/w:"),  # percent-encoded
        ("https://:tok@host/r", "https://host/r", "", "tok"),
    ],
)
def test_an_http_password_is_taken_out_of_the_url(
    url: str, given: str, username: str, password: str
) -> None:
    """git is given the URL without userinfo; the credentials go to the helper's env."""
    remote, env = source_module._split_credentials(url)
    assert (remote, env) == (
        given,
        {"RECONCILER_GIT_USERNAME": username, "RECONCILER_GIT_PASSWORD": password},
    )


@pytest.mark.parametrize(
    "url",
    ["ssh://git@host/r.git", "git@host:r.git", "https://bob@host/r", "https://host/r?a=b@c", "/r"],
)
def test_urls_without_a_password_are_given_to_git_whole(url: str) -> None:
    """No password, nothing to hide: an ssh user or a bare username stays in the URL."""
    assert source_module._split_credentials(url) == (url, {})


def test_credentials_with_a_line_break_are_refused() -> None:
    """They would add lines to what the helper tells git."""
    with pytest.raises(ValueError, match="line break") as caught:
        GitSource("https://bob:a%0Ab@host/r", "main", "specs", pathlib.Path("/c"))
    assert "a%0Ab" not in str(caught.value)


def test_the_credential_helper_answers_with_the_username_and_password() -> None:
    """What git's credential machinery gets from the helper, asked as git asks it."""
    env = {
        **os.environ,
        "RECONCILER_GIT_USERNAME": "bob",
        "RECONCILER_GIT_PASSWORD": "p@ss word",
        "GIT_TERMINAL_PROMPT": "0",
    }
    result = subprocess.run(
        ["git", *source_module._CREDENTIAL_HELPER, "credential", "fill"],
        input="protocol=https\nhost=git.example.invalid\n\n",
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    answer = dict(line.split("=", 1) for line in result.stdout.splitlines() if line)
    assert (answer["username"], answer["password"]) == ("bob", "p@ss word")


class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    """A repository over git's "dumb" HTTP protocol, behind HTTP basic authentication."""

    token = base64.b64encode(b"bob:s3cret").decode()

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Basic {self.token}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="specs"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(upstream: Upstream) -> Iterator[str]:
    """The upstream's repository at http://127.0.0.1:<port>/, password required."""
    handler = functools.partial(_AuthHandler, directory=str(upstream.root / ".git"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_password_protected_http_repository_is_read_and_no_git_argv_shows_the_password(
    upstream: Upstream, served: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clone and fetch over HTTP with a password work, and the command line of every git
    process (ls-remote, fetch, log, the object reader...) holds no password, as `ps` shows
    it to anyone on the host; a wrong password is refused (so the password is what opened
    the door), without the password in the error."""
    bindir, log = tmp_path / "bin", tmp_path / "argv.log"
    bindir.mkdir()
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout
    (bindir / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real.strip()} "$@"\n')
    (bindir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    upstream.git("update-server-info")

    source = GitSource(f"http://bob:s3cret@{served}", "main", "deploy-specs", tmp_path / "c")
    _opened.append(source)
    assert by_path(source.poll()) == {SPEC_PATH: spec_text()}
    upstream.commit("bump", **{"deploy-specs__biglearn-api.yaml": spec_text(image=AMI_B)})
    upstream.git("update-server-info")
    snapshot = source.poll()
    assert snapshot.fetched and AMI_B in by_path(snapshot)[SPEC_PATH]
    assert [f.text.decode() for f in source.older_versions(SPEC_PATH, snapshot.head)] == [
        spec_text()
    ]

    argvs = log.read_text().splitlines()
    assert any(" ls-remote " in a for a in argvs) and any(" fetch " in a for a in argvs)
    assert any(a.startswith("cat-file --batch") for a in argvs)  # the object reader
    assert [a for a in argvs if "s3cret" in a] == []

    wrong = GitSource(f"http://bob:wrong@{served}", "main", "deploy-specs", tmp_path / "w")
    _opened.append(wrong)
    with pytest.raises(GitError) as caught:
        wrong.poll()
    assert "wrong" not in str(caught.value)


# --- bump commits and branches --------------------------------------------------------------


def test_a_bump_commit_is_made_without_moving_any_ref_and_pushed_to_its_own_branch(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    """commit_bump builds the commit from plumbing (no ref, index or working tree of the
    cache moves); push_commit creates the branch, remote_branches finds it, and
    delete_branches removes it; the followed branch never moves."""
    source = source_for(upstream, tmp_path)
    head = source.poll().head
    assert source.head == head
    refs = subprocess.run(
        ["git", "--git-dir", str(source.repo_dir), "for-each-ref"], capture_output=True, check=True
    ).stdout
    new = spec_text(image=AMI_B)

    sha = source.commit_bump(head, {SPEC_PATH: new}, "Bump biglearn-api\n")

    after = subprocess.run(
        ["git", "--git-dir", str(source.repo_dir), "for-each-ref"], capture_output=True, check=True
    ).stdout
    assert after == refs
    branch = f"reconciler/bump/biglearn-api/{AMI_B}"
    source.push_commit(sha, branch)
    assert source.remote_branches("reconciler/bump/") == {branch: sha}
    assert upstream.git("log", "-1", "--format=%an <%ae>|%P|%s", branch) == (
        f"reconciler <reconciler@localhost>|{head}|Bump biglearn-api"
    )
    assert upstream.git("diff", "--name-only", head, branch) == SPEC_PATH
    assert upstream.git("show", f"{branch}:{SPEC_PATH}") == new.rstrip("\n")
    assert upstream.head() == head
    source.delete_branches([branch])
    assert source.remote_branches("reconciler/bump/") == {}


def test_a_push_never_forces_a_branch_that_moved(
    upstream: Upstream, tmp_path: pathlib.Path
) -> None:
    source = source_for(upstream, tmp_path)
    head = source.poll().head
    first = source.commit_bump(head, {SPEC_PATH: spec_text(image=AMI_B)}, "one\n")
    source.push_commit(first, "reconciler/bump/x/ami-1")
    other = source.commit_bump(head, {SPEC_PATH: spec_text(name="other")}, "two\n")
    with pytest.raises(GitError):
        source.push_commit(other, "reconciler/bump/x/ami-1")  # not a fast-forward of `first`
    assert source.remote_branches("reconciler/bump/") == {"reconciler/bump/x/ami-1": first}
