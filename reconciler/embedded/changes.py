"""The `Changes` of a change set: what an update would do to each resource.

Rules of this file:
- Pure: the stack as it is and as the change set would leave it (two
  `intrinsics.Evaluation`s) and the resources' physical ids in; `ResourceChange`s out.
- A resource on one side only is Add or Remove: the template added or dropped it, or its
  Condition turned. One on both sides is Modify when a target differs: a property, `Tags`,
  Metadata or a policy attribute, each compared as evaluated.
- Details follow AWS's own examples (User Guide, "Example change sets"): a template edit
  is one Static DirectModification; a changed parameter is a Dynamic DirectModification
  plus a Static ParameterReference naming it (CausingEntity); a reference to a resource
  whose own change carries over is Dynamic, ResourceReference for a `Ref` (the physical id
  moves only when that resource is replaced) and ResourceAttribute for `Fn::GetAtt` (an
  attribute may move with any modification), naming it. Dynamic details come first.
- Replacement is the most intrusive target's: RequiresRecreation Always gives True when
  the value surely changes and Conditional when it only may (a reference that might move);
  Conditionally gives Conditional; Never gives False (`behaviours.py` says which is which).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.embedded import behaviours
from reconciler.embedded.intrinsics import NO_VALUE, Evaluation, Reference, TemplateError, canonical

# Resource attributes other than Properties that a change set reports, in AWS's words.
_ATTRIBUTES = (
    "Metadata",
    "CreationPolicy",
    "UpdatePolicy",
    "DeletionPolicy",
    "UpdateReplacePolicy",
)
# Scope lists a change's attributes in this order (AWS's example shows Tags first).
_SCOPE_ORDER = ("Tags", "Properties", *_ATTRIBUTES)
_RANK = {"False": 0, "Conditional": 1, "True": 2}
_SURELY, _MAYBE = "surely", "maybe"

Target = tuple[str, str | None, Any, Any]  # (attribute, property name, old, new expressions)


@dataclasses.dataclass(frozen=True)
class Detail:
    """One `ResourceChangeDetail`: a target, and what changes it."""

    attribute: str  # Properties, Tags, Metadata, UpdatePolicy, ...
    name: str | None  # the property, for Properties
    recreation: str  # Always, Conditionally, Never
    evaluation: str  # Static, Dynamic
    source: str  # DirectModification, ParameterReference, ResourceReference, ResourceAttribute
    entity: str | None = None  # the parameter or resource (`Res` or `Res.Attr`) behind it

    def rendered(self) -> dict[str, Any]:
        target: dict[str, Any] = {"Attribute": self.attribute}
        if self.name is not None:
            target["Name"] = self.name
        target["RequiresRecreation"] = self.recreation
        detail: dict[str, Any] = {
            "Target": target,
            "Evaluation": self.evaluation,
            "ChangeSource": self.source,
        }
        if self.entity is not None:
            detail["CausingEntity"] = self.entity
        return detail


@dataclasses.dataclass(frozen=True)
class ResourceChange:
    """One entry of `Changes` (its `ResourceChange`)."""

    action: str  # Add, Modify, Remove
    logical_id: str
    resource_type: str
    physical_id: str | None = None
    replacement: str | None = None  # Modify only: True, False, Conditional
    details: tuple[Detail, ...] = ()

    @property
    def scope(self) -> list[str]:
        touched = {d.attribute for d in self.details}
        return [attribute for attribute in _SCOPE_ORDER if attribute in touched]

    def rendered(self) -> dict[str, Any]:
        """As DescribeChangeSet lists it."""
        change: dict[str, Any] = {"Action": self.action, "LogicalResourceId": self.logical_id}
        if self.physical_id is not None:
            change["PhysicalResourceId"] = self.physical_id
        change["ResourceType"] = self.resource_type
        if self.replacement is not None:
            change["Replacement"] = self.replacement
        change["Scope"] = self.scope
        change["Details"] = [d.rendered() for d in self.details]
        return {"Type": "Resource", "ResourceChange": change}


def compute(old: Evaluation, new: Evaluation, physical: Mapping[str, str]) -> list[ResourceChange]:
    """Every resource an update from `old` to `new` would touch, by logical id."""
    return _Diff(old, new, physical).changes()


class _Diff:
    def __init__(self, old: Evaluation, new: Evaluation, physical: Mapping[str, str]) -> None:
        self._old, self._new, self._physical = old, new, physical
        self._before = {name for name in old.resources if old.exists(name)}
        self._after = {name for name in new.resources if new.exists(name)}
        self._done: dict[str, ResourceChange | None] = {}
        self._doing: set[str] = set()

    def changes(self) -> list[ResourceChange]:
        found = [
            ResourceChange("Remove", name, _type(self._old, name), self._physical.get(name))
            for name in self._before - self._after
        ]
        found += [
            ResourceChange("Add", name, _type(self._new, name))
            for name in self._after - self._before
        ]
        for name in self._before & self._after:
            change = self._modified(name)
            if change is not None:
                found.append(change)
        return sorted(found, key=lambda c: c.logical_id)

    def _modified(self, name: str) -> ResourceChange | None:
        """The resource's Modify, once per resource: references ask for it too."""
        if name not in self._done:
            if name in self._doing:
                raise TemplateError(f"Circular dependency between resources: [{name}]")
            self._doing.add(name)
            self._done[name] = self._compare(name)
            self._doing.discard(name)
        return self._done[name]

    def _compare(self, name: str) -> ResourceChange | None:
        kind = _type(self._new, name)
        if _type(self._old, name) != kind:
            raise TemplateError(
                "Update of resource type is not permitted. The new template modifies resource "
                f"type of the following resources: [{name}]"
            )
        details: list[Detail] = []
        replacement = "False"
        for target in _targets(self._old.resources[name], self._new.resources[name]):
            found, replaces = self._target(kind, target)
            details += found
            replacement = max(replacement, replaces, key=_RANK.__getitem__)
        if not details:
            return None
        ordered = sorted(details, key=lambda d: d.evaluation != "Dynamic")
        return ResourceChange(
            "Modify", name, kind, self._physical.get(name), replacement, tuple(ordered)
        )

    def _target(self, kind: str, target: Target) -> tuple[list[Detail], str]:
        """The details of one target, and the Replacement it alone would cause."""
        attribute, prop, before, after = target
        old_value, old_reads = self._old.value(before)
        new_value, new_reads = self._new.value(after)
        recreation = behaviours.requires_recreation(kind, attribute, prop)
        static = canonical(old_value) != canonical(new_value)
        details: list[Detail] = []
        if static:
            read = old_reads.parameters | new_reads.parameters
            details += self._static(attribute, prop, recreation, before, after, read)
        surely = static
        for reference in sorted(new_reads.references, key=lambda r: r.entity):
            carried = self._carried(reference)
            if carried is None:
                continue
            surely = surely or carried == _SURELY
            source = "ResourceReference" if reference.attribute is None else "ResourceAttribute"
            details.append(Detail(attribute, prop, recreation, "Dynamic", source, reference.entity))
        if not details:
            return [], "False"
        if recreation == "Always" and not surely:
            return details, "Conditional"
        return details, behaviours.REPLACEMENT_OF[recreation]

    def _static(
        self,
        attribute: str,
        prop: str | None,
        recreation: str,
        before: Any,
        after: Any,
        read: frozenset[str],
    ) -> list[Detail]:
        """A value that differs before the update runs: edited, or a parameter changed."""
        old, new = self._old.parameters, self._new.parameters
        changed = sorted(p for p in read if old.get(p) != new.get(p))
        details: list[Detail] = []
        # An edit of the expression itself, or a change nothing else explains (a Mappings
        # entry, a pseudo parameter): the template changed under it.
        if canonical(before) != canonical(after) or not changed:
            details.append(Detail(attribute, prop, recreation, "Static", "DirectModification"))
        if changed:
            details.append(Detail(attribute, prop, recreation, "Dynamic", "DirectModification"))
            details += [
                Detail(attribute, prop, recreation, "Static", "ParameterReference", p)
                for p in changed
            ]
        return details

    def _carried(self, reference: Reference) -> str | None:
        """Whether a referenced resource's own change moves the reference's value."""
        if reference.logical_id not in self._before & self._after:
            return None  # added by this update: the expression itself changed (Static)
        change = self._modified(reference.logical_id)
        if change is None:
            return None
        if reference.attribute is None:  # a physical id moves only with a replacement
            return {"True": _SURELY, "Conditional": _MAYBE}.get(change.replacement or "")
        return _SURELY if change.replacement == "True" else _MAYBE


def _targets(before: Any, after: Any) -> Iterator[Target]:
    """Each property (Tags under its own attribute, as AWS reports it), then the other
    resource attributes; a side that lacks one holds NO_VALUE."""
    old, new = _properties(before), _properties(after)
    for name in dict.fromkeys([*new, *old]):
        if name == "Tags":
            yield "Tags", None, old.get(name, NO_VALUE), new.get(name, NO_VALUE)
        else:
            yield "Properties", name, old.get(name, NO_VALUE), new.get(name, NO_VALUE)
    for attribute in _ATTRIBUTES:
        yield attribute, None, _get(before, attribute), _get(after, attribute)


def _properties(declaration: Any) -> Mapping[str, Any]:
    properties = _get(declaration, "Properties")
    return properties if isinstance(properties, dict) else {}


def _get(declaration: Any, key: str) -> Any:
    return declaration.get(key, NO_VALUE) if isinstance(declaration, dict) else NO_VALUE


def _type(evaluation: Evaluation, name: str) -> str:
    return str(_get(evaluation.resources[name], "Type"))
