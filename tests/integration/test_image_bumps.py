"""Image policies end to end: images in the emulator, specs in a real git repository (a bare
origin), the ImageAutomation pushing bump branches, and a small Forge to see what it is asked.

Each test holds one sentence of docs/contract.md, "Image policies and bump branches".
"""

from __future__ import annotations

import datetime as dt
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from reconciler import bump, catalog, imaging, model, source
from tests.integration.emulated import World, make_stacks
from tests.integration.gitrepo import GitRepo

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
INTERVAL = dt.timedelta(minutes=5)
POLICY = """\
  imagePolicy:            # newest stable API image
    ec2:
      owners: [self]
      filters: {name: ["api-*"], "tag:release": [stable]}
"""


def spec_text(name: str, image: str, policy: str = POLICY) -> str:
    return f"""\
# {name}: the API servers
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: {name.lower()}
spec:
  stackName: {name}
  region: us-east-1
  image: "{image}"   # moved by bump branches
  capacity: {{api: 1, migration: 1}}
{policy}"""


class Forge:
    """The Forge protocol as a test sees it: every proposal, answered as a forge would."""

    def __init__(self) -> None:
        self.proposed: list[tuple[bump.Bump, str]] = []

    def propose(self, made: bump.Bump, body: str) -> bump.Proposal:
        seen = any(b.branch == made.branch for b, _ in self.proposed)
        self.proposed.append((made, body))
        return bump.Proposal("unchanged" if seen else "opened", 7, "https://forge.invalid/pull/7")


class Bed:
    """The world, an origin with the specs on `main`, and an automation reading it."""

    def __init__(self, world: World, tmp: pathlib.Path) -> None:
        self.world, self.tmp = world, tmp
        self.work = GitRepo(tmp / "work")
        self.origin = tmp / "origin.git"
        self.now = T0
        self.forge = Forge()
        self.told: list[model.Transition] = []
        self.caches = 0

    def publish(self, files: dict[str, str]) -> str:
        sha = self.work.commit("specs", files)
        if not self.origin.exists():
            subprocess.run(
                ["git", "clone", "--quiet", "--bare", str(self.work.path), str(self.origin)],
                check=True,
                capture_output=True,
            )
        else:
            self.work.git("push", "--quiet", str(self.origin), "main")
        return sha

    def automation(
        self, *, forge: bool = True, allow_direct: bool = True
    ) -> imaging.ImageAutomation:
        """A fresh automation with a fresh cache, as after a restart."""
        self.caches += 1
        git = source.GitSource(
            str(self.origin), "main", "deploy-specs", self.tmp / f"cache{self.caches}"
        )
        return imaging.ImageAutomation(
            git,
            self.world.eng,
            self.world.metrics,
            INTERVAL,
            forge=self.forge if forge else None,
            notify=self.told.extend,
            allow_direct=allow_direct,
            clock=lambda: self.now,
        )

    def run(self, auto: imaging.ImageAutomation) -> list[imaging.Outcome]:
        snapshot = auto.git.poll()
        specs = catalog.Catalog()
        specs.update(snapshot)
        assert specs.errors == ()
        return auto.run_once(specs.specs, specs.fleets)

    def image(self, name: str, days: int, release: str = "stable") -> str:
        return self.world.emulator.register_image(
            name, {"release": release}, T0 - dt.timedelta(days=30 - days)
        )

    def origin_git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.origin), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def branches(self) -> dict[str, str]:
        out = self.origin_git("for-each-ref", "--format=%(refname:short) %(objectname)")
        return dict(line.split(" ") for line in out.splitlines())

    def bump_branches(self) -> dict[str, str]:
        return {b: s for b, s in self.branches().items() if b.startswith("reconciler/bump/")}

    def requests(self, operation: str) -> float:
        service = "cloudformation" if operation == "UpdateStack" else "ec2"
        found = self.world.metrics.registry.get_sample_value(
            "reconciler_aws_requests_total",
            {"service": service, "operation": operation, "result": "ok"},
        )
        return found or 0.0


@pytest.fixture
def bed(world: World, tmp_path: pathlib.Path) -> Iterator[Bed]:
    yield Bed(world, tmp_path)


def test_a_newer_image_makes_one_branch_with_one_commit_changing_only_the_image_line(
    bed: Bed,
) -> None:
    make_stacks(bed.world, "Api1")
    current = bed.image("api-1", 1)
    text = spec_text("Api1", current)
    main = bed.publish({"deploy-specs/api1.yaml": text})
    newer = bed.image("api-2", 2)
    bed.image("api-3-beta", 3, release="beta")  # newer, but not stable: not the policy's
    bed.image("web-9", 4)  # newer, but not an API image

    (outcome,) = bed.run(bed.automation())

    branch = f"reconciler/bump/api1/{newer}"
    assert bed.bump_branches() == {branch: outcome.made.commit if outcome.made else ""}
    assert bed.branches()["main"] == main  # the followed branch is unchanged
    assert bed.origin_git("rev-parse", f"{branch}^") == main + "\n"  # one commit on main
    diff = bed.origin_git("diff", main, branch)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == [
        f'-  image: "{current}"   # moved by bump branches',
        f'+  image: "{newer}"   # moved by bump branches',
    ]
    message = bed.origin_git("log", "-1", "--format=%an%n%B", branch)
    assert message.startswith(f"reconciler\nBump api1 to {newer} (api-2)\n")
    assert "created 2026-10-04T00:00:00Z" in message
    assert bed.requests("UpdateStack") == 0  # nothing is rolled out before the merge
    (proposed, body) = bed.forge.proposed[0]
    assert (proposed.branch, proposed.base, proposed.specs) == (branch, "main", ("api1",))
    assert f"| `api1` | Api1 | `{newer}` |" in body  # the plan against the live stack
    (told,) = bed.told
    assert told.kind == "bump_opened" and "forge.invalid/pull/7" in told.message
    assert told.key == f"api1|{branch}|bump_opened"  # once per branch in the outbox
    checks = bed.world.metrics.registry.get_sample_value(
        "reconciler_image_policy_checks_total", {"result": "newer"}
    )
    prs = bed.world.metrics.registry.get_sample_value(
        "reconciler_bump_prs_total", {"result": "opened"}
    )
    assert (checks, prs) == (1.0, 1.0)


@pytest.mark.parametrize("which", ["own", "older"])
def test_an_older_image_or_the_specs_own_makes_no_branch(bed: Bed, which: str) -> None:
    make_stacks(bed.world, "Api1")
    if which == "older":
        bed.image("api-0", 0)
    current = bed.image("api-1", 1)
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", current)})

    (outcome,) = bed.run(bed.automation())

    assert (outcome.result, outcome.made, bed.bump_branches()) == ("current", None, {})
    assert bed.forge.proposed == [] and bed.told == []


def test_specs_sharing_a_policy_get_one_branch_with_one_commit_bumping_them_all(
    bed: Bed,
) -> None:
    make_stacks(bed.world, "Api1", "Api2", "Api3")
    current = bed.image("api-1", 1)
    newer = bed.image("api-2", 2)
    main = bed.publish(
        {
            "deploy-specs/api1.yaml": spec_text("Api1", current),
            "deploy-specs/api2.yaml": spec_text("Api2", current),
            "deploy-specs/api3.yaml": spec_text("Api3", newer),  # already there
        }
    )

    (outcome,) = bed.run(bed.automation())

    assert outcome.made is not None
    (branch,) = bed.bump_branches()
    assert branch == f"reconciler/bump/{outcome.key}/{newer}" and len(outcome.key) == 12
    assert bed.origin_git("rev-list", "--count", f"{main}..{branch}") == "1\n"
    names = bed.origin_git("diff", "--name-only", main, branch).split()
    assert names == ["deploy-specs/api1.yaml", "deploy-specs/api2.yaml"]
    assert outcome.made.specs == ("api1", "api2")


def test_a_second_run_and_a_restart_push_nothing_new(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1))})
    bed.image("api-2", 2)
    auto = bed.automation()
    bed.run(auto)
    pushed = bed.bump_branches()

    assert bed.run(auto) == []  # within the interval: not checked again
    bed.now += INTERVAL
    (again,) = bed.run(auto)
    bed.now += INTERVAL
    (restarted,) = bed.run(bed.automation())  # a new process: nothing remembered

    assert bed.bump_branches() == pushed
    assert (again.pushed, restarted.pushed) == (False, False)
    assert [p.result for p in (again.proposal, restarted.proposal) if p] == ["unchanged"] * 2
    assert len(bed.told) == 1  # told once, when pushed


def test_a_newer_image_again_makes_a_new_branch_and_deletes_the_superseded_one(
    bed: Bed,
) -> None:
    make_stacks(bed.world, "Api1")
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1))})
    second = bed.image("api-2", 2)
    auto = bed.automation()
    bed.run(auto)
    third = bed.image("api-3", 3)
    bed.now += INTERVAL

    (outcome,) = bed.run(auto)

    assert list(bed.bump_branches()) == [f"reconciler/bump/api1/{third}"]
    assert outcome.deleted == (f"reconciler/bump/api1/{second}",)
    assert [b.image.id for b, _ in bed.forge.proposed] == [second, third]


def test_without_a_forge_the_branch_is_pushed_and_nothing_proposed(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1))})
    newer = bed.image("api-2", 2)

    (outcome,) = bed.run(bed.automation(forge=False))

    assert list(bed.bump_branches()) == [f"reconciler/bump/api1/{newer}"]
    assert outcome.proposal is None and bed.forge.proposed == []


def test_describe_images_is_called_once_per_policy_per_interval_for_many_specs(
    bed: Bed,
) -> None:
    names = [f"Api{i}" for i in range(12)]
    current = bed.image("api-1", 1)
    bed.publish({f"deploy-specs/{n.lower()}.yaml": spec_text(n, current) for n in names})
    auto = bed.automation()

    (first,) = bed.run(auto)
    bed.now += INTERVAL / 2
    assert bed.run(auto) == []
    bed.now += INTERVAL / 2
    (second,) = bed.run(auto)

    assert (first.result, second.result) == ("current", "current")
    assert bed.requests("DescribeImages") == 2


DIRECT = POLICY + "    commit: direct\n"


def test_commit_direct_fast_forwards_the_followed_branch(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    main = bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1), DIRECT)})
    newer = bed.image("api-2", 2)

    (outcome,) = bed.run(bed.automation())

    head = bed.branches()["main"]
    assert outcome.made is not None and head == outcome.made.commit
    assert bed.origin_git("rev-parse", f"{head}^") == main + "\n"
    assert f'image: "{newer}"' in bed.origin_git("show", f"{head}:deploy-specs/api1.yaml")
    assert bed.bump_branches() == {} and bed.forge.proposed == []


def test_commit_direct_is_refused_while_signatures_are_verified(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    text = spec_text("Api1", bed.image("api-1", 1), DIRECT)
    main = bed.publish({"deploy-specs/api1.yaml": text})
    bed.image("api-2", 2)

    (outcome,) = bed.run(bed.automation(allow_direct=False))

    assert outcome.error is not None and "refused" in outcome.error
    assert bed.branches()["main"] == main and bed.bump_branches() == {}
    specs = catalog.Catalog()
    specs.update(bed.automation().git.poll())
    refusal = imaging.direct_refusal(specs.specs)
    assert refusal is not None and refusal.startswith("deploy-specs/api1.yaml: ")
    assert "\n" not in refusal


def test_an_ssm_policy_bumps_to_the_image_its_parameter_names(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    current = bed.image("api-1", 1)
    newer = bed.image("api-2", 2)
    ssm = bed.world.emulator.client("ssm")
    ssm.put_parameter(Name="/images/api/latest", Value=newer, Type="String")
    policy = "  imagePolicy:\n    ssm: {parameter: /images/api/latest}\n"
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", current, policy)})

    (outcome,) = bed.run(bed.automation())

    assert list(bed.bump_branches()) == [f"reconciler/bump/api1/{newer}"]
    assert outcome.made is not None and outcome.made.image.name == "api-2"


def test_a_parameter_that_names_no_image_is_an_error_and_pushes_nothing(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    bed.world.emulator.client("ssm").put_parameter(
        Name="/images/api/latest", Value="latest-please", Type="String"
    )
    policy = "  imagePolicy:\n    ssm: {parameter: /images/api/latest}\n"
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1), policy)})

    (outcome,) = bed.run(bed.automation())

    assert outcome.result == "error" and "latest-please" in (outcome.error or "")
    assert bed.bump_branches() == {}
    errors = bed.world.metrics.registry.get_sample_value(
        "reconciler_image_policy_checks_total", {"result": "error"}
    )
    assert errors == 1


class FailingForge(Forge):
    def propose(self, made: bump.Bump, body: str) -> bump.Proposal:
        self.proposed.append((made, body))
        return bump.Proposal("failed", error="forge unreachable")


def test_a_superseded_branch_stays_while_the_forge_has_not_taken_the_newer_one(
    bed: Bed,
) -> None:
    make_stacks(bed.world, "Api1")
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1))})
    second = bed.image("api-2", 2)
    auto = bed.automation()
    bed.run(auto)
    third = bed.image("api-3", 3)
    auto.forge = FailingForge()
    bed.now += INTERVAL

    (outcome,) = bed.run(auto)

    assert sorted(bed.bump_branches()) == sorted(
        [f"reconciler/bump/api1/{second}", f"reconciler/bump/api1/{third}"]
    )
    assert outcome.deleted == () and outcome.proposal is not None
    assert outcome.proposal.result == "failed"
    auto.forge = bed.forge  # the forge is back: the next check proposes and cleans up
    bed.now += INTERVAL
    (healed,) = bed.run(auto)
    assert list(bed.bump_branches()) == [f"reconciler/bump/api1/{third}"]
    assert healed.pushed is False and healed.deleted == (f"reconciler/bump/api1/{second}",)


def test_commit_direct_never_overwrites_a_followed_branch_that_moved(bed: Bed) -> None:
    make_stacks(bed.world, "Api1")
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1), DIRECT)})
    bed.image("api-2", 2)
    auto = bed.automation()
    snapshot = auto.git.poll()
    specs = catalog.Catalog()
    specs.update(snapshot)
    moved = bed.publish({"README.md": "someone else's commit\n"})  # after the daemon read

    (outcome,) = auto.run_once(specs.specs, specs.fleets)

    assert outcome.error is not None and outcome.made is None
    assert bed.branches()["main"] == moved


def test_a_spec_changed_after_it_was_read_is_not_bumped_from_the_old_reading(bed: Bed) -> None:
    """The git poll and the image check run apart: a head that moved under the specs the
    check read is not edited on their word (a person's newer image is never reverted)."""
    make_stacks(bed.world, "Api1")
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", bed.image("api-1", 1))})
    bed.image("api-2", 2)
    by_hand = bed.image("api-3-hotfix", 3, release="hotfix")
    auto = bed.automation()
    read = catalog.Catalog()
    read.update(auto.git.poll())
    bed.publish({"deploy-specs/api1.yaml": spec_text("Api1", by_hand)})
    auto.git.poll()  # the head moves; `read` is what the check was given

    (outcome,) = auto.run_once(read.specs, read.fleets)

    assert outcome.error is not None and by_hand in outcome.error
    assert bed.bump_branches() == {}
