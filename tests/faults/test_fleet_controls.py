"""A fleet's HTTP surface on a running daemon (in-process `daemon.Daemon`, its scheduler and
HTTP server live, the emulator behind it): the fleet as GET shows it, pause/resume/retry
under the stack controls' token rules, what a halt does to the members, and the gauges."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler import daemon
from reconciler.embedded import Emulator
from tests.faults.conftest import UPDATE_SECONDS
from tests.faults.daemonkit import (
    DaemonWorld,
    create_stacks,
    make_settings,
    spec_yaml,
    wait_until,
)
from tests.integration.gitrepo import GitRepo

TOKEN = "fleet-token-123"
# web-1 is the canary (step 1); web-2 and web-3 fall into the implicit last step.
MEMBERS = {"web-1": "Stack1", "web-2": "Stack2", "web-3": "Stack3"}
FLEET = """\
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  steps:
    - matchLabels: {tier: canary}
"""


def member_yaml(name: str, image: str) -> str:
    tier = "canary" if name == "web-1" else "main"
    labels = f"  labels: {{app: web, tier: {tier}}}\n"
    return spec_yaml(name, MEMBERS[name], image).replace(
        f"  name: {name}\n", f"  name: {name}\n{labels}"
    )


def specs(image: str) -> dict[str, str]:
    return {f"deploy-specs/{n}.yaml": member_yaml(n, image) for n in MEMBERS}


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[DaemonWorld]:
    """Three members of fleet `web`, InSync on v1, under a daemon with an API token."""
    with Emulator(update_seconds=UPDATE_SECONDS) as emu:
        image = emu.register_image("web-v1")
        create_stacks(emu, image, *MEMBERS.values())
        repo = GitRepo(tmp_path / "repo")
        repo.commit("fleet web", {**specs(image), "deploy-specs/fleets/web.yaml": FLEET})
        conf = make_settings(tmp_path / "state", repo.path, emu.endpoint_url)
        conf = dataclasses.replace(conf, http=dataclasses.replace(conf.http, token=TOKEN))
        d = daemon.Daemon(conf)
        d.start()
        try:
            w = DaemonWorld(emu, repo, image, d)
            for name in MEMBERS:
                wait_until(
                    lambda n=name: d.engine.status(n) and w.status(n)["phase"] == "InSync",
                    20,
                    f"{name} InSync",
                )
            yield w
        finally:
            d.stop()


def request(
    w: DaemonWorld, method: str, path: str, body: dict[str, Any] | None = None, token: str = TOKEN
) -> tuple[int, Any]:
    host, port = w.daemon.server.address
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_fleet_shows_its_steps_and_an_unknown_one_is_a_json_404(world: DaemonWorld) -> None:
    code, listed = request(world, "GET", "/api/v1/fleets")
    assert code == 200 and [f["name"] for f in listed["fleets"]] == ["web"]
    code, fleet = request(world, "GET", "/api/v1/fleets/web")
    assert code == 200 and fleet == listed["fleets"][0]
    assert [(s["step"], s["members"]) for s in fleet["steps"]] == [
        (1, ["web-1"]),
        (2, ["web-2", "web-3"]),
    ]
    assert fleet["halted"] is False and fleet["inFlight"] == [] and fleet["failed"] == []
    assert request(world, "GET", "/api/v1/fleets/nope") == (404, {"error": "no fleet named 'nope'"})
    assert world.sample("reconciler_fleet_halted", fleet="web") == 0
    # Refreshed right after each member's step, a moment after its status.
    wait_until(
        lambda: (
            world.sample("reconciler_fleet_members", fleet="web", step="2", phase="InSync") == 2
        ),
        5,
        "two members of step 2 InSync in the gauge",
    )


def test_pause_fleet_holds_every_member_on_its_image_until_resume(world: DaemonWorld) -> None:
    """Halted by hand, a commit of a new image starts nobody: each member is Waiting with
    "fleet web halted: <reason>", polled at the active cadence, and its stack untouched.
    Resumed, the fleet rolls, the canary first."""
    w = world
    d = w.daemon
    assert request(w, "POST", "/api/v1/fleets/web/pause", {"reason": "x"}, token="wrong")[0] == 401
    assert request(w, "POST", "/api/v1/fleets/web/pause", {})[1] == {
        "error": "pause needs a reason"
    }
    assert request(w, "GET", "/api/v1/fleets/web")[1]["halted"] is False
    code, answer = request(w, "POST", "/api/v1/fleets/web/pause", {"reason": "incident 7"})
    assert code == 200, answer
    assert answer == {"name": "web", "action": "pause", "result": "halted: incident 7"}
    assert w.sample("reconciler_fleet_halted", fleet="web") == 1
    fleet = request(w, "GET", "/api/v1/fleets/web")[1]
    assert fleet["halted"] and fleet["halt"]["reason"] == "incident 7"
    assert fleet["halt"]["by"] == "operator"

    v2 = w.emulator.register_image("web-v2")
    w.repo.commit("web v2", specs(v2))
    d.poll_git()
    for name in MEMBERS:
        wait_until(
            lambda n=name: (
                w.status(n)["desired"]["image"] == v2 and w.status(n)["phase"] == "Waiting"
            ),
            20,
            f"{name} Waiting on the halted fleet",
        )
        status = w.status(name)
        assert status["message"] == "fleet web halted: incident 7", status
        assert status["reason"] == "fleet_halted"
        assert status["live"]["image"] == w.image  # untouched
        # The active cadence (activeInterval 1 s, backing off to 4x, plus jitter), not the
        # member's interval: the step it waits for is seen within seconds once free.
        job = d.scheduler.get_job(f"reconcile:{name}")
        assert job.next_run_time - d.clock() <= dt.timedelta(seconds=5)
    wait_until(
        lambda: w.sample("reconciler_fleet_members", fleet="web", step="2", phase="Waiting") == 2,
        5,
        "two members of step 2 Waiting in the gauge",
    )

    code, answer = request(w, "POST", "/api/v1/fleets/web/resume")
    assert code == 200 and answer["result"].startswith("resumed"), answer
    assert w.sample("reconciler_fleet_halted", fleet="web") == 0
    for name in MEMBERS:
        wait_until(
            lambda n=name: w.status(n)["phase"] == "InSync" and w.status(n)["live"]["image"] == v2,
            60,
            f"{name} InSync on v2",
        )
    # In step order: step 2 started only after the canary's rollout had finished.
    canary = w.status("web-1")["rollout"]
    assert canary["image"] == v2 and canary["result"] == "succeeded"
    for name in ("web-2", "web-3"):
        rollout = w.status(name)["rollout"]
        assert rollout["image"] == v2
        assert rollout["startedAt"] >= canary["finishedAt"], (name, rollout, canary)


def test_retry_and_resume_of_a_fleet_that_is_not_halted_say_so(world: DaemonWorld) -> None:
    code, answer = request(world, "POST", "/api/v1/fleets/web/retry")
    assert code == 200
    assert answer["result"].startswith("was not halted; no failed member"), answer
    assert request(world, "POST", "/api/v1/fleets/nope/resume")[0] == 404


def test_a_removed_fleet_keeps_its_members_in_order_until_they_are_done(
    world: DaemonWorld,
) -> None:
    """The fleet file goes in the same commit as a new image while the fleet is halted:
    the members do not all start at once; the fleet stays in force, and its gauges, until
    its members are done, and the first git poll after that lets it go."""
    w = world
    assert request(w, "POST", "/api/v1/fleets/web/pause", {"reason": "freeze"})[0] == 200
    v2 = w.emulator.register_image("web-v2")
    w.repo.git("rm", "--quiet", "--", "deploy-specs/fleets/web.yaml")
    w.repo.commit("web v2, and no fleet", specs(v2))
    w.daemon.poll_git()
    fleet = request(w, "GET", "/api/v1/fleets/web")[1]
    assert fleet["halted"] and fleet["stale"], fleet
    for name in MEMBERS:
        wait_until(
            lambda n=name: (
                w.status(n)["desired"]["image"] == v2 and w.status(n)["phase"] == "Waiting"
            ),
            20,
            f"{name} held by the removed fleet",
        )
    assert w.sample("reconciler_fleet_halted", fleet="web") == 1
    assert request(w, "POST", "/api/v1/fleets/web/resume")[0] == 200
    for name in MEMBERS:
        wait_until(lambda n=name: w.status(n)["phase"] == "InSync", 60, f"{name} InSync on v2")
    w.daemon.poll_git()
    assert request(w, "GET", "/api/v1/fleets") == (200, {"fleets": []})
    body, _ = w.daemon.metrics.exposition()
    assert b'fleet="web"' not in body
