"""The change-set guard's pure parts: what a template's verdicts depend on, and the judgement."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler import model, spec
from reconciler.aws import guard
from reconciler.embedded.emulator import template_body

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
SHIPPED: dict[str, Any] = json.loads(template_body())

YAML = """\
Parameters:
  LcImageId: {Type: String}
  Mode: {Type: String}
  Env: {Type: String}
  Unused: {Type: String}
Conditions:
  IsInstance: !Equals [!Ref Mode, instance]
  NotInstance: !Not [!Condition IsInstance]
Mappings:
  Sizes: {prod: {Type: m5.large}, dev: {Type: t3.micro}}
Resources:
  Lt:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: !Ref LcImageId
        InstanceType: !FindInMap [Sizes, !Ref Env, Type]
  Asg1:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: !Ref Lt, Version: !GetAtt Lt.LatestVersionNumber}
  Box:
    Type: AWS::EC2::Instance
    Condition: IsInstance
    Properties: {ImageId: !Sub "${LcImageId}"}
"""


def a_spec(**rollout: Any) -> spec.Spec:
    return spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": "api"},
            "spec": {
                "stackName": "Api",
                "region": "us-east-1",
                "image": "ami-12345678",
                "migration": {"check": "none"},
                "rollout": rollout,
            },
        }
    ).spec


def update(**values: str | None) -> model.StackUpdate:
    return model.StackUpdate("migrate", tuple(sorted(values.items())), "token")


def view(**params: str) -> model.StackView:
    return model.StackView("UPDATE_COMPLETE", params, T0)


def test_the_shipped_template_keys_on_key_name_and_its_groups_use_their_launch_templates() -> None:
    t = guard.parse(SHIPPED, T0)
    assert t.reads == {"KeyName"}  # the HasKeyName condition
    assert t.launch["Asg1"] == {"ApiLaunchTemplate"}
    assert t.launch["MigrationAsg"] == {"MigrationLaunchTemplate"}


def test_a_yaml_template_with_short_forms_reads_conditions_and_map_keys() -> None:
    t = guard.parse(YAML, T0)
    assert t.reads == {"Mode", "Env"}
    assert t.launch == {"Asg1": frozenset({"Lt"})}


def test_the_checksum_follows_the_template_not_its_key_order() -> None:
    same = json.loads(json.dumps(SHIPPED, sort_keys=True))
    assert guard.parse(SHIPPED, T0).checksum == guard.parse(same, None).checksum
    assert guard.parse(SHIPPED, T0).checksum != guard.parse(YAML, T0).checksum


@given(old=st.from_regex(r"ami-[0-9a-f]{8}", fullmatch=True), new=st.text(min_size=1))
def test_a_verdict_does_not_depend_on_the_new_images_id(old: str, new: str) -> None:
    t = guard.parse(YAML, T0)
    live = view(LcImageId=old, Mode="asg", Env="prod", Unused="x")
    a = guard._key(t, update(LcImageId=new + "a", Mode=None, Env=None, Unused=None), live)
    b = guard._key(t, update(LcImageId=new + "b", Mode=None, Env=None, Unused=None), live)
    assert a == b and a.changed == {"LcImageId"}


def test_a_verdict_depends_on_what_the_conditions_and_maps_read() -> None:
    t = guard.parse(YAML, T0)
    bump = update(LcImageId="ami-2", Mode=None, Env=None, Unused=None)
    asg = guard._key(t, bump, view(LcImageId="ami-1", Mode="asg", Env="prod", Unused="x"))
    box = guard._key(t, bump, view(LcImageId="ami-1", Mode="instance", Env="prod", Unused="x"))
    other = guard._key(t, bump, view(LcImageId="ami-1", Mode="asg", Env="prod", Unused="y"))
    assert asg != box  # the Box exists only in instance mode
    assert asg == other  # a parameter nothing conditional reads does not split verdicts


def test_which_parameters_change_is_part_of_the_key() -> None:
    t = guard.parse(SHIPPED, T0)
    live = view(LcImageId="ami-1", MigrationLcImageId="ami-1", KeyName="")
    phase1 = guard._key(t, update(MigrationLcImageId="ami-2", LcImageId=None), live)
    switch = guard._key(t, update(LcImageId="ami-2", MigrationLcImageId=None), live)
    assert phase1.changed == {"MigrationLcImageId"} and switch.changed == {"LcImageId"}
    assert phase1 != switch


INSTANCE = model.ResourceChange("Box", "AWS::EC2::Instance", "Modify", "True")
LT = model.ResourceChange("Lt", "AWS::EC2::LaunchTemplate", "Modify", "True")
GROUP = model.ResourceChange("Asg1", "AWS::AutoScaling::AutoScalingGroup", "Modify", "False")
DB = model.ResourceChange("Db", "AWS::RDS::DBInstance", "Modify", "Conditional")
GONE = model.ResourceChange("Queue", "AWS::SQS::Queue", "Remove", "False")
ADDED = model.ResourceChange("Topic", "AWS::SNS::Topic", "Add", "False")


def test_the_managed_groups_and_their_launch_templates_may_be_replaced() -> None:
    t = guard.parse(YAML, T0)
    v = guard._judge(a_spec(), t, (LT, GROUP, ADDED))
    assert v.ok and v.message() == "replaces only Lt"


def test_anything_else_replaced_conditionally_or_removed_is_refused_by_name() -> None:
    t = guard.parse(YAML, T0)
    v = guard._judge(a_spec(), t, (LT, INSTANCE, DB, GONE))
    assert [c.logical_id for c in v.refused] == ["Box", "Db", "Queue"]
    assert "Box (AWS::EC2::Instance): Modify, replacement True" in v.message()


def test_allow_replace_adds_logical_ids() -> None:
    t = guard.parse(YAML, T0)
    v = guard._judge(a_spec(allowReplace=["Box"]), t, (INSTANCE, DB))
    assert [c.logical_id for c in v.refused] == ["Db"]


def test_a_stack_updated_by_someone_else_is_read_again_ours_is_not() -> None:
    t = guard.parse(SHIPPED, T0)
    later = T0 + dt.timedelta(minutes=5)
    updated = model.StackView("UPDATE_COMPLETE", {}, later)
    assert not guard._changed_by_others(t, view(), None)  # same LastUpdatedTime
    assert guard._changed_by_others(t, updated, None)
    assert not guard._changed_by_others(t, updated, later + dt.timedelta(seconds=2))
    assert guard._changed_by_others(t, updated, later - dt.timedelta(hours=1))
