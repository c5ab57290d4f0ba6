"""The change-set guard (rollout.guard): what an update would replace, known before it is sent.

Rules of this file (docs/decisions/0013-change-set-verdicts.md):
- A change set's answer depends on the template, on which parameters the update changes and
  on the values of the parameters the template's Conditions and Fn::FindInMap keys read;
  never on the new image's id. So a verdict (the change set's resource changes) is kept per
  `Key` and serves every stack and every later bump with the same key: a fleet sharing a
  template pays for one change set per phase, and the next bump for none.
- A stack's template is read (GetTemplate) once, while the stack is idle (`warm`), and
  again only when the stack was last updated by something other than the daemon (its
  LastUpdatedTime is not one of ours: `sent`).
- A step never waits for AWS: the first step creates the change set, a later one reads it
  (`Checking` meanwhile). One stack creates the change set of a key; other stacks with the
  same key wait for its verdict.
- No change set is left behind: its name is derived from the key and the stack, so a step
  that died after creating it finds it again (AlreadyExists) on the same step after the
  restart, reads it and deletes it. Every change set read is deleted before the verdict is
  used.
- Reads and change sets only: nothing here updates a stack.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import yaml
from botocore.exceptions import ClientError

from reconciler import model, spec
from reconciler.aws.act import CAPABILITIES, parameters
from reconciler.aws.clients import Clients

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

Clock = Callable[[], float]

PREFIX = "reconciler-guard-"
NO_CHANGES = "didn't contain changes"  # AWS's StatusReason for a change set with none
FINAL = frozenset({"CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE", "DELETE_FAILED"})
# A change set still pending after this long is given up and created again (AWS takes
# seconds; a lost one must not hold every stack of its key for ever).
STALE_PROBE = 300.0  # seconds
# An update of ours shows in the stack's LastUpdatedTime at most this long after we sent it.
OURS_WITHIN = dt.timedelta(seconds=60)
GROUP_TYPES = frozenset({"AWS::AutoScaling::AutoScalingGroup"})


@dataclasses.dataclass(frozen=True)
class Template:
    """What the guard needs of a stack's template."""

    checksum: str
    reads: frozenset[str]  # parameters whose values the Conditions or map keys read
    launch: Mapping[str, frozenset[str]]  # group logical id -> its launch templates/configs
    last_updated: dt.datetime | None  # the stack's LastUpdatedTime when this was read


@dataclasses.dataclass(frozen=True)
class Key:
    checksum: str
    changed: frozenset[str]
    values: tuple[tuple[str, str], ...]

    def digest(self) -> str:
        raw = json.dumps([self.checksum, sorted(self.changed), self.values])
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The change set's answer, and this spec's judgement of it."""

    changes: tuple[model.ResourceChange, ...]
    refused: tuple[model.ResourceChange, ...]  # destructive, outside the allowed ids
    allowed: frozenset[str]

    @property
    def ok(self) -> bool:
        return not self.refused

    def replaced(self) -> tuple[model.ResourceChange, ...]:
        """Every resource the update would replace or remove, allowed or not."""
        return tuple(c for c in self.changes if c.destructive)

    def message(self) -> str:
        if self.ok:
            kept = ", ".join(c.logical_id for c in self.replaced())
            return "replaces only " + kept if kept else "replaces nothing"
        listed = "; ".join(c.describe() for c in self.refused)
        return f"the update would replace or remove {listed}"


@dataclasses.dataclass(frozen=True)
class Checking:
    """No verdict yet: a change set is being created (by this stack or another)."""

    message: str


@dataclasses.dataclass
class _Probe:
    stack: tuple[str, str | None, str]  # region, role, stack name
    name: str
    started: float


class Book(Protocol):
    """Where verdicts outlive the process (the store): a restart, `plan`, other replicas."""

    def verdict(self, key: str) -> tuple[model.ResourceChange, ...] | None: ...
    def save_verdict(
        self, key: str, changes: Sequence[model.ResourceChange], at: dt.datetime
    ) -> None: ...


class ChangeSetFailed(Exception):
    """CloudFormation could not create the change set (the update would fail the same)."""


class Guard:
    """Verdicts per key, templates per stack, and the change sets under way."""

    def __init__(
        self, clients: Clients, book: Book | None = None, clock: Clock = time.monotonic
    ) -> None:
        self._clients = clients
        self._book = book
        self._clock = clock
        self._lock = threading.Lock()
        self._templates: dict[tuple[str, str | None, str], Template] = {}
        self._sent: dict[tuple[str, str | None, str], dt.datetime] = {}
        self._verdicts: dict[Key, tuple[model.ResourceChange, ...]] = {}
        self._probes: dict[Key, _Probe] = {}
        self._log = structlog.get_logger("reconciler.guard")

    # --- what the engine calls ----------------------------------------------------------

    def warm(self, sp: spec.Spec, view: model.StackView) -> None:
        """Read the template while the stack is idle, so that a rollout does not pay it."""
        if sp.rollout.guard != "off":
            self._template(sp, view)

    def sent(self, sp: spec.Spec, at: dt.datetime) -> None:
        """We just sent an update: the LastUpdatedTime it leaves is ours, not a person's."""
        with self._lock:
            self._sent[_ident(sp)] = at

    def known(
        self, sp: spec.Spec, update: model.StackUpdate, view: model.StackView
    ) -> Verdict | None:
        """The verdict if it is known; never creates a change set (`plan`)."""
        template, _, changes = self._lookup(sp, update, view)
        return None if changes is None else _judge(sp, template, changes)

    def _lookup(
        self, sp: spec.Spec, update: model.StackUpdate, view: model.StackView
    ) -> tuple[Template, Key, tuple[model.ResourceChange, ...] | None]:
        """The stack's template, the update's key, and the changes known under it."""
        template = self._template(sp, view)
        key = _key(template, update, view)
        return template, key, self._known(key)

    def _known(self, key: Key) -> tuple[model.ResourceChange, ...] | None:
        with self._lock:
            changes = self._verdicts.get(key)
        if changes is None and self._book is not None:
            changes = self._book.verdict(key.digest())
            if changes is not None:
                with self._lock:
                    self._verdicts[key] = changes
        return changes

    def _learn(self, key: Key, changes: tuple[model.ResourceChange, ...]) -> None:
        with self._lock:
            self._verdicts[key] = changes
            self._probes.pop(key, None)
        if self._book is not None:
            self._book.save_verdict(key.digest(), changes, dt.datetime.now(dt.UTC))

    def judge(
        self, sp: spec.Spec, update: model.StackUpdate, view: model.StackView
    ) -> Verdict | Checking:
        """The verdict on `update`, or Checking while its change set is being made."""
        template, key, changes = self._lookup(sp, update, view)
        with self._lock:
            probe = self._probes.get(key)
            now = self._clock()
            mine = probe is not None and probe.stack == _ident(sp)
            if changes is None and (probe is None or now - probe.started > STALE_PROBE):
                probe = _Probe(_ident(sp), PREFIX + key.digest(), now)
                self._probes[key] = probe
                mine, create = True, True
            else:
                create = False
        if changes is not None:
            return _judge(sp, template, changes)
        assert probe is not None
        if not mine:
            return Checking(
                f"waiting for the change set {probe.name} on stack {probe.stack[2]}, "
                "which says what this update would replace"
            )
        try:
            found = self._probe(sp, update, probe.name, create)
        except Exception:
            with self._lock:
                self._probes.pop(key, None)  # the next step tries afresh
            raise
        if found is None:
            return Checking(f"creating the change set {probe.name} to see what it would replace")
        self._learn(key, found)
        self._log.info(
            "change set read",
            change_set=probe.name,
            changes=[c.describe() for c in found],
        )
        return _judge(sp, template, found)

    def check_now(
        self,
        sp: spec.Spec,
        update: model.StackUpdate,
        view: model.StackView,
        timeout: float,
        poll: float = 1.0,
    ) -> Verdict:
        """Create, read and delete a change set for `update` now (`plan --change-set`)."""
        template = self._template(sp, view)
        key = _key(template, update, view)
        name = PREFIX + key.digest()
        deadline = self._clock() + timeout
        found = self._probe(sp, update, name, create=True)
        while found is None:
            if self._clock() > deadline:
                self._delete(self._cfn(sp), sp.stack_name, name)
                raise ChangeSetFailed(f"change set {name} not complete within {timeout:.0f}s")
            time.sleep(poll)  # a CLI waiting on AWS: there is no condition to wait on
            found = self._probe(sp, update, name, create=False)
        self._learn(key, found)
        return _judge(sp, template, found)

    # --- the change set -------------------------------------------------------------------

    def _probe(
        self, sp: spec.Spec, update: model.StackUpdate, name: str, create: bool
    ) -> tuple[model.ResourceChange, ...] | None:
        """Create (when asked) and read the change set; its changes once final, deleted."""
        cfn = self._cfn(sp)
        if create:
            try:
                cfn.create_change_set(
                    StackName=sp.stack_name,
                    ChangeSetName=name,
                    ChangeSetType="UPDATE",
                    UsePreviousTemplate=True,
                    Parameters=parameters(update),
                    Capabilities=CAPABILITIES,
                    Description="reconciler: what the next update would replace; deleted once read",
                )
            except ClientError as exc:
                # Ours, left by a step that died after creating it: read it as it is.
                if _code(exc) != "AlreadyExistsException":
                    raise
        try:
            status, reason, changes = self._read(cfn, sp.stack_name, name)
        except ClientError as exc:
            if _code(exc) == "ChangeSetNotFoundException" and not create:
                return self._probe(sp, update, name, create=True)  # lost: make it again
            raise
        if status not in FINAL:
            return None
        self._delete(cfn, sp.stack_name, name)
        if status == "FAILED" and NO_CHANGES not in reason:
            raise ChangeSetFailed(f"change set {name} failed: {reason}")
        return changes

    def _read(
        self, cfn: CloudFormationClient, stack: str, name: str
    ) -> tuple[str, str, tuple[model.ResourceChange, ...]]:
        found: list[model.ResourceChange] = []
        token: str | None = None
        while True:
            page = (
                cfn.describe_change_set(StackName=stack, ChangeSetName=name, NextToken=token)
                if token
                else cfn.describe_change_set(StackName=stack, ChangeSetName=name)
            )
            status = page.get("Status", "")
            if status not in FINAL:
                return status, "", ()
            for change in page.get("Changes", []):
                rc = change.get("ResourceChange")
                if rc is None:
                    continue
                found.append(
                    model.ResourceChange(
                        rc.get("LogicalResourceId", "?"),
                        rc.get("ResourceType", "?"),
                        rc.get("Action", "?"),
                        # Only a Modify has one; an Add or Remove replaces nothing itself.
                        rc.get("Replacement", "False"),
                    )
                )
            token = page.get("NextToken")
            if not token:
                return status, page.get("StatusReason", ""), tuple(found)

    @staticmethod
    def _delete(cfn: CloudFormationClient, stack: str, name: str) -> None:
        try:
            cfn.delete_change_set(StackName=stack, ChangeSetName=name)
        except ClientError as exc:
            if _code(exc) != "ChangeSetNotFoundException":
                raise

    def _cfn(self, sp: spec.Spec) -> CloudFormationClient:
        return self._clients.cloudformation(sp.region, sp.role_arn)

    # --- the template ---------------------------------------------------------------------

    def _template(self, sp: spec.Spec, view: model.StackView) -> Template:
        ident = _ident(sp)
        with self._lock:
            known = self._templates.get(ident)
            ours = self._sent.get(ident)
        if known is not None and not _changed_by_others(known, view, ours):
            if known.last_updated != view.last_updated:
                with self._lock:
                    self._templates[ident] = dataclasses.replace(
                        known, last_updated=view.last_updated
                    )
            return known
        body = self._cfn(sp).get_template(StackName=sp.stack_name, TemplateStage="Original")
        template = parse(body["TemplateBody"], view.last_updated)
        with self._lock:
            self._templates[ident] = template
        return template


def _changed_by_others(known: Template, view: model.StackView, ours: dt.datetime | None) -> bool:
    """The stack was updated since the template was read, and not by us."""
    if view.last_updated is None or view.last_updated == known.last_updated:
        return False
    return ours is None or abs(view.last_updated - ours) > OURS_WITHIN


def _ident(sp: spec.Spec) -> tuple[str, str | None, str]:
    return (sp.region, sp.role_arn, sp.stack_name)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _key(template: Template, update: model.StackUpdate, view: model.StackView) -> Key:
    live = view.parameters
    changed = frozenset(n for n, v in update.parameters if v is not None and live.get(n) != v)
    after = {n: (v if v is not None else live.get(n, "")) for n, v in update.parameters}
    values = tuple(sorted((n, after.get(n, "")) for n in template.reads))
    return Key(template.checksum, changed, values)


def _judge(sp: spec.Spec, template: Template, changes: tuple[model.ResourceChange, ...]) -> Verdict:
    groups = (sp.resource_names.api_group, sp.resource_names.migration_group)
    launch = (lt for g in groups for lt in template.launch.get(g, ()))
    allowed = frozenset([*groups, *launch, *sp.rollout.allow_replace])
    refused = tuple(c for c in changes if c.destructive and c.logical_id not in allowed)
    return Verdict(changes, refused, allowed)


# --- reading a template ---------------------------------------------------------------


def parse(body: str | Mapping[str, Any], last_updated: dt.datetime | None) -> Template:
    """GetTemplate's body (boto3 gives a JSON template as a dict, YAML as text)."""
    if isinstance(body, str):
        text = body
        doc = yaml.load(body, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader with CFN's tags
    else:
        doc = body
        text = json.dumps(body, sort_keys=True)
    if not isinstance(doc, dict):
        doc = {}
    parameters = frozenset((doc.get("Parameters") or {}).keys())
    reads = {r for r in _refs(doc.get("Conditions") or {}) if r in parameters}
    for found in _find(doc.get("Resources") or {}, "Fn::FindInMap"):
        reads |= {r for r in _refs(found) if r in parameters}
    launch: dict[str, frozenset[str]] = {}
    for logical, resource in (doc.get("Resources") or {}).items():
        if isinstance(resource, dict) and resource.get("Type") in GROUP_TYPES:
            props = resource.get("Properties") or {}
            launch[logical] = frozenset(_resource_refs(props))
    return Template(
        hashlib.sha256(text.encode()).hexdigest(), frozenset(reads), launch, last_updated
    )


def _refs(node: Any) -> Iterator[str]:
    """Every name a Ref, a Fn::Sub ${Name} or a Fn::GetAtt in `node` points at."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                yield v
            elif k == "Fn::GetAtt":
                target = v.split(".")[0] if isinstance(v, str) else (v or [None])[0]
                if isinstance(target, str):
                    yield target
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else (v[0] if isinstance(v, list) and v else "")
                yield from _sub_names(text if isinstance(text, str) else "")
                if isinstance(v, list) and len(v) > 1:
                    yield from _refs(v[1])
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _sub_names(text: str) -> Iterator[str]:
    start = text.find("${")
    while start >= 0:
        end = text.find("}", start)
        if end < 0:
            return
        name = text[start + 2 : end]
        if not name.startswith("!"):
            yield name.split(".")[0]
        start = text.find("${", end)


def _resource_refs(props: Mapping[str, Any]) -> Iterator[str]:
    """The launch templates or configurations a group uses: what its launch properties
    point at."""
    for prop in ("LaunchTemplate", "LaunchConfigurationName", "MixedInstancesPolicy"):
        if prop in props:
            yield from _refs(props[prop])


def _find(node: Any, fn: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == fn:
                yield v
            yield from _find(v, fn)
    elif isinstance(node, list):
        for v in node:
            yield from _find(v, fn)


class _CfnLoader(yaml.SafeLoader):
    """YAML templates with CloudFormation's short forms (!Ref, !Sub, !GetAtt...)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)
