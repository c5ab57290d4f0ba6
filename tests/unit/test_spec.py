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
