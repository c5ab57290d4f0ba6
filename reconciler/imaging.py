"""Image automation: a newer image found by a spec's `imagePolicy` becomes a bump branch (and,
with a forge, its pull request); never a rollout (docs/contract.md, "Image policies and bump
branches").

Rules of this file:
- One check per policy key (policy, account, region) per interval, whatever the number of
  specs that share it: one paged DescribeImages (`aws/images.py`), judged by `imagepolicy`.
- A bump is found again from the remote, never from memory: a branch that exists is never
  pushed again (after a restart too); the forge's `propose` is idempotent, so a bump whose
  pull request was not made (a crash, a forge down) gets it at the next check.
- The followed branch is never written, except by a policy with `commit: direct`, and then
  only by a fast-forward push (a branch that moved is tried again at the next check).
  `commit: direct` is refused while signatures are verified: the daemon cannot sign.
- Superseded branches (other images under the same key) are deleted only once the newer
  branch exists and the forge (if any) has taken it, so an open pull request never loses
  its branch to a failed step.
- Every failure is one log line and an `error` check; the next interval tries again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import structlog

from reconciler import aws, bump, catalog, engine, imagepolicy, model, plans, source
from reconciler.aws import images as aws_images
from reconciler.metrics import Metrics

Notify = Callable[[list[model.Transition]], None]
# The scheduler's interval job fires a few milliseconds either side of the interval; a check
# that came that much early is still this interval's, not a second one.
SLACK = 0.01


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one check of one policy did."""

    key: str  # the policy's hash
    result: imagepolicy.CheckResult
    made: bump.Bump | None = None  # the bump pushed or found on the remote
    pushed: bool = False  # this check pushed the bump's commit
    proposal: bump.Proposal | None = None
    deleted: tuple[str, ...] = ()  # superseded branches deleted
    error: str | None = None


def direct_refusal(specs: Mapping[str, catalog.LoadedSpec]) -> str | None:
    """Why the daemon cannot run with verified signatures: a spec asks for `commit: direct`
    (one line naming the file), or None."""
    for loaded in sorted(specs.values(), key=lambda s: s.file):
        policy = loaded.deployment.spec.image_policy
        if policy is not None and policy.commit == "direct":
            return (
                f"{loaded.file}: spec.imagePolicy.commit: direct cannot be used with "
                "--verify-signatures (the daemon cannot sign its commits); use commit: branch"
            )
    return None


class ImageAutomation:
    """Checks the specs' image policies and pushes (and proposes) their bumps."""

    def __init__(
        self,
        git: source.GitSource,
        eng: engine.Engine,
        metrics: Metrics,
        interval: dt.timedelta,
        *,
        forge: bump.Forge | None = None,
        notify: Notify | None = None,
        allow_direct: bool = True,
        clock: engine.Clock = engine.utcnow,
    ) -> None:
        self.git = git
        self.engine = eng
        self.metrics = metrics
        self.interval = interval
        self.forge = forge
        self.notify = notify
        self.allow_direct = allow_direct
        self.clock = clock
        self.log = structlog.get_logger("reconciler.imaging")
        self._checked: dict[str, dt.datetime] = {}  # policy key -> when it was last checked

    def run_once(
        self,
        specs: Mapping[str, catalog.LoadedSpec],
        fleets: Mapping[str, catalog.LoadedFleet] | None = None,
    ) -> list[Outcome]:
        """Check every policy that is due; bump what is behind. What each check did."""
        head = self.git.head
        if head is None:
            return []  # no specs read yet: nothing to bump from
        # A spec whose file is invalid at the head is not edited there: it waits for a fix.
        current = {n: s for n, s in specs.items() if not s.stale}
        groups = imagepolicy.groups((s.deployment, s.file) for s in current.values())
        now = self.clock()
        due = [g for g in groups if self._due(g.key, now)]
        refs = _Refs(self.git)
        return [self._check(g, head, current, fleets or {}, refs, now) for g in due]

    def _due(self, key: str, now: dt.datetime) -> bool:
        last = self._checked.get(key)
        return last is None or now - last >= self.interval * (1 - SLACK)

    def _check(
        self,
        group: imagepolicy.Group,
        head: str,
        specs: Mapping[str, catalog.LoadedSpec],
        fleets: Mapping[str, catalog.LoadedFleet],
        refs: _Refs,
        now: dt.datetime,
    ) -> Outcome:
        self._checked[group.key] = now  # a failed check waits for the next interval too
        try:
            found = aws_images.find(self.engine.clients, group.policy, group.region, group.role_arn)
        except (*aws.ERRORS, aws_images.ImagesError) as exc:
            return self._failed(group, "error", f"image policy check failed: {exc}")
        verdict = imagepolicy.judge(group, found)
        self.metrics.image_policy_check(verdict.result)
        if verdict.image is None or not verdict.bumped:
            return Outcome(group.key, verdict.result)
        try:
            return self._bump(group, verdict.image, verdict.bumped, head, specs, fleets, refs)
        except (source.GitError, imagepolicy.EditError) as exc:
            return self._failed(group, "newer", f"bump not pushed: {exc}", counted=True)

    def _failed(
        self, group: imagepolicy.Group, result: imagepolicy.CheckResult, why: str, *,
        counted: bool = False,
    ) -> Outcome:  # fmt: skip
        if not counted:
            self.metrics.image_policy_check(result)
        self.log.error(why, policy=group.key, specs=[m.name for m in group.members])
        return Outcome(group.key, result, error=why)

    def _bump(
        self,
        group: imagepolicy.Group,
        image: bump.Image,
        bumped: Sequence[imagepolicy.Member],
        head: str,
        specs: Mapping[str, catalog.LoadedSpec],
        fleets: Mapping[str, catalog.LoadedFleet],
        refs: _Refs,
    ) -> Outcome:
        if group.policy.commit == "direct":
            return self._direct(group, image, bumped, head)
        names = tuple(m.name for m in bumped)
        branch = bump.branch_of(group.branch_key, image.id)
        sha = refs.get().get(branch)
        pushed = sha is None
        if sha is None:
            sha = self._commit(image, bumped, head)
            self.git.push_commit(sha, branch)
            refs.add(branch, sha)
            self.log.info("bump branch pushed", branch=branch, image=image.id, specs=names)
        made = bump.Bump(group.branch_key, image, names, self.git.branch, sha)
        proposal = self._propose(made, [specs[n] for n in names], fleets)
        deleted: tuple[str, ...] = ()
        if proposal is None or proposal.result != "failed":
            deleted = tuple(imagepolicy.superseded(refs.get(), made))
            self.git.delete_branches(deleted)
            refs.drop(deleted)
        if pushed or (proposal is not None and proposal.result == "opened"):
            self._tell(group, made, proposal)
        return Outcome(group.key, "newer", made, pushed, proposal, deleted)

    def _direct(
        self,
        group: imagepolicy.Group,
        image: bump.Image,
        bumped: Sequence[imagepolicy.Member],
        head: str,
    ) -> Outcome:
        """`commit: direct`: the bump commit fast-forwards the followed branch."""
        if not self.allow_direct:
            why = "commit: direct is refused while signatures are verified; nothing pushed"
            return self._failed(group, "newer", why, counted=True)
        sha = self._commit(image, bumped, head)
        self.git.push_commit(sha, self.git.branch)
        names = tuple(m.name for m in bumped)
        made = bump.Bump(group.branch_key, image, names, self.git.branch, sha)
        self.log.info("bump committed to the followed branch", commit=sha, image=image.id)
        self._tell(group, made, None, direct=True)
        return Outcome(group.key, "newer", made, True)

    def _commit(self, image: bump.Image, bumped: Sequence[imagepolicy.Member], head: str) -> str:
        edits: dict[str, str] = {}
        for member in bumped:
            text = edits.get(member.file) or self.git.read_file(head, member.file)
            found = imagepolicy.image_of(text)
            if found != member.image:
                # A poll moved the head after the specs were read: judge it at the next check.
                raise imagepolicy.EditError(
                    f"{member.file} holds {found} at {head[:12]}, not {member.image}"
                )
            edits[member.file] = imagepolicy.replace_image(text, image.id)
        return self.git.commit_bump(head, edits, imagepolicy.message(image, bumped))

    def _propose(
        self,
        made: bump.Bump,
        bumped: Sequence[catalog.LoadedSpec],
        fleets: Mapping[str, catalog.LoadedFleet],
    ) -> bump.Proposal | None:
        if self.forge is None:
            return None
        try:
            proposal = self.forge.propose(made, self.body(made, bumped, fleets))
        except Exception as exc:  # a forge client's bug must not stop the other policies
            proposal = bump.Proposal("failed", error=str(exc))
        self.metrics.bump_pr(proposal.result)
        if proposal.result == "failed":
            self.log.error("bump pull request failed", branch=made.branch, error=proposal.error)
        return proposal

    def body(
        self,
        made: bump.Bump,
        bumped: Sequence[catalog.LoadedSpec],
        fleets: Mapping[str, catalog.LoadedFleet],
    ) -> str:
        """The pull request's body: what the bump is, and the markdown plan of the bumped
        specs on the new image against the live stacks."""
        created = made.image.created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        intro = (
            f"The image policy found `{made.image.id}` ({made.image.name}, created {created}), "
            f"newer than the image of {_names(made.specs)}. "
            "Merging this pull request is one rollout; nothing is sent to AWS before it.\n\n"
        )
        moved = [_on_image(loaded, made.image.id) for loaded in bumped]
        try:
            rows = plans.rows(self.engine, moved, dict(fleets))
            table = plans.render(rows, plans.fleets(rows, dict(fleets)), [], "markdown")
        except Exception as exc:  # the plan is a courtesy: the pull request goes without it
            table = f"No plan: {exc}\n"
        return intro + table

    def _tell(
        self,
        group: imagepolicy.Group,
        made: bump.Bump,
        proposal: bump.Proposal | None,
        *,
        direct: bool = False,
    ) -> None:
        if self.notify is None:
            return
        where = f"commit {made.commit[:12]} on {made.base}" if direct else f"branch {made.branch}"
        url = f"; pull request {proposal.url}" if proposal and proposal.url else ""
        single = len(group.members) == 1
        transition = model.Transition(
            name=made.key,
            stack=group.members[0].stack if single else "",
            region=group.region,
            revision=made.commit,
            kind="bump_opened",
            image=made.image.id,
            message=f"{made.title}: {where}{url}",
            at=self.clock(),
            subject=made.branch,
        )
        self.notify([transition])


def _names(specs: Sequence[str]) -> str:
    shown = ", ".join(f"`{s}`" for s in specs[:10])
    return shown if len(specs) <= 10 else f"{shown} and {len(specs) - 10} more"


def _on_image(loaded: catalog.LoadedSpec, image: str) -> catalog.LoadedSpec:
    deployment = loaded.deployment
    sp = deployment.spec.model_copy(update={"image": image})
    return dataclasses.replace(loaded, deployment=deployment.model_copy(update={"spec": sp}))


class _Refs:
    """The remote's bump branches, listed once per run and only when a bump needs them."""

    def __init__(self, git: source.GitSource) -> None:
        self._git = git
        self._found: dict[str, str] | None = None

    def get(self) -> dict[str, str]:
        if self._found is None:
            self._found = self._git.remote_branches(f"{bump.BRANCH_ROOT}/")
        return self._found

    def add(self, branch: str, sha: str) -> None:
        self.get()[branch] = sha

    def drop(self, branches: Sequence[str]) -> None:
        for branch in branches:
            self.get().pop(branch, None)
