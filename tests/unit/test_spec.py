"""spec.parse: a table of valid and invalid documents, each error located by file, line, field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from reconciler import spec

FILE = "deploy-specs/a.yaml"
BASE = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: biglearn-api
spec:
  stackName: Stack1
  region: us-east-1
  image: ami-37884c4d
"""
NEXT = 9  # the line of the first thing appended to BASE


def parse(text: str) -> spec.StackDeployment:
    return spec.parse(text, FILE)


def errors_of(text: str) -> list[spec.SpecError]:
    with pytest.raises(spec.SpecInvalid) as caught:
        parse(text)
    return caught.value.errors


Check = Callable[[spec.Spec], bool]

VALID: list[tuple[str, str, Check]] = [
    ("defaults", "", lambda s: s.capacity.api == 1 and s.migration.check == "none"),
    ("capacity live", "  capacity:\n    api: live\n", lambda s: s.capacity.api == "live"),
    ("capacity zero", "  capacity:\n    api: 0\n", lambda s: s.capacity.api == 0),
    ("90s", "  interval: 90s\n", lambda s: s.interval == dt.timedelta(seconds=90)),
    ("30m", "  interval: 30m\n", lambda s: s.interval == dt.timedelta(minutes=30)),
    ("2h", "  interval: 2h\n", lambda s: s.interval == dt.timedelta(hours=2)),
    ("1h30m", "  interval: 1h30m\n", lambda s: s.interval == dt.timedelta(minutes=90)),
    ("paused false", "  paused: false\n", lambda s: s.paused is None),
    ("paused true", "  paused: true\n", lambda s: s.paused is not None and s.paused.until is None),
    (
        "paused until with offset",
        "  paused: {reason: incident 42, until: 2026-12-01T01:00:00+01:00}\n",
        lambda s: (
            s.paused is not None
            and s.paused.reason == "incident 42"
            and s.paused.until == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        ),
    ),
    (
        "s3 location",
        "  migration:\n    check: s3\n    location: s3://deploy-status/biglearn-api\n",
        lambda s: s.migration.location == "s3://deploy-status/biglearn-api",
    ),
    (
        "ssm location",
        "  migration:\n    check: ssm\n    location: ssm:/deploy/status\n",
        lambda s: s.migration.check == "ssm",
    ),
    (
        "parameters become strings",
        "  parameters:\n    Port: 80\n    Debug: true\n    Ratio: 0.5\n    EnvName: blah\n",
        lambda s: (
            s.parameters == {"Port": "80", "Debug": "true", "Ratio": "0.5", "EnvName": "blah"}
        ),
    ),
    (
        "renamed managed parameter may not be pinned, the old name may",
        "  parameterNames:\n    apiImage: ImageId\n  parameters:\n    LcImageId: x\n",
        lambda s: s.parameters == {"LcImageId": "x"},
    ),
]


@pytest.mark.parametrize(
    ("extra", "check"), [(e, c) for _, e, c in VALID], ids=[v[0] for v in VALID]
)
def test_valid_documents(extra: str, check: Check) -> None:
    """Each valid document parses and its fields carry the expected values."""
    deployment = parse(BASE + extra)
    assert deployment.name == "biglearn-api"
    assert check(deployment.spec)


# (case, appended text, line, field, part of the message)
INVALID: list[tuple[str, str, int, str, str]] = [
    ("unknown key", "  regoin: us-east-1\n", NEXT, "spec.regoin", "unknown key"),
    ("negative capacity", "  capacity:\n    api: -1\n", NEXT + 1, "spec.capacity.api", ">= 0"),
    ("capacity word", "  capacity:\n    api: all\n", NEXT + 1, "spec.capacity.api", "live"),
    ("capacity bool", "  capacity:\n    api: true\n", NEXT + 1, "spec.capacity.api", ">= 0"),
    ("migration zero", "  capacity:\n    migration: 0\n", NEXT + 1, "spec.capacity.migration", "1"),
    ("duration no unit", "  interval: 30\n", NEXT, "spec.interval", "unit"),
    ("duration zero", "  interval: 0s\n", NEXT, "spec.interval", "longer than zero"),
    ("duration days", "  interval: 1d\n", NEXT, "spec.interval", "not a duration"),
    ("duration order", "  interval: 30m1h\n", NEXT, "spec.interval", "not a duration"),
    ("duration empty", "  interval: ''\n", NEXT, "spec.interval", "not a duration"),
    ("duration float", "  interval: 1.5\n", NEXT, "spec.interval", "duration"),
    (
        "paused naive time",
        "  paused: {reason: x, until: 2026-12-01T00:00:00}\n",
        NEXT,
        "spec.paused.until",
        "offset",
    ),
    (
        "paused naive time string",
        "  paused:\n    until: '2026-12-01T00:00:00'\n",
        NEXT + 1,
        "spec.paused.until",
        "offset",
    ),
    ("paused date only", "  paused: {until: 2026-12-01}\n", NEXT, "spec.paused.until", "RFC 3339"),
    ("paused word", "  paused: yes please\n", NEXT, "spec.paused", ""),
    ("paused unknown key", "  paused: {why: x}\n", NEXT, "spec.paused.why", "unknown key"),
    (
        "s3 needs location",
        "  migration:\n    check: s3\n",
        NEXT,
        "spec.migration",
        "location is required",
    ),
    (
        "s3 with ssm location",
        "  migration:\n    check: s3\n    location: ssm:/x\n",
        NEXT,
        "spec.migration",
        "s3://bucket/prefix",
    ),
    (
        "ssm with s3 location",
        "  migration:\n    check: ssm\n    location: s3://b/p\n",
        NEXT,
        "spec.migration",
        "ssm:/path/prefix",
    ),
    ("unknown check", "  migration:\n    check: http\n", NEXT + 1, "spec.migration.check", ""),
    ("region", "  region2: x\n", NEXT, "spec.region2", "unknown key"),
    ("role arn", "  roleArn: admin\n", NEXT, "spec.roleArn", "pattern"),
    (
        "parameter list",
        "  parameters:\n    Subnets: [a, b]\n",
        NEXT + 1,
        "spec.parameters.Subnets",
        "",
    ),
]


@pytest.mark.parametrize(
    ("extra", "line", "field", "message"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_documents(extra: str, line: int, field: str, message: str) -> None:
    """Each invalid document fails with an error at the right file, line and field."""
    errors = errors_of(BASE + extra)
    located = [(e.file, e.line, e.field) for e in errors]
    assert (FILE, line, field) in located
    assert any(message in e.message for e in errors), errors


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        ("ami-37884c4d", "ami-3788", 8, "spec.image"),
        ("ami-37884c4d", "AMI-37884C4D", 8, "spec.image"),
        ("ami-37884c4d", "ami-37884c4dx", 8, "spec.image"),
        ("name: biglearn-api", "name: Biglearn_API", 4, "metadata.name"),
        ("name: biglearn-api", "name: " + "a" * 64, 4, "metadata.name"),
        ("apiVersion: reconciler/v1", "apiVersion: reconciler/v2", 1, "apiVersion"),
        ("kind: StackDeployment", "kind: Stack", 2, "kind"),
        ("region: us-east-1", "region: useast1", 7, "spec.region"),
        ("  stackName: Stack1\n", "", 5, "spec.stackName"),
    ],
)
def test_invalid_fields_of_the_base_document(old: str, new: str, line: int, field: str) -> None:
    """Malformed AMI ids, names, versions and missing required keys point at their line."""
    errors = errors_of(BASE.replace(old, new))
    assert (FILE, line, field) in [(e.file, e.line, e.field) for e in errors]


def test_ami_ids_of_8_and_17_hex_digits_are_valid() -> None:
    """Both AMI id lengths AWS has issued parse."""
    assert parse(BASE.replace("ami-37884c4d", "ami-0123456789abcdef0")).spec.image.endswith("ef0")


def test_malformed_ami_message_names_the_value() -> None:
    """The AMI error says what was found and what an AMI id looks like."""
    (error,) = errors_of(BASE.replace("ami-37884c4d", "ami-xyz"))
    assert "'ami-xyz'" in error.message and "AMI id" in error.message


def test_duplicate_keys_are_refused_at_the_second_key() -> None:
    """YAML would keep the last of two equal keys silently; the spec refuses them."""
    (error,) = errors_of(BASE + "  region: us-west-2\n")
    assert (error.file, error.line, error.field) == (FILE, NEXT, "")
    assert "duplicate key 'region'" in error.message


def test_multiple_documents_are_refused_at_the_second() -> None:
    """One document per file: a second one is an error at its `---` line."""
    (error,) = errors_of(BASE + "---\n" + BASE)
    assert (error.file, error.line, error.field) == (FILE, NEXT, "")
    assert "document" in error.message


def test_invalid_yaml_reports_its_line() -> None:
    """A YAML syntax error is located at the line where the parser stopped."""
    (error,) = errors_of(BASE + "  interval: 30s\n  rollout: a: b\n  region: x\n")
    assert (error.file, error.field) == (FILE, "")
    assert error.line == NEXT + 1
    assert error.message.startswith("invalid YAML")


def test_empty_file_and_non_mapping_are_refused() -> None:
    """An empty file or a list is not a spec."""
    assert "one YAML document" in errors_of("")[0].message
    assert "mapping" in errors_of("- a\n")[0].message


def test_pinning_a_managed_parameter_is_refused() -> None:
    """`parameters` may not set what image and capacity control."""
    errors = errors_of(BASE + "  parameters:\n    LcImageId: ami-1\n    Asg1DesiredCapacity: 3\n")
    (error,) = errors
    assert error.file == FILE and error.field in ("spec", "spec.parameters")
    assert "Asg1DesiredCapacity" in error.message and "LcImageId" in error.message


def test_pinning_a_renamed_managed_parameter_is_refused() -> None:
    """The refusal follows parameterNames, not only the defaults."""
    text = BASE + "  parameterNames:\n    apiImage: ImageId\n  parameters:\n    ImageId: x\n"
    (error,) = errors_of(text)
    assert "ImageId" in error.message


def test_too_large_and_non_utf8_files_are_refused() -> None:
    """Size is checked before parsing; bytes must be UTF-8."""
    (error,) = errors_of("#" * (spec.MAX_SPEC_BYTES + 1))
    assert (error.line, error.field) == (1, "")
    with pytest.raises(spec.SpecInvalid, match="UTF-8"):
        spec.parse(BASE.encode() + b"# \xff\n", FILE)


def test_several_errors_are_all_reported() -> None:
    """Every invalid field is reported at once, each with its own line."""
    text = BASE.replace("ami-37884c4d", "ami-bad") + "  interval: soon\n"
    located = {(e.line, e.field) for e in errors_of(text)}
    assert {(8, "spec.image"), (NEXT, "spec.interval")} <= located


def test_error_string_is_file_line_field_message() -> None:
    """`reconciler validate` prints errors as file:line: field: message."""
    assert str(spec.SpecError("f.yaml", 3, "spec.image", "bad")) == "f.yaml:3: spec.image: bad"
    assert str(spec.SpecError("f.yaml", 1, "", "bad")) == "f.yaml:1: (document): bad"


def test_durations_round_trip() -> None:
    """format_duration is the inverse of parse_duration."""
    for text in ("90s", "30m", "2h", "1h30m", "1h0m5s"):
        delta = spec.parse_duration(text)
        assert spec.parse_duration(spec.format_duration(delta)) == delta
    assert spec.format_duration(dt.timedelta(minutes=90)) == "1h30m"


def test_check_unique_names_both_files() -> None:
    """Two files with one metadata.name are both errors, each naming the other."""
    deployment = parse(BASE)
    errors = spec.check_unique({"a.yaml": deployment, "b.yaml": deployment})
    assert [(e.file, e.field) for e in errors] == [
        ("a.yaml", "metadata.name"),
        ("b.yaml", "metadata.name"),
    ]
    assert "b.yaml" in errors[0].message and "a.yaml" in errors[1].message
    assert spec.check_unique({"a.yaml": deployment}) == []


# -- issue 13: labels, rollout.alarms and bake, and `kind: Fleet` documents -------------------

LABELLED = BASE.replace("  name: biglearn-api\n", "  name: biglearn-api\n  labels:\n")
LABEL_LINE = 6  # the first label in LABELLED
FLEET = """\
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
"""
FLEET_NEXT = 8  # the line of the first thing appended to FLEET


def test_labels_alarms_and_bake_parse() -> None:
    """Labels in Kubernetes' spelling (a prefixed key, an empty value), five distinct alarms
    and a bake that watches them are valid."""
    text = (
        LABELLED.replace("  labels:\n", "  labels:\n    app: api\n    example.com/tier: ''\n")
        + "  rollout:\n    alarms: [a, b, c, d, 'api 5xx > 1%']\n    bake: 10m\n"
    )
    deployment = parse(text)
    assert deployment.metadata.labels == {"app": "api", "example.com/tier": ""}
    assert deployment.spec.rollout.alarms == ("a", "b", "c", "d", "api 5xx > 1%")
    assert deployment.spec.rollout.bake == dt.timedelta(minutes=10)


def test_a_fleet_parses_with_its_defaults() -> None:
    """The issue's example document; a step without maxConcurrent takes 1."""
    text = FLEET + (
        "  steps:\n    - matchLabels: {tier: canary}\n    - maxConcurrent: 25%\n"
        "  bake: 10m\n  failureBudget: 2\n"
    )
    fleet = spec.parse_document(text, FILE)
    assert isinstance(fleet, spec.FleetDeployment)
    assert fleet.name == "api" and fleet.spec.selector.match_labels == {"app": "api"}
    assert [s.max_concurrent for s in fleet.spec.steps] == [1, "25%"]
    assert fleet.spec.bake == dt.timedelta(minutes=10) and fleet.spec.failure_budget == 2
    bare = spec.parse_document(FLEET, FILE)
    assert isinstance(bare, spec.FleetDeployment)
    assert (bare.spec.steps, bare.spec.bake, bare.spec.failure_budget) == ((), None, 0)


# (case, document, line, field, part of the message): each is the document's only error.
INVALID_ISSUE_13: list[tuple[str, str, int, str, str]] = [
    (
        "label key",
        LABELLED.replace("  labels:\n", "  labels:\n    app: api\n    'bad key!': x\n"),
        LABEL_LINE + 1,
        "metadata.labels.bad key!",
        "label key 'bad key!'",
    ),
    (
        "label value",
        LABELLED.replace("  labels:\n", "  labels:\n    app: -api-\n"),
        LABEL_LINE,
        "metadata.labels.app",
        "'-api-' must be at most 63",
    ),
    (
        "label value not a string",
        LABELLED.replace("  labels:\n", "  labels:\n    replicas: 3\n"),
        LABEL_LINE,
        "metadata.labels.replicas",
        "string",
    ),
    (
        "six alarms",
        BASE + "  rollout:\n    verifyHealth: true\n    alarms: [a, b, c, d, e, f]\n",
        NEXT + 2,
        "spec.rollout.alarms",
        "at most 5 alarms",
    ),
    (
        "an alarm twice",
        BASE + "  rollout:\n    alarms:\n      - a\n      - b\n      - a\n",
        NEXT + 1,
        "spec.rollout.alarms",
        "names 'a' more than once",
    ),
    (
        "bake without alarms",
        BASE + "  rollout:\n    timeout: 45m\n    bake: 10m\n",
        NEXT + 2,
        "spec.rollout.bake",
        "name at least one alarm",
    ),
    (
        "maxConcurrent 0",
        FLEET + "  steps:\n    - matchLabels: {tier: canary}\n      maxConcurrent: 0\n",
        FLEET_NEXT + 2,
        "spec.steps.0.maxConcurrent",
        "0 must be an integer >= 1 or a percentage",
    ),
    (
        "maxConcurrent 150%",
        FLEET + "  steps:\n    - maxConcurrent: 1\n      matchLabels: {a: b}\n"
        "    - maxConcurrent: 150%\n",
        FLEET_NEXT + 3,
        "spec.steps.1.maxConcurrent",
        "'150%' must be",
    ),
    (
        "maxConcurrent abc",
        FLEET + "  steps:\n    - maxConcurrent: abc\n",
        FLEET_NEXT + 1,
        "spec.steps.0.maxConcurrent",
        "'abc' must be",
    ),
    (
        "maxConcurrent true",
        FLEET + "  steps:\n    - maxConcurrent: true\n",
        FLEET_NEXT + 1,
        "spec.steps.0.maxConcurrent",
        "must be an integer >= 1",
    ),
    (
        "fleet without selector",
        FLEET.replace("  selector:\n    matchLabels: {app: api}\n", "  bake: 10m\n"),
        5,
        "spec.selector",
        "required",
    ),
    (
        "fleet with an empty selector",
        FLEET.replace("{app: api}", "{}"),
        7,
        "spec.selector.matchLabels",
        "at least one label",
    ),
    (
        "failureBudget -1",
        FLEET + "  bake: 5m\n  failureBudget: -1\n",
        FLEET_NEXT + 1,
        "spec.failureBudget",
        "greater than or equal to 0",
    ),
    (
        "unknown key in a fleet",
        FLEET + "  maxConcurent: 2\n",
        FLEET_NEXT,
        "spec.maxConcurent",
        "unknown key",
    ),
    (
        "labels on a fleet",
        FLEET.replace("  name: api\n", "  name: api\n  labels: {app: api}\n"),
        5,
        "metadata.labels",
        "unknown key",
    ),
    (
        "a catch-all step before another",
        FLEET + "  steps:\n    - maxConcurrent: 1\n    - matchLabels: {tier: canary}\n",
        FLEET_NEXT,
        "spec.steps",
        "only the last step may omit matchLabels",
    ),
    (
        "kind Flet",
        FLEET.replace("kind: Fleet", "kind: Flet"),
        2,
        "kind",
        "'Flet' is not a kind: must be StackDeployment or Fleet",
    ),
    (
        "kind not a string",
        BASE.replace("kind: StackDeployment", "kind: [Fleet]"),
        2,
        "kind",
        "must be StackDeployment or Fleet",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [case[1:] for case in INVALID_ISSUE_13],
    ids=[case[0] for case in INVALID_ISSUE_13],
)
def test_invalid_fields_of_issue_13(text: str, line: int, field: str, message: str) -> None:
    """Each document fails with exactly one error, at the field's own line."""
    with pytest.raises(spec.SpecInvalid) as caught:
        spec.parse_document(text, FILE)
    errors = caught.value.errors
    assert [(e.file, e.line, e.field) for e in errors] == [(FILE, line, field)], errors
    assert message in errors[0].message, errors


def test_parse_refuses_a_fleet() -> None:
    """`parse` is for specs only: a fleet document is an error at its kind."""
    (error,) = errors_of(FLEET)
    assert (error.line, error.field) == (2, "kind")
    assert "not a Fleet" in error.message


@pytest.mark.parametrize(
    ("max_concurrent", "members", "limit"),
    [(1, 10, 1), (3, 2, 3), ("25%", 10, 2), ("25%", 3, 1), ("50%", 5, 2), ("100%", 7, 7)],
)
def test_a_percentage_rounds_down_to_at_least_one(
    max_concurrent: int | str, members: int, limit: int
) -> None:
    """maxConcurrent of N% lets N% of the step's members (rounded down, at least 1) go at once."""
    step = spec.FleetStep.model_validate({"maxConcurrent": max_concurrent})
    assert step.limit(members) == limit


def test_a_member_joins_the_first_step_whose_labels_it_has() -> None:
    """Steps are tried in order; a member matching none is in the implicit last step."""
    fleet = spec.FleetSpec.model_validate(
        {
            "selector": {"matchLabels": {"app": "api"}},
            "steps": [{"matchLabels": {"tier": "canary"}}, {"matchLabels": {"region": "eu"}}],
        }
    )
    assert fleet.step_of({"app": "api", "tier": "canary", "region": "eu"}) == 0
    assert fleet.step_of({"app": "api", "region": "eu"}) == 1
    assert fleet.step_of({"app": "api", "region": "us"}) == 2
    assert fleet.step(2) == spec.LAST_STEP
