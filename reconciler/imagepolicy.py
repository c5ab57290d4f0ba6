"""Image policies decided: which specs a found image bumps, under which key, and the edit of
a spec file's `image:` line (docs/contract.md, "Image policies and bump branches").

Rules of this file:
- No I/O: the images come in as values (`aws/images.py` finds them), the decisions go out
  as values (the git edge pushes them, `imaging.py` carries them out).
- A policy is checked once per (account, region, policy): its key is a short hash of the
  canonical policy, the role and the region, so equal policies written in any key order or
  with defaults spelt out share one check, and one branch.
- An image is newer than a spec's when its CreationDate is later than that of the spec's
  image among the policy's images; a spec's image absent from them is not known, and any
  match is newer. The spec's own image never bumps it.
- The edit of a spec file changes only the characters of the StackDeployment's
  `spec.image` scalar, found through the YAML node's position: comments, quoting,
  indentation and every other document in the file are kept byte for byte.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import yaml

from reconciler import bump, spec

KEY_LENGTH = 12  # hex digits of the policy hash: a branch name a person can still read
CheckResult = Literal["newer", "current", "none", "error"]


def policy_key(policy: spec.ImagePolicy, region: str, role_arn: str | None) -> str:
    """The short stable hash of the canonical policy in one account (role) and region."""
    canonical = json.dumps(
        {
            "policy": policy.model_dump(mode="json", by_alias=True),
            "region": region,
            "role": role_arn or "",
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


@dataclasses.dataclass(frozen=True)
class Member:
    """A spec that follows a policy: its name, file and image now."""

    name: str
    file: str
    image: str
    stack: str


@dataclasses.dataclass(frozen=True)
class Group:
    """Every spec that follows one policy in one account and region: one check, one branch."""

    key: str  # the policy's hash
    policy: spec.ImagePolicy
    region: str
    role_arn: str | None
    members: tuple[Member, ...]  # by name

    @property
    def branch_key(self) -> str:
        """The spec's name when it is the policy's only follower, else the policy's hash."""
        return self.members[0].name if len(self.members) == 1 else self.key


def groups(deployments: Iterable[tuple[spec.StackDeployment, str]]) -> list[Group]:
    """The specs (with their files) that have an imagePolicy, grouped by policy key."""
    found: dict[str, tuple[spec.ImagePolicy, str, str | None, list[Member]]] = {}
    for deployment, file in deployments:
        sp = deployment.spec
        if sp.image_policy is None:
            continue
        key = policy_key(sp.image_policy, sp.region, sp.role_arn)
        entry = found.setdefault(key, (sp.image_policy, sp.region, sp.role_arn, []))
        entry[3].append(Member(deployment.name, file, sp.image, sp.stack_name))
    return [
        Group(key, policy, region, role, tuple(sorted(members, key=lambda m: m.name)))
        for key, (policy, region, role, members) in sorted(found.items())
    ]


def newest(images: Iterable[bump.Image]) -> bump.Image | None:
    """The image with the latest CreationDate; the id breaks a tie, so the choice is stable."""
    return max(images, key=lambda i: (i.created, i.id), default=None)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one check of a group found: the result for the metric, and the bump if any."""

    result: CheckResult
    image: bump.Image | None = None  # the newest match
    bumped: tuple[Member, ...] = ()  # the members it moves, by name


def is_newer(candidate: bump.Image, current: str, images: Sequence[bump.Image]) -> bool:
    """Whether `candidate` should replace the image `current` (see the rules)."""
    if candidate.id == current:
        return False
    known = next((i for i in images if i.id == current), None)
    return known is None or candidate.created > known.created


def judge(group: Group, images: Sequence[bump.Image]) -> Verdict:
    """The members the newest of `images` bumps: none when it is theirs or older."""
    best = newest(images)
    if best is None:
        return Verdict("none")
    bumped = tuple(m for m in group.members if is_newer(best, m.image, images))
    return Verdict("newer" if bumped else "current", best, bumped)


def branches_of(refs: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The branches (name -> sha) among `refs` that start with `prefix`."""
    return {name: sha for name, sha in refs.items() if name.startswith(prefix)}


def superseded(refs: Mapping[str, str], current: bump.Bump) -> list[str]:
    """The other branches of the bump's key: older images' branches, to delete."""
    return sorted(b for b in branches_of(refs, current.prefix) if b != current.branch)


def message(image: bump.Image, members: Sequence[Member]) -> str:
    """The bump commit's message: the AMI's name, id and CreationDate, and the specs moved."""
    what = members[0].name if len(members) == 1 else f"{len(members)} specs"
    created = image.created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    lines = [
        f"Bump {what} to {image.id} ({image.name})",
        "",
        f"The image policy found {image.name} ({image.id}, created {created}),",
        "newer than the image of:",
        "",
    ]
    lines += [f"- {m.name} ({m.file}): {m.image} -> {image.id}" for m in members]
    return "\n".join(lines) + "\n"


class EditError(ValueError):
    """The spec file's `image:` line cannot be found or changed safely."""


def image_of(text: str) -> str:
    """The StackDeployment's `spec.image` as the file holds it."""
    return str(_image_node(text).value)


def replace_image(text: str, image: str) -> str:
    """`text` with the StackDeployment's `spec.image` set to `image`, nothing else changed."""
    node = _image_node(text)
    old = text[node.start_mark.index : node.end_mark.index]
    quote = {"'": "'", '"': '"'}.get(node.style or "", "")
    if quote and not (old.startswith(quote) and old.endswith(quote)):
        raise EditError(f"spec.image at line {node.start_mark.line + 1} spans lines")
    if not quote and "\n" in old:
        raise EditError(f"spec.image at line {node.start_mark.line + 1} spans lines")
    edited = text[: node.start_mark.index] + f"{quote}{image}{quote}" + text[node.end_mark.index :]
    if _image_node(edited).value != image:  # pragma: no cover (a guard, not a branch we expect)
        raise EditError("the edited file does not read back the new image")
    return edited


def _image_node(text: str) -> yaml.ScalarNode:
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise EditError(f"invalid YAML: {exc}") from exc
    found = [n for doc in documents if _is_deployment(doc) for n in [_at(doc, "spec", "image")]]
    scalars = [n for n in found if isinstance(n, yaml.ScalarNode)]
    if len(scalars) != 1:
        raise EditError(f"expected one StackDeployment with spec.image, found {len(scalars)}")
    return scalars[0]


def _is_deployment(doc: yaml.Node | None) -> bool:
    kind = _at(doc, "kind")
    return isinstance(doc, yaml.MappingNode) and (kind is None or kind.value == "StackDeployment")


def _at(node: yaml.Node | None, *path: str) -> yaml.Node | None:
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next(
            (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None
        )
    return node
