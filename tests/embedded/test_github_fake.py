"""The fake GitHub answers as GitHub documents, and its merge really moves the base branch
of a git repository (issue 15)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.embedded.github import FakeGitHub

TOKEN = "fake-token"
PULLS = "/repos/acme/specs/pulls"
BRANCH = "reconciler/bump/api/ami-00000000000000002"


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")


def git(repo: pathlib.Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def specs_repo(root: pathlib.Path, bare: bool) -> pathlib.Path:
    """A repository with main holding one spec and a bump branch changing its image, and a
    commit on main made after the branch (so the merge is a true merge)."""
    work = root / "work"
    work.mkdir()
    git(work, "init", "--quiet", "--initial-branch=main")
    (work / "api.yaml").write_text("image: ami-00000000000000001\n")
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", "first")
    git(work, "switch", "--quiet", "-c", BRANCH)
    (work / "api.yaml").write_text("image: ami-00000000000000002\n")
    git(work, "commit", "--quiet", "-am", "bump")
    git(work, "switch", "--quiet", "main")
    (work / "README").write_text("specs\n")
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", "readme")
    if not bare:
        return work
    origin = root / "origin.git"
    git(root, "clone", "--quiet", "--bare", str(work), str(origin))
    return origin


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(repo="acme/specs", token=TOKEN) as fake:
        yield fake


def call(
    fake: FakeGitHub, method: str, path: str, payload: Any = None, token: str = TOKEN
) -> tuple[int, Any, str]:
    """Status, JSON body and Link header of one request."""
    request = urllib.request.Request(
        fake.api_url + path,
        data=None if payload is None else json.dumps(payload).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), response.headers.get("Link", "")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), ""


def open_pull(fake: FakeGitHub, head: str = BRANCH) -> int:
    status, body, _ = call(fake, "POST", PULLS, {"title": "Bump", "head": head, "base": "main"})
    assert status == 201, body
    return int(body["number"])


# --- answers as GitHub documents them ----------------------------------------------------


def test_a_wrong_or_missing_token_is_401_bad_credentials(github: FakeGitHub) -> None:
    assert call(github, "GET", PULLS, token="nope")[:2] == (401, {"message": "Bad credentials"})
    assert github.count("GET", "/pulls") == 1


@pytest.mark.parametrize("missing", ["title", "head", "base"])
def test_a_create_without_a_required_field_is_422(github: FakeGitHub, missing: str) -> None:
    payload = {"title": "Bump", "head": BRANCH, "base": "main"}
    del payload[missing]
    status, body, _ = call(github, "POST", PULLS, payload)
    assert status == 422
    assert body["errors"][0] == {
        "resource": "PullRequest",
        "code": "missing_field",
        "field": missing,
    }


def test_a_second_open_pull_request_of_the_same_head_and_base_is_422(github: FakeGitHub) -> None:
    open_pull(github)
    status, body, _ = call(github, "POST", PULLS, {"title": "x", "head": BRANCH, "base": "main"})
    assert status == 422
    assert body["errors"][0]["message"] == f"A pull request already exists for acme:{BRANCH}."


def test_a_closed_pull_request_does_not_block_a_new_one(github: FakeGitHub) -> None:
    github.close(open_pull(github))
    assert open_pull(github) == 2


def test_a_merged_pull_request_cannot_be_reopened(github: FakeGitHub) -> None:
    number = open_pull(github)
    github.merge(number)
    status, _, _ = call(github, "PATCH", f"{PULLS}/{number}", {"state": "open"})
    assert status == 422
    assert github.pull(number)["state"] == "closed"


def test_lists_page_with_link_headers(github: FakeGitHub) -> None:
    github.page_size = 2
    for n in range(5):
        open_pull(github, head=f"{BRANCH}{n}")
    status, first, link = call(github, "GET", f"{PULLS}?state=all")
    assert status == 200
    assert [p["number"] for p in first] == [5, 4]
    assert link == (
        f'<{github.api_url}{PULLS}?state=all&page=2>; rel="next", '
        f'<{github.api_url}{PULLS}?state=all&page=3>; rel="last"'
    )
    _, last, link = call(github, "GET", f"{PULLS}?state=all&page=3")
    assert ([p["number"] for p in last], link) == ([1], "")


def test_the_head_filter_needs_the_owner_and_the_exact_branch(github: FakeGitHub) -> None:
    open_pull(github)
    open_pull(github, head=f"{BRANCH}-other")
    _, found, _ = call(github, "GET", f"{PULLS}?state=all&head=acme:{BRANCH}")
    assert [p["number"] for p in found] == [1]
    _, found, _ = call(github, "GET", f"{PULLS}?state=all&head=someone:{BRANCH}")
    assert found == []


def test_an_unknown_path_is_404(github: FakeGitHub) -> None:
    assert call(github, "GET", "/repos/acme/other/pulls")[:2] == (404, {"message": "Not Found"})


# --- merges into a real repository --------------------------------------------------------


@pytest.mark.parametrize("bare", [False, True], ids=["checked-out", "bare"])
def test_merge_makes_a_merge_commit_on_the_base_branch(tmp_path: pathlib.Path, bare: bool) -> None:
    origin = specs_repo(tmp_path, bare)
    main, head = git(origin, "rev-parse", "main"), git(origin, "rev-parse", BRANCH)
    with FakeGitHub(repo="acme/specs", token=TOKEN, origin=origin) as github:
        number = open_pull(github)
        sha = github.merge(number)
        pull = github.pull(number)
    assert git(origin, "rev-parse", "main") == sha
    assert git(origin, "rev-parse", f"{sha}^1", f"{sha}^2").split() == [main, head]
    assert git(origin, "show", "main:api.yaml") == "image: ami-00000000000000002"
    assert (pull["state"], pull["merge_commit_sha"]) == ("closed", sha)
    assert pull["merged_at"] is not None
    if not bare:
        # The checked-out base moved with its working tree: nothing looks changed there.
        assert (origin / "api.yaml").read_text() == "image: ami-00000000000000002\n"
        assert git(origin, "status", "--porcelain") == ""


def test_the_merge_endpoint_merges_once(tmp_path: pathlib.Path) -> None:
    origin = specs_repo(tmp_path, bare=True)
    with FakeGitHub(repo="acme/specs", token=TOKEN, origin=origin) as github:
        number = open_pull(github)
        status, body, _ = call(github, "PUT", f"{PULLS}/{number}/merge", {})
        assert (status, body["merged"]) == (200, True)
        assert git(origin, "rev-parse", "main") == body["sha"]
        again, refused, _ = call(github, "PUT", f"{PULLS}/{number}/merge", {})
    assert (again, refused) == (405, {"message": "Pull Request is not mergeable"})


def test_with_an_origin_a_head_branch_must_exist_and_differ_from_base(
    tmp_path: pathlib.Path,
) -> None:
    origin = specs_repo(tmp_path, bare=True)
    with FakeGitHub(repo="acme/specs", token=TOKEN, origin=origin) as github:
        missing = {"title": "x", "head": "reconciler/bump/api/nothing", "base": "main"}
        status, body, _ = call(github, "POST", PULLS, missing)
        assert (status, body["errors"][0]["field"]) == (422, "head")
        same = {"title": "x", "head": "main", "base": "main"}
        status, body, _ = call(github, "POST", PULLS, same)
        assert (status, body["errors"][0]["message"]) == (422, "No commits between main and main")
