"""GitHubForge against a fake GitHub: one pull request per bump, idempotent across restarts,
older images superseded, a person's "no" respected, every failure one line without the token
(issue 15)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import threading
from collections.abc import Iterator

import hypothesis
import pytest
from hypothesis import strategies as st

from reconciler import bump, forge, settings
from reconciler.embedded import wait_for
from reconciler.embedded.github import FakeGitHub

TOKEN = "ghp_s3cretTOKENvalue"
CREATED = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def make_bump(image: str = "ami-0123456789abcdef0", key: str = "biglearn-api") -> bump.Bump:
    return bump.Bump(
        key=key,
        image=bump.Image(image, f"biglearn-{image[-4:]}", CREATED),
        specs=("biglearn-api",),
        base="main",
        commit="c" * 40,
    )


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(repo="acme/specs", token=TOKEN) as fake:
        yield fake


def client(fake: FakeGitHub, timeout: float = 5.0, token: str = TOKEN) -> forge.GitHubForge:
    return forge.GitHubForge(fake.api_url, "acme/specs", token, timeout=timeout)


def open_pulls(fake: FakeGitHub) -> list[int]:
    return [p["number"] for p in fake.pulls() if p["state"] == "open"]


# --- opening, idempotency, updating ------------------------------------------------------


def test_a_bump_opens_one_pull_request_of_its_branch_with_the_plan_as_body(
    github: FakeGitHub,
) -> None:
    b = make_bump()
    proposal = client(github).propose(b, "the plan")
    assert proposal == bump.Proposal(
        "opened", number=1, url="https://github.example/acme/specs/pull/1"
    )
    (pull,) = github.pulls()
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (b.branch, "main")
    assert (pull["title"], pull["body"]) == (b.title, "the plan")


def test_proposing_again_and_after_a_restart_opens_nothing(github: FakeGitHub) -> None:
    b = make_bump()
    client(github).propose(b, "the plan")
    again = client(github).propose(b, "the plan")  # a new instance: a restarted daemon
    assert again.result == "unchanged"
    assert again.number == 1
    assert github.count("POST") == 1
    assert github.count("PATCH") == 0


def test_a_changed_plan_updates_the_body_of_the_same_pull_request(github: FakeGitHub) -> None:
    b = make_bump()
    client(github).propose(b, "old plan")
    proposal = client(github).propose(b, "new plan")
    assert (proposal.result, proposal.number) == ("updated", 1)
    assert github.pull(1)["body"] == "new plan"
    assert len(github.pulls()) == 1


def test_a_create_whose_answer_was_lost_is_found_not_made_twice(github: FakeGitHub) -> None:
    """A crash or a timeout after GitHub made the pull request: the next try finds it."""
    b = make_bump()
    with github.hold("POST"):
        lost = client(github, timeout=0.3).propose(b, "the plan")
    assert lost.result == "failed"
    wait_for(lambda: github.pulls() or None, 5, "the held create")
    proposal = client(github).propose(b, "the plan")
    assert (proposal.result, proposal.number) == ("unchanged", 1)
    assert github.count("POST") == 1


def test_two_daemons_racing_open_one_pull_request(github: FakeGitHub) -> None:
    b = make_bump()
    results: list[bump.Proposal] = []
    with github.hold("POST"):
        racers = [
            threading.Thread(target=lambda: results.append(client(github).propose(b, "plan")))
            for _ in range(2)
        ]
        for racer in racers:
            racer.start()
        wait_for(lambda: github.waiting == 2 or None, 5, "both creates")
    for racer in racers:
        racer.join()
    assert sorted(r.result for r in results) == ["opened", "unchanged"]
    assert {r.number for r in results} == {1}
    assert len(github.pulls()) == 1


def test_the_repository_name_matches_whatever_its_case(github: FakeGitHub) -> None:
    b = make_bump()
    client(github).propose(b, "plan")
    shouting = forge.GitHubForge(github.api_url, "ACME/Specs", TOKEN)
    assert shouting.propose(b, "plan").result == "unchanged"


def test_a_forks_branch_of_the_same_name_is_not_ours(github: FakeGitHub) -> None:
    b = make_bump()
    client(github).propose(b, "plan")
    fork = f'{{"title": "x", "head": "someone:{make_bump("ami-0").branch}", "base": "main"}}'
    github.serve(
        "POST", "/repos/acme/specs/pulls", {"Authorization": f"Bearer {TOKEN}"}, fork.encode()
    )
    proposal = client(github).propose(make_bump("ami-00000000000000002"), "plan")
    assert proposal.superseded == (1,)
    assert github.pull(2)["state"] == "open"


# --- superseding -----------------------------------------------------------------------


def test_a_newer_image_supersedes_the_open_pull_request_of_the_older_one(
    github: FakeGitHub,
) -> None:
    client(github).propose(make_bump("ami-00000000000000001"), "plan one")
    proposal = client(github).propose(make_bump("ami-00000000000000002"), "plan two")
    assert (proposal.result, proposal.number, proposal.superseded) == ("opened", 2, (1,))
    older = github.pull(1)
    assert older["state"] == "closed"
    assert older["merged_at"] is None
    assert older["body"] == "plan one\n\nSuperseded by #2."
    assert open_pulls(github) == [2]


def test_other_policies_and_other_bases_are_not_superseded(github: FakeGitHub) -> None:
    client(github).propose(make_bump("ami-00000000000000001", key="other"), "plan")
    elsewhere = dataclasses.replace(make_bump("ami-00000000000000001"), base="release")
    client(github).propose(elsewhere, "plan")
    proposal = client(github).propose(make_bump("ami-00000000000000002"), "plan")
    assert proposal.superseded == ()
    assert open_pulls(github) == [1, 2, 3]


def test_a_key_that_prefixes_another_does_not_supersede_it(github: FakeGitHub) -> None:
    client(github).propose(make_bump("ami-00000000000000001", key="api-canary"), "plan")
    proposal = client(github).propose(make_bump("ami-00000000000000002", key="api"), "plan")
    assert proposal.superseded == ()


# --- a person's decisions ---------------------------------------------------------------


def test_a_pull_request_a_person_closed_is_never_reopened_nor_opened_again(
    github: FakeGitHub,
) -> None:
    b = make_bump()
    client(github).propose(b, "the plan")
    github.close(1)
    proposal = client(github).propose(b, "a newer plan")
    assert (proposal.result, proposal.number) == ("declined", 1)
    assert github.pull(1)["state"] == "closed"
    assert github.pull(1)["body"] == "the plan"
    assert len(github.pulls()) == 1


def test_a_merged_bump_is_unchanged_and_still_closes_older_open_ones(github: FakeGitHub) -> None:
    client(github).propose(make_bump("ami-00000000000000001"), "plan")
    github.serve(  # an open pull request of an older image someone opened by hand
        "POST",
        "/repos/acme/specs/pulls",
        {"Authorization": f"Bearer {TOKEN}"},
        b'{"title": "x", "head": "reconciler/bump/biglearn-api/ami-0", "base": "main"}',
    )
    github.merge(1)
    proposal = client(github).propose(make_bump("ami-00000000000000001"), "plan")
    assert (proposal.result, proposal.number, proposal.superseded) == ("unchanged", 1, (2,))
    assert open_pulls(github) == []


# --- paging ---------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 2])
def test_lists_are_read_through_every_page(page_size: int) -> None:
    with FakeGitHub(repo="acme/specs", token=TOKEN, page_size=page_size) as github:
        for n in range(1, 5):
            client(github).propose(make_bump(f"ami-0000000000000000{n}", key=f"k{n}"), "p")
        client(github).propose(make_bump("ami-00000000000000009", key="k1"), "p")
        # k1's first pull request was on the last page of the open list (newest first).
        assert github.pull(1)["state"] == "closed"
        assert open_pulls(github) == [2, 3, 4, 5]
        later_pages = [c for c in github.calls if c.method == "GET" and "page" in c.query]
        assert later_pages


# --- failures -------------------------------------------------------------------------


def test_a_wrong_token_fails_in_one_line_without_the_token(github: FakeGitHub) -> None:
    wrong = "ghp_wrongTOKEN"
    proposal = client(github, token=wrong).propose(make_bump(), "plan")
    assert proposal.result == "failed"
    assert proposal.error == "GET /repos/acme/specs/pulls: HTTP 401 Bad credentials"
    assert github.pulls() == []


@pytest.mark.parametrize("failing", range(4))
def test_any_failed_call_fails_in_one_line_and_the_next_propose_mends_it(
    github: FakeGitHub, failing: int
) -> None:
    """The calls of superseding #1: list the branch's, create, list the open ones, close #1."""
    client(github).propose(make_bump("ami-00000000000000001"), "plan")
    before = len(github.calls)
    github.fail(500, after=failing)
    first = client(github).propose(make_bump("ami-00000000000000002"), "plan")
    assert first.result == "failed"
    assert first.error is not None
    assert "HTTP 500 Server Error" in first.error
    assert TOKEN not in first.error
    assert "\n" not in first.error
    assert len(github.calls) == before + failing + 1
    second = client(github).propose(make_bump("ami-00000000000000002"), "plan")
    assert second.result in {"opened", "unchanged"}
    assert open_pulls(github) == [2]
    assert len(github.pulls()) == 2
    assert github.pull(1)["body"] == "plan\n\nSuperseded by #2."


def test_a_timeout_fails_in_one_line(github: FakeGitHub) -> None:
    with github.hold():
        proposal = client(github, timeout=0.2).propose(make_bump(), "plan")
    assert proposal == bump.Proposal(
        "failed", error="GET /repos/acme/specs/pulls: timed out after 0.2s"
    )


def test_an_unreachable_forge_fails_in_one_line() -> None:
    with FakeGitHub() as fake:
        url = fake.api_url
    proposal = forge.GitHubForge(url, "acme/specs", TOKEN, timeout=2).propose(make_bump(), "p")
    assert proposal.result == "failed"
    assert proposal.error is not None
    assert proposal.error.startswith("GET /repos/acme/specs/pulls: failed (ConnectionRefusedError")


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    """A captive portal's HTML, or a redirect to another host: never GitHub's answer."""

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(301)
            self.send_header("Location", "http://elsewhere.invalid/repos/acme/specs/pulls")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<html>sign in to the wifi</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_answer_other_than_json_fails_in_one_line(elsewhere: str) -> None:
    proposal = forge.GitHubForge(elsewhere, "acme/specs", TOKEN).propose(make_bump(), "p")
    assert proposal.error == "GET /repos/acme/specs/pulls: answered something other than JSON"


def test_a_redirect_to_another_host_is_not_followed_with_the_token(elsewhere: str) -> None:
    api = forge.GitHubForge(f"{elsewhere}/redirect", "acme/specs", TOKEN)
    proposal = api.propose(make_bump(), "p")
    assert proposal.result == "failed"
    assert proposal.error is not None
    assert proposal.error.startswith("GET /redirect/repos/acme/specs/pulls: HTTP 301")


def test_the_token_is_not_in_the_repr() -> None:
    assert TOKEN not in repr(forge.GitHubForge("https://api.github.com", "a/b", TOKEN))


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (
            '<https://h/x?page=2>; rel="next", <https://h/x?page=5>; rel="last"',
            "https://h/x?page=2",
        ),
        (
            '<https://h/x?page=1>; rel="prev", <https://h/x?page=3>; rel="next"',
            "https://h/x?page=3",
        ),
        ('<https://h/x?page=1>; rel="first"', None),
        ("", None),
    ],
)
def test_the_next_page_is_read_from_the_link_header(link: str, expected: str | None) -> None:
    assert forge._next_page(link) == expected


# --- settings and repository URLs ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/specs.git",
        "https://github.com/acme/specs",
        "https://user:pass@github.example.com/acme/specs.git/",
        "git@github.com:acme/specs.git",
        "github.com:acme/specs",
        "ssh://git@github.com/acme/specs",
        "ssh://git@ghe.example.com:2222/acme/specs.git",
    ],
)
def test_owner_and_name_come_from_the_git_remote(url: str) -> None:
    assert forge.repo_from_url(url) == "acme/specs"


@pytest.mark.parametrize(
    "url",
    [
        "/srv/git/specs",
        "file:///srv/git/specs",
        "https://github.com/acme",
        "https://gitlab.example.com/group/sub/specs.git",
        "https://user:hunter2@github.com/",
    ],
)
def test_a_remote_without_owner_and_name_is_a_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match="set --forge-repo") as err:
        forge.repo_from_url(url)
    assert "hunter2" not in str(err.value)


def test_the_factory_needs_the_token() -> None:
    conf = settings.ImageSettings(forge="github")
    with pytest.raises(ValueError, match=r"^--forge github needs RECONCILER_FORGE_TOKEN$"):
        forge.from_settings(conf, "https://github.com/acme/specs.git")


def test_the_factory_takes_the_repo_from_settings_or_the_remote() -> None:
    conf = settings.ImageSettings(forge="github", forge_token=TOKEN)
    assert forge.from_settings(conf, "git@github.com:acme/specs.git").repo == "acme/specs"
    conf = dataclasses.replace(conf, forge_repo="other/repo", forge_api_url="https://ghe/api/v3")
    made = forge.from_settings(conf, "/local/path")
    assert (made.repo, repr(made)) == (
        "other/repo",
        "GitHubForge('https://ghe/api/v3', 'other/repo')",
    )


# --- the property ---------------------------------------------------------------------

IMAGES = [f"ami-0000000000000000{n}" for n in range(1, 5)]
KEYS = ["api", "worker"]
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("propose"), st.sampled_from(KEYS), st.sampled_from(IMAGES), st.booleans()
        ),
        st.tuples(st.just("close"), st.integers(0, 9)),
        st.tuples(st.just("merge"), st.integers(0, 9)),
        st.tuples(st.just("restart")),
    ),
    max_size=12,
)


@hypothesis.settings(deadline=None, max_examples=40)
@hypothesis.given(operations)
def test_any_history_leaves_at_most_one_open_pull_request_per_policy(
    ops: list[tuple[object, ...]],
) -> None:
    """Whatever people close or merge between proposals: one open pull request per prefix,
    one pull request per branch ever, and a closed one stays closed."""
    with FakeGitHub(repo="acme/specs", token=TOKEN, page_size=2) as github:
        forge_ = client(github)
        closed: set[int] = set()
        for op in ops:
            if op[0] == "propose":
                _, key, image, changed = op
                b = make_bump(str(image), key=str(key))
                proposal = forge_.propose(b, f"plan {changed}")
                assert proposal.result != "failed", proposal.error
            elif op[0] == "restart":
                forge_ = client(github)
            else:
                number = int(str(op[1]))
                if number in open_pulls(github):
                    (github.close if op[0] == "close" else github.merge)(number)
            pulls = github.pulls()
            for key in KEYS:
                prefix = f"reconciler/bump/{key}/"
                assert (
                    sum(p["state"] == "open" and p["head"]["ref"].startswith(prefix) for p in pulls)
                    <= 1
                )
            branches = [p["head"]["ref"] for p in pulls]
            assert len(branches) == len(set(branches))
            assert closed <= {p["number"] for p in pulls if p["state"] == "closed"}
            closed = {p["number"] for p in pulls if p["state"] == "closed"}
