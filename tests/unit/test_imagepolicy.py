"""imagepolicy: which specs a found image bumps, the policy's key, and the `image:` line edit."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import bump, imagepolicy, spec

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
OLD, MID, NEW = "ami-00000001", "ami-00000002", "ami-00000003"


def image(ami: str, days: int) -> bump.Image:
    return bump.Image(ami, f"api-{ami}", T0 + dt.timedelta(days=days))


def policy(**fields: object) -> spec.ImagePolicy:
    return spec.ImagePolicy.model_validate({"ec2": {"filters": {"name": ["api-*"]}}, **fields})


def deployment(name: str, ami: str, pol: spec.ImagePolicy | None, region: str = "us-east-1"):  # type: ignore[no-untyped-def]
    body = {"stackName": name.upper(), "region": region, "image": ami}
    if pol is not None:
        body["imagePolicy"] = pol.model_dump(by_alias=True)
    return spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def group(*members: tuple[str, str]) -> imagepolicy.Group:
    (found,) = imagepolicy.groups((deployment(n, a, policy()), f"{n}.yaml") for n, a in members)
    return found


def test_a_newer_image_bumps_the_spec() -> None:
    verdict = imagepolicy.judge(group(("a", OLD)), [image(OLD, 0), image(NEW, 2)])
    assert (verdict.result, verdict.image, [m.name for m in verdict.bumped]) == (
        "newer",
        image(NEW, 2),
        ["a"],
    )


def test_the_specs_own_image_bumps_nothing() -> None:
    verdict = imagepolicy.judge(group(("a", NEW)), [image(OLD, 0), image(NEW, 2)])
    assert (verdict.result, verdict.bumped) == ("current", ())


def test_an_older_match_bumps_nothing() -> None:
    # The spec runs MID (day 1); the only other match is older.
    verdict = imagepolicy.judge(group(("a", MID)), [image(OLD, 0), image(MID, 1)])
    assert (verdict.result, verdict.bumped) == ("current", ())


def test_a_spec_image_the_policy_does_not_find_makes_any_match_newer() -> None:
    verdict = imagepolicy.judge(group(("a", "ami-0000000f")), [image(OLD, 0)])
    assert (verdict.result, [m.name for m in verdict.bumped]) == ("newer", ["a"])


def test_no_match_is_none() -> None:
    assert imagepolicy.judge(group(("a", OLD)), []).result == "none"


def test_specs_sharing_a_policy_are_one_group_keyed_by_its_hash() -> None:
    shared = group(("a", OLD), ("b", MID), ("c", NEW))
    assert shared.branch_key == shared.key and len(shared.key) == imagepolicy.KEY_LENGTH
    verdict = imagepolicy.judge(shared, [image(OLD, 0), image(MID, 1), image(NEW, 2)])
    assert [m.name for m in verdict.bumped] == ["a", "b"]


def test_a_policy_with_one_spec_is_keyed_by_the_specs_name() -> None:
    assert group(("a", OLD)).branch_key == "a"


def test_the_key_ignores_spelling_but_not_region_role_or_filters() -> None:
    spelt = spec.ImagePolicy.model_validate(
        {"select": "newest", "ec2": {"owners": ["self"], "filters": {"name": ["api-*"]}}}
    )
    key = imagepolicy.policy_key(policy(), "us-east-1", None)
    assert imagepolicy.policy_key(spelt, "us-east-1", None) == key
    assert imagepolicy.policy_key(policy(), "eu-west-1", None) != key
    role = "arn:aws:iam::123456789012:role/deploy"
    assert imagepolicy.policy_key(policy(), "us-east-1", role) != key
    other = spec.ImagePolicy.model_validate({"ec2": {"filters": {"name": ["web-*"]}}})
    assert imagepolicy.policy_key(other, "us-east-1", None) != key


def test_specs_without_a_policy_or_in_other_regions_are_apart() -> None:
    found = imagepolicy.groups(
        [
            (deployment("a", OLD, policy()), "a.yaml"),
            (deployment("b", OLD, policy(), "eu-west-1"), "b.yaml"),
            (deployment("c", OLD, None), "c.yaml"),
        ]
    )
    assert sorted(m.name for g in found for m in g.members) == ["a", "b"]
    assert len(found) == 2


def test_superseded_branches_are_the_keys_other_images() -> None:
    made = bump.Bump("a", image(NEW, 2), ("a",), "main", "c" * 40)
    refs = {
        "reconciler/bump/a/ami-00000001": "1" * 40,
        made.branch: "c" * 40,
        "reconciler/bump/ab/ami-00000001": "2" * 40,
    }
    assert imagepolicy.superseded(refs, made) == ["reconciler/bump/a/ami-00000001"]


def test_the_message_names_the_amis_name_id_and_creation_date_and_the_specs() -> None:
    text = imagepolicy.message(image(NEW, 2), group(("a", OLD)).members)
    assert text.splitlines()[0] == f"Bump a to {NEW} (api-{NEW})"
    assert "created 2026-11-03T00:00:00Z" in text and f"a (a.yaml): {OLD} -> {NEW}" in text


SPEC_FILE = """\
# the API servers
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: api   # image: ami-00000001 in a comment stays
  labels: {image: ami-00000001}
spec:
  stackName: Api
  region: us-east-1
  image: "ami-00000001"    # bumped by the image policy
  parameters:
    Other: ami-00000001
"""


def test_the_edit_changes_only_the_image_value_keeping_quotes_and_comments() -> None:
    edited = imagepolicy.replace_image(SPEC_FILE, NEW)
    assert edited == SPEC_FILE.replace('"ami-00000001"', f'"{NEW}"')
    assert spec.parse(edited, "f").spec.image == NEW


def test_the_edit_finds_the_deployment_among_several_documents() -> None:
    fleet = "apiVersion: reconciler/v1\nkind: Fleet\nspec:\n  image: ami-00000001\n"
    text = fleet + "---\n" + SPEC_FILE.replace('"ami-00000001"', "'ami-00000001'")
    edited = imagepolicy.replace_image(text, NEW)
    assert edited == fleet + "---\n" + SPEC_FILE.replace('"ami-00000001"', f"'{NEW}'")


@pytest.mark.parametrize(
    "text",
    ["kind: StackDeployment\nspec: {}\n", "spec:\n  image: [a]\n", "a: [\n", "kind: Fleet\n"],
)
def test_the_edit_refuses_a_file_without_one_image_scalar(text: str) -> None:
    with pytest.raises(imagepolicy.EditError):
        imagepolicy.replace_image(text, NEW)


amis = st.integers(0, 0xFFFFFFFF).map(lambda n: f"ami-{n:08x}")
images = st.lists(
    st.builds(lambda a, d: bump.Image(a, a, T0 + dt.timedelta(hours=d)), amis, st.integers(0, 500)),
    max_size=8,
    unique_by=lambda i: i.id,
)


@given(images, amis)
def test_a_bump_is_always_to_the_newest_match_and_never_backwards(
    found: list[bump.Image], current: str
) -> None:
    verdict = imagepolicy.judge(group(("a", current)), found)
    if not verdict.bumped:
        return
    assert verdict.image is not None and verdict.image.id != current
    assert all(verdict.image.created >= i.created for i in found)
    mine = [i for i in found if i.id == current]
    assert not mine or mine[0].created < verdict.image.created


@given(images, amis)
def test_after_the_bump_is_merged_the_same_images_bump_nothing(
    found: list[bump.Image], current: str
) -> None:
    verdict = imagepolicy.judge(group(("a", current)), found)
    if verdict.image is not None:
        again = imagepolicy.judge(group(("a", verdict.image.id)), found)
        assert again.bumped == ()


@given(st.sampled_from(["'", '"', ""]), st.text(" ", max_size=4), amis)
def test_the_edit_reads_back_and_keeps_everything_else(quote: str, pad: str, new: str) -> None:
    text = SPEC_FILE.replace('"ami-00000001"', f"{quote}ami-00000001{quote}{pad}")
    edited = imagepolicy.replace_image(text, new)
    assert spec.parse(edited, "f").spec.image == new
    assert edited.replace(new, "ami-00000001", 1) == text


def test_an_image_created_at_the_same_moment_as_the_specs_is_not_newer() -> None:
    verdict = imagepolicy.judge(group(("a", OLD)), [image(OLD, 1), image(MID, 1)])
    assert (verdict.result, verdict.bumped) == ("current", ())


def test_image_of_reads_the_value_the_file_holds() -> None:
    assert imagepolicy.image_of(SPEC_FILE) == "ami-00000001"
