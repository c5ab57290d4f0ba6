"""spec.imagePolicy: exactly one source, the only select, branch or direct; every error names
file, line and field."""

from __future__ import annotations

import pytest

from reconciler import spec
from tests.unit.test_spec import BASE, FILE, NEXT, errors_of, parse


def test_absent_means_no_automation() -> None:
    assert parse(BASE).spec.image_policy is None


def test_ec2_policy_defaults_to_own_images_newest_and_a_branch() -> None:
    text = (
        BASE
        + '  imagePolicy:\n    ec2:\n      filters: {name: ["api-*"], "tag:release": [stable]}\n'
    )
    policy = parse(text).spec.image_policy
    assert policy is not None and policy.ec2 is not None
    assert policy.ec2.owners == ("self",)
    assert policy.ec2.filters == {"name": ("api-*",), "tag:release": ("stable",)}
    assert (policy.select, policy.commit, policy.ssm) == ("newest", "branch", None)


def test_ssm_policy_with_direct_commits() -> None:
    text = BASE + "  imagePolicy:\n    ssm: {parameter: /images/api/latest}\n    commit: direct\n"
    policy = parse(text).spec.image_policy
    assert policy is not None and policy.ssm is not None
    assert (policy.ssm.parameter, policy.commit) == ("/images/api/latest", "direct")


@pytest.mark.parametrize(
    ("extra", "line", "field", "message"),
    [
        ("    select: newest\n", NEXT, "spec.imagePolicy", "give exactly one of ec2 or ssm"),
        (
            "    ec2: {}\n    ssm: {parameter: /a}\n",
            NEXT,
            "spec.imagePolicy",
            "give exactly one of ec2 or ssm",
        ),
        ("    ec2: {owners: [bob]}\n", NEXT + 1, "spec.imagePolicy.ec2.owners", "'bob' is not"),
        ("    ec2: {owners: []}\n", NEXT + 1, "spec.imagePolicy.ec2.owners", "at least one owner"),
        (
            "    ec2:\n      filters:\n        name: []\n",
            NEXT + 2,
            "spec.imagePolicy.ec2.filters",
            "filter 'name' needs at least one value",
        ),
        ("    ssm: {parameter: images}\n", NEXT + 1, "spec.imagePolicy.ssm.parameter", "not a"),
        ("    ec2: {}\n    select: oldest\n", NEXT + 2, "spec.imagePolicy.select", "'newest'"),
        ("    ec2: {}\n    commit: push\n", NEXT + 2, "spec.imagePolicy.commit", "'branch'"),
        ("    ec2: {}\n    branch: x\n", NEXT + 2, "spec.imagePolicy.branch", "unknown key"),
    ],
)
def test_invalid_policies_are_located(extra: str, line: int, field: str, message: str) -> None:
    (error,) = errors_of(BASE + "  imagePolicy:\n" + extra)
    assert (error.file, error.line, error.field) == (FILE, line, field)
    assert message in error.message


def test_an_error_is_one_line() -> None:
    (error,) = errors_of(BASE + "  imagePolicy:\n    ec2: {owners: [bob]}\n")
    assert "\n" not in str(error)
    assert isinstance(error, spec.SpecError)
