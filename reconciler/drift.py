"""Drift: how a stack's managed Auto Scaling groups differ from what its template and
parameters say, because someone changed them outside CloudFormation.

Rules of this file (docs/decisions/0014-drift.md):
- Pure, like the planner: the standard library, our model and spec. The AWS edge
  (aws/fleet.py) gathers the facts from the shared groups listing and keeps the baseline;
  the engine puts the verdict on `Observed.drift`, where the planner's hold gate reads it.
- Judged only on a settled stack: its status `*_COMPLETE`, no update of ours pending, no
  rollout of ours under way, since our own updates and scaling calls move every field
  judged here. Otherwise the verdict is None: not judged.
- What counts, per managed group (the API group and the migration group):
  - its launch template (id and version, or its launch configuration) against the baseline:
    what the group had the first time the daemon saw the stack settled after its last
    update. A template's `Fn::GetAtt LatestVersionNumber` can only be read back from the
    group, so the group at that moment is the best witness of what CloudFormation set;
  - its desired capacity against the stack's capacity parameter, which the template sets
    DesiredCapacity from; only where the spec pins a number (`capacity.api: live` leaves
    the capacity to whoever moves it);
  - its suspended processes, none expected, except those the daemon suspended itself
    (`Memory.scaling_owned`, API group only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconciler import model, spec

LAUNCH_TEMPLATE = "launchTemplate"
DESIRED_CAPACITY = "desiredCapacity"
SUSPENDED_PROCESSES = "suspendedProcesses"
NONE = "none"  # the expected value of suspended processes


def launch_template(template: str, version: str) -> str:
    """How a launch template reference reads in a drift: `lt-0abc version 3`."""
    return f"{template} version {version}"


def launch_configuration(name: str) -> str:
    return f"launch configuration {name}"


@dataclasses.dataclass(frozen=True)
class Group:
    """One managed group as the shared listing shows it."""

    launch: str | None  # launch_template(...) or launch_configuration(...); None: neither
    desired_capacity: int
    suspended: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Facts:
    """What a drift judgement reads of one stack, all from reads consistent with each other
    (aws/fleet.py makes sure of that)."""

    stack: model.StackView
    groups: Mapping[str, Group]  # by logical id: the managed groups found (others unjudged)
    pending: bool = False  # an update of ours not yet seen settled
    rolling_out: bool = False  # a rollout of ours under way
    scaling_owned: frozenset[str] = frozenset()  # processes we suspended on the API group


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The drift found (None: not judged) and the baseline to keep for the next judgement."""

    drift: tuple[model.Drift, ...] | None
    baseline: Mapping[str, str]  # logical id -> launch, as CloudFormation left it


def settled(stack: model.StackView, pending: bool, rolling_out: bool) -> bool:
    """Whether drift may be judged at all: nothing of ours, nor CloudFormation, is moving
    the groups now."""
    return stack.status.endswith("_COMPLETE") and not pending and not rolling_out


def judge(sp: spec.Spec, facts: Facts, baseline: Mapping[str, str]) -> Verdict:
    """The drift of the spec's managed groups. `baseline`: the launch per group recorded
    since the stack's last update ({} the first time); a group not in it gets its launch
    recorded now, and so cannot drift in its launch this time."""
    if not settled(facts.stack, facts.pending, facts.rolling_out) or not facts.groups:
        return Verdict(None, baseline)
    kept = {
        **{k: g.launch for k, g in facts.groups.items() if g.launch is not None},
        **baseline,
    }
    found: list[model.Drift] = []
    for logical, capacity, owned in _managed(sp, facts):
        group = facts.groups.get(logical)
        if group is None:
            continue
        found.extend(_launch(logical, group, kept.get(logical)))
        found.extend(_capacity(logical, group, capacity))
        found.extend(_suspended(logical, group, owned))
    return Verdict(tuple(found), kept)


def _managed(sp: spec.Spec, facts: Facts) -> list[tuple[str, str | None, frozenset[str]]]:
    """(logical id, expected capacity or None when not judged, processes ours) per group."""
    names, params = sp.parameter_names, facts.stack.parameters
    api = None if sp.capacity.api == "live" else params.get(names.api_capacity)
    return [
        (sp.resource_names.api_group, api, facts.scaling_owned),
        (sp.resource_names.migration_group, params.get(names.migration_capacity), frozenset()),
    ]


def _launch(logical: str, group: Group, expected: str | None) -> list[model.Drift]:
    # A version given as `$Latest` or `$Default` follows the template's versions by itself:
    # a new version made by hand changes what the group launches without changing the
    # group, which the listing cannot show. Only a changed reference is seen.
    if expected is None or group.launch is None or group.launch == expected:
        return []
    return [model.Drift(logical, LAUNCH_TEMPLATE, expected, group.launch)]


def _capacity(logical: str, group: Group, expected: str | None) -> list[model.Drift]:
    # A parameter without a number (moto can leave one empty) says nothing to compare with.
    if expected is None or not expected.isdigit() or int(expected) == group.desired_capacity:
        return []
    return [model.Drift(logical, DESIRED_CAPACITY, expected, str(group.desired_capacity))]


def _suspended(logical: str, group: Group, owned: frozenset[str]) -> list[model.Drift]:
    theirs = group.suspended - owned
    if not theirs:
        return []
    return [model.Drift(logical, SUSPENDED_PROCESSES, NONE, ", ".join(sorted(theirs)))]
