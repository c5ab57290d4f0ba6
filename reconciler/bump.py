"""What an image bump is: the values the image policy, the git edge and the forge share.

Rules of this file:
- Values only (no I/O): the policy check (`aws/images.py`) finds an `Image`, the git edge
  pushes a `Bump`'s branch, a `Forge` proposes it as a pull request and says what it did.
- A bump's branch is its identity on the remote: `reconciler/bump/<KEY>/<IMAGE>`, KEY the
  spec's name, or the policy's hash when several specs share the policy. Everything the
  daemon does for a bump is found again from the remote and the forge after a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal, Protocol

BRANCH_ROOT = "reconciler/bump"


def branch_of(key: str, image_id: str) -> str:
    """The one spelling of a bump branch: found on the remote before the bump is made."""
    return f"{BRANCH_ROOT}/{key}/{image_id}"


@dataclasses.dataclass(frozen=True)
class Image:
    """An AMI as DescribeImages shows it."""

    id: str
    name: str
    created: dt.datetime


@dataclasses.dataclass(frozen=True)
class Bump:
    """One commit on one branch moving one or more specs (one policy) to one image."""

    key: str
    """The spec's name, or the policy's hash when several specs share the policy."""
    image: Image
    specs: tuple[str, ...]
    """Names of the specs the commit moves, sorted."""
    base: str
    """The followed branch the bump branch starts from and a pull request targets."""
    commit: str
    """The bump commit's sha."""

    @property
    def prefix(self) -> str:
        """Every branch of this policy (or spec) starts with this."""
        return f"{BRANCH_ROOT}/{self.key}/"

    @property
    def branch(self) -> str:
        return branch_of(self.key, self.image.id)

    @property
    def title(self) -> str:
        what = self.specs[0] if len(self.specs) == 1 else f"{len(self.specs)} specs"
        return f"Bump {what} to {self.image.id} ({self.image.name})"


ProposalResult = Literal["opened", "updated", "unchanged", "declined", "failed"]


@dataclasses.dataclass(frozen=True)
class Proposal:
    """What the forge did for a bump: opened or updated its pull request, found it as it
    should be, found it closed unmerged by a person (declined: never reopened), or failed."""

    result: ProposalResult
    number: int | None = None
    url: str | None = None
    superseded: tuple[int, ...] = ()
    """Open pull requests of older images of the same key that this one closed."""
    error: str | None = None


class Forge(Protocol):
    def propose(self, bump: Bump, body: str) -> Proposal:
        """Open or update the one pull request of `bump.branch` against `bump.base` and
        close the open ones of other branches under `bump.prefix`; idempotent."""
        ...
