"""Desired state: the `deploy-specs/*.yaml` documents (CONTRACT.md section 1).

Rules of this file:
- Every field of the contract is a typed model field with the contract's default.
- Unknown keys are errors; so is anything that would let a typo reach a stack.
- Errors always name the file, the line and the field; parsing never touches AWS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from reconciler import windows

AMI_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_SPEC_BYTES = 256 * 1024  # a spec is a page of YAML; anything larger is a mistake or an attack
# Label keys and values as Kubernetes spells them (no prefix for values), so a selector reads
# the same here as in the tools people already know.
LABEL_RE = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
MAX_ALARMS = 5  # the most rollback triggers CloudFormation takes per stack
ALARM_NAME_RE = re.compile(r"^[^\x00-\x1f]{1,255}$")
LOGICAL_ID_RE = re.compile(r"^[A-Za-z0-9]{1,255}$")
_PERCENT_RE = re.compile(r"^([1-9][0-9]?|100)%$")


def parse_duration(value: Any) -> dt.timedelta:
    """`90s`, `30m`, `2h`, `1h30m` (or a timedelta) to a positive timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("a duration is a string such as 90s, 30m, 2h or 1h30m")
    if isinstance(value, int):
        raise ValueError(f"a duration needs a unit: write {value}s, not {value}")
    match = _DURATION_RE.match(value.strip())
    if not value.strip() or match is None:
        raise ValueError(f"{value!r} is not a duration such as 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    delta = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if delta <= dt.timedelta(0):
        raise ValueError("a duration must be longer than zero")
    return delta


def format_duration(delta: dt.timedelta) -> str:
    """The inverse of parse_duration, shortest form (`1h30m`)."""
    total = int(delta.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts) or "0s"


def _parse_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an RFC 3339 time") from exc
    else:
        raise ValueError("a time is an RFC 3339 string such as 2026-12-01T00:00:00Z")
    if parsed.tzinfo is None:
        raise ValueError("a time needs an offset (Z or +01:00)")
    return parsed.astimezone(dt.UTC)


Duration = Annotated[
    dt.timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
Time = Annotated[
    dt.datetime,
    BeforeValidator(_parse_time),
    PlainSerializer(lambda t: t.isoformat().replace("+00:00", "Z"), return_type=str),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _label_key(key: str) -> str:
    if not LABEL_RE.match(key):
        raise ValueError(f"label key {key!r} must be a Kubernetes-style label name")
    return key


def _label_value(label: str) -> str:
    if not LABEL_VALUE_RE.match(label):
        raise ValueError(
            f"{label!r} must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return label


# Validated key by key and value by value, so that an error points at the label's own line.
Labels = dict[
    Annotated[str, AfterValidator(_label_key)], Annotated[str, AfterValidator(_label_value)]
]


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError("must match [a-z0-9-]{1,63}")
    return value


Name = Annotated[str, AfterValidator(_name)]  # a spec's or a fleet's metadata.name


class Metadata(_Model):
    name: Name
    labels: Labels = Field(default_factory=dict)  # free-form; fleets select specs by them


class Capacity(_Model):
    api: int | Literal["live"] = 1
    migration: int = Field(1, ge=1)

    @field_validator("api", mode="before")
    @classmethod
    def _api(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise ValueError('must be an integer >= 0 or "live"')
        if isinstance(value, str) and value != "live":
            raise ValueError('must be an integer >= 0 or "live"')
        return value


class ParameterNames(_Model):
    api_image: str = Field("LcImageId", alias="apiImage", min_length=1)
    api_capacity: str = Field("Asg1DesiredCapacity", alias="apiCapacity", min_length=1)
    migration_image: str = Field("MigrationLcImageId", alias="migrationImage", min_length=1)
    migration_capacity: str = Field(
        "MigrationDesiredCapacity", alias="migrationCapacity", min_length=1
    )

    def managed(self) -> tuple[str, str, str, str]:
        return (self.api_image, self.api_capacity, self.migration_image, self.migration_capacity)


class ResourceNames(_Model):
    api_group: str = Field("Asg1", alias="apiGroup", min_length=1)
    migration_group: str = Field("MigrationAsg", alias="migrationGroup", min_length=1)


class Migration(_Model):
    check: Literal["s3", "ssm", "none"] = "s3"
    location: str | None = None
    timeout: Duration = dt.timedelta(minutes=30)

    @model_validator(mode="after")
    def _location(self) -> Migration:
        if self.check == "none":
            return self
        if self.location is None:
            raise ValueError(f"location is required when check is {self.check}")
        if self.check == "s3" and not re.match(
            r"^s3://[a-z0-9][a-z0-9.-]{1,62}(/.*)?$", self.location
        ):
            raise ValueError("location must be s3://bucket/prefix when check is s3")
        if self.check == "ssm" and not re.match(r"^ssm:/[A-Za-z0-9_./-]*$", self.location):
            raise ValueError("location must be ssm:/path/prefix when check is ssm")
        return self


class Rollout(_Model):
    timeout: Duration = dt.timedelta(minutes=45)
    approve_after_migration: bool = Field(False, alias="approveAfterMigration")
    verify_health: bool = Field(True, alias="verifyHealth")
    suspend_scaling: bool = Field(False, alias="suspendScaling")
    auto_rollback: bool = Field(False, alias="autoRollback")
    # CloudWatch alarms in the spec's region: ALARM holds a rollout, triggers CloudFormation's
    # rollback of the switch, and fails the rollout during `bake`.
    alarms: tuple[str, ...] = ()
    bake: Duration | None = None  # after the switch is healthy, watch the alarms this long
    # Before phase 1, the switch and a scale update: a change set with the same parameters
    # says what the update would replace; anything beyond the managed groups is refused.
    guard: Literal["changeSet", "off"] = "changeSet"
    allow_replace: tuple[str, ...] = Field((), alias="allowReplace")  # more logical ids
    # A managed group changed behind CloudFormation's back: report it, or hold the rollout.
    on_drift: Literal["report", "hold"] = Field("report", alias="onDrift")

    @field_validator("alarms")
    @classmethod
    def _alarms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > MAX_ALARMS:
            raise ValueError(
                f"at most {MAX_ALARMS} alarms (CloudFormation's limit of rollback triggers), "
                f"not {len(value)}"
            )
        for name in value:
            if not ALARM_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a CloudWatch alarm name (1-255 characters)")
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"names {', '.join(map(repr, twice))} more than once")
        return value

    @field_validator("allow_replace")
    @classmethod
    def _logical_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not LOGICAL_ID_RE.match(name):
                raise ValueError(
                    f"{name!r} is not a CloudFormation logical id (letters and digits, at most 255)"
                )
        return tuple(dict.fromkeys(value))

    # A field validator, not a model one, so that the error points at `bake`'s own line;
    # `alarms` is declared first and so is in info.data when it is valid.
    @field_validator("bake")
    @classmethod
    def _bake_needs_alarms(
        cls, value: dt.timedelta | None, info: ValidationInfo
    ) -> dt.timedelta | None:
        if value is not None and info.data.get("alarms") == ():
            raise ValueError("bake watches rollout.alarms: name at least one alarm")
        return value


class Pause(_Model):
    reason: str = Field("paused in the spec", min_length=1)
    until: Time | None = None


class Promotion(_Model):
    """Roll out only an image that another spec already runs, in sync, for `bake`."""

    after: str
    bake: Duration = dt.timedelta(minutes=30)

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("must be the metadata.name of another spec ([a-z0-9-]{1,63})")
        return value


class Window(_Model):
    """A rollout window: new rollouts start only inside allow windows and outside deny ones."""

    kind: Literal["deny", "allow"]
    schedule: str = Field(min_length=9)  # a five-field cron expression, e.g. "0 22 * * 1-5"
    duration: Duration
    timezone: str = Field(min_length=1)  # explicit on purpose: an IANA name, e.g. Europe/Berlin

    @model_validator(mode="after")
    def _evaluable(self) -> Window:
        windows.check(self.schedule, self.timezone)
        return self


_SSM_PARAMETER_RE = re.compile(r"^/[A-Za-z0-9_./-]{1,1010}$")
_OWNER_RE = re.compile(r"^(self|amazon|aws-marketplace|\d{12})$")


class Ec2Policy(_Model):
    """Images found by one DescribeImages: these owners, these filters (AWS's own names)."""

    owners: tuple[str, ...] = ("self",)
    filters: dict[str, tuple[Annotated[str, Field(min_length=1)], ...]] = Field(
        default_factory=dict
    )

    @field_validator("owners")
    @classmethod
    def _owners(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one owner (self, amazon, or an account id)")
        for owner in value:
            if not _OWNER_RE.match(owner):
                raise ValueError(
                    f"{owner!r} is not an owner: self, amazon, aws-marketplace or a 12-digit "
                    "account id"
                )
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for key, values in value.items():
            if not key:
                raise ValueError("a filter needs a name, such as name or tag:release")
            if not values:
                raise ValueError(f"filter {key!r} needs at least one value")
        return value


class SsmPolicy(_Model):
    """The image a Parameter Store parameter names (an AMI id, or a list of them)."""

    parameter: str

    @field_validator("parameter")
    @classmethod
    def _parameter(cls, value: str) -> str:
        if not _SSM_PARAMETER_RE.match(value):
            raise ValueError(f"{value!r} is not a parameter path such as /images/app/latest")
        return value


class ImagePolicy(_Model):
    """Where newer images come from; a newer one becomes a bump branch, never a rollout."""

    ec2: Ec2Policy | None = None
    ssm: SsmPolicy | None = None
    select: Literal["newest"] = "newest"  # by CreationDate
    # branch: a bump branch to merge; direct: the commit goes on the followed branch.
    commit: Literal["branch", "direct"] = "branch"

    @model_validator(mode="after")
    def _one_source(self) -> ImagePolicy:
        if (self.ec2 is None) == (self.ssm is None):
            raise ValueError("give exactly one of ec2 or ssm")
        return self


class Spec(_Model):
    stack_name: str = Field(alias="stackName", min_length=1, max_length=128)
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    role_arn: str | None = Field(
        None, alias="roleArn", pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"
    )
    image: str
    capacity: Capacity = Capacity()
    # parameterNames comes before parameters so that the pin check below can see it.
    parameter_names: ParameterNames = Field(ParameterNames(), alias="parameterNames")
    parameters: dict[str, str] = Field(default_factory=dict)
    resource_names: ResourceNames = Field(ResourceNames(), alias="resourceNames")
    migration: Migration = Migration(check="none")
    rollout: Rollout = Rollout()
    paused: Pause | None = None
    interval: Duration = dt.timedelta(seconds=30)
    promotion: Promotion | None = None
    windows: tuple[Window, ...] = ()
    image_policy: ImagePolicy | None = Field(None, alias="imagePolicy")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not AMI_RE.match(value):
            raise ValueError(f"{value!r} is not an AMI id (ami- and 8 or 17 hex digits)")
        return value

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, value: Any) -> Any:
        # CloudFormation parameters are strings; YAML turns `Port: 80` into an int.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, str | int | float | bool)
                else v
                for k, v in value.items()
            }
        return value

    @field_validator("paused", mode="before")
    @classmethod
    def _paused(cls, value: Any) -> Any:
        if value is False or value is None:
            return None
        if value is True:
            return {}
        return value

    @field_validator("parameters")
    @classmethod
    def _managed_not_pinned(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        names = info.data.get("parameter_names", ParameterNames())
        clash = set(value) & set(names.managed())
        if clash:
            raise ValueError(
                f"must not pin managed parameters {sorted(clash)}: set image and capacity instead"
            )
        return value


class StackDeployment(_Model):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["StackDeployment"]
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        return self.metadata.name

    @model_validator(mode="after")
    def _not_after_itself(self) -> StackDeployment:
        promotion = self.spec.promotion
        if promotion is not None and promotion.after == self.metadata.name:
            raise ValueError("spec.promotion.after names this spec itself")
        return self


class Selector(_Model):
    match_labels: Labels = Field(alias="matchLabels")

    @field_validator("match_labels")
    @classmethod
    def _not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("name at least one label: an empty selector would take every spec")
        return value


class FleetStep(_Model):
    """One wave: the members with these labels (all that are left, when none are given)."""

    match_labels: Labels = Field(default_factory=dict, alias="matchLabels")
    max_concurrent: int | str = Field(1, alias="maxConcurrent")

    # Before pydantic's own checks, whose errors for a union name each branch (`.int`, `.str`).
    @field_validator("max_concurrent", mode="before")
    @classmethod
    def _max_concurrent(cls, value: Any) -> Any:
        wanted = "must be an integer >= 1 or a percentage from 1% to 100%, such as 25%"
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if isinstance(value, str) and _PERCENT_RE.match(value):
            return value
        if isinstance(value, int | str) and not isinstance(value, bool):
            raise ValueError(f"{value!r} {wanted}")
        raise ValueError(wanted)

    def limit(self, members: int) -> int:
        """How many of `members` may be under way at once: a percentage rounds down, >= 1."""
        if isinstance(self.max_concurrent, int):
            return self.max_concurrent
        percent = int(self.max_concurrent.rstrip("%"))
        return max(1, members * percent // 100)

    def selects(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items())


# The step of the members no listed step selects: one at a time, last.
LAST_STEP = FleetStep()


class FleetSpec(_Model):
    selector: Selector
    steps: tuple[FleetStep, ...] = ()
    bake: Duration | None = None  # after a step's last member is InSync, before the next
    failure_budget: int = Field(0, alias="failureBudget", ge=0)

    @field_validator("steps")
    @classmethod
    def _catch_all_last(cls, value: tuple[FleetStep, ...]) -> tuple[FleetStep, ...]:
        # A step without matchLabels takes every member left, so a step after it is never used:
        # almost certainly a step whose matchLabels were forgotten.
        for index, step in enumerate(value[:-1]):
            if not step.match_labels:
                raise ValueError(
                    f"step {index} has no matchLabels and takes every member left, "
                    "so the steps after it would be empty: only the last step may omit matchLabels"
                )
        return value

    def selects(self, labels: dict[str, str]) -> bool:
        match = self.selector.match_labels
        return all(labels.get(k) == v for k, v in match.items())

    def step_of(self, labels: dict[str, str]) -> int:
        """The 0-based index of the member's step; len(steps) is the implicit last one."""
        for index, step in enumerate(self.steps):
            if step.selects(labels):
                return index
        return len(self.steps)

    def step(self, index: int) -> FleetStep:
        return self.steps[index] if index < len(self.steps) else LAST_STEP


class FleetMetadata(_Model):
    name: Name


class FleetDeployment(_Model):
    """`kind: Fleet`: the order in which the specs it selects start their rollouts."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Fleet"]
    metadata: FleetMetadata
    spec: FleetSpec

    @property
    def name(self) -> str:
        return self.metadata.name


Document = StackDeployment | FleetDeployment
_KINDS: dict[str, type[StackDeployment] | type[FleetDeployment]] = {
    "StackDeployment": StackDeployment,
    "Fleet": FleetDeployment,
}


@dataclasses.dataclass(frozen=True)
class SpecError:
    """One problem in one spec file, located for a person."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '(document)'}: {self.message}"


class SpecInvalid(Exception):
    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def _line_of(node: yaml.Node | None, path: Iterable[str | int]) -> int:
    """The 1-based line of the deepest YAML node along `path`."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for key in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    child, line = v, k.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses duplicate keys, which YAML would otherwise resolve silently to the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _field_name(loc: tuple[int | str, ...]) -> str:
    # pydantic appends validator tags (`function-after[...]`, `literal[...]`); drop them.
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and "[" in p))


def parse(text: str | bytes, file: str) -> StackDeployment:
    """Parse one StackDeployment; raise SpecInvalid naming file, line and field."""
    document = parse_document(text, file)
    if not isinstance(document, StackDeployment):
        line = _line_of(yaml.compose(text, Loader=yaml.SafeLoader), ("kind",))  # it parsed
        message = "expected a StackDeployment, not a Fleet"
        raise SpecInvalid([SpecError(file, line, "kind", message)])
    return document


def parse_document(text: str | bytes, file: str) -> Document:
    """Parse one document of either kind; raise SpecInvalid naming file, line and field."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecInvalid([SpecError(file, 1, "", f"file is larger than {MAX_SPEC_BYTES} bytes")])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecInvalid([SpecError(file, 1, "", f"not UTF-8 text: {exc}")]) from exc
    try:
        starts = [
            e.start_mark.line + 1 if e.start_mark else 1
            for e in yaml.parse(text, Loader=yaml.SafeLoader)
            if isinstance(e, yaml.DocumentStartEvent)
        ]
        if len(starts) != 1:
            line = starts[1] if len(starts) > 1 else 1
            raise SpecInvalid([SpecError(file, line, "", "expected exactly one YAML document")])
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecInvalid([SpecError(file, line, "", f"invalid YAML: {problem}")]) from exc
    if not isinstance(data, dict):
        raise SpecInvalid([SpecError(file, 1, "", "a spec is a mapping (apiVersion, kind, ...)")])
    kind = data.get("kind", "StackDeployment")  # a missing kind is reported by the model
    if not isinstance(kind, str) or kind not in _KINDS:
        shown = f"{kind!r} is not a kind: " if isinstance(kind, str) else ""
        line = _line_of(root, ("kind",))
        # One error, not the other model's complaints about every field of another kind.
        raise SpecInvalid([SpecError(file, line, "kind", f"{shown}must be {' or '.join(_KINDS)}")])
    model = _KINDS[kind]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see CONTRACT section 1)"
            errors.append(SpecError(file, _line_of(root, loc), _field_name(loc), msg))
        raise SpecInvalid(errors) from exc


def check_unique(specs: dict[str, Document]) -> list[SpecError]:
    """Two files claiming one `metadata.name` are both in error (file -> document given;
    give documents of one kind: specs and fleets have a namespace each)."""
    by_name: dict[str, list[str]] = {}
    for file, sd in sorted(specs.items()):
        by_name.setdefault(sd.name, []).append(file)
    errors = []
    for name, files in by_name.items():
        if len(files) > 1:
            for file in files:
                others = ", ".join(f for f in files if f != file)
                errors.append(
                    SpecError(file, 1, "metadata.name", f"{name!r} is also used by {others}")
                )
    return errors
