"""The images an `imagePolicy` finds (docs/contract.md, "Image policies and bump branches").

Rules of this file:
- One policy, one account and region: one paged DescribeImages (ec2), or one GetParameter
  and one DescribeImages of the ids it names (ssm). The caller shares the answer between
  every spec of the policy; the counted `Clients` count the calls and pace them.
- Only available images count: a pending or failed bake is not an image to roll out.
- An answer that does not read as images (a parameter naming no AMI id) is an `ImagesError`;
  AWS's own errors are left to the caller (`aws.ERRORS`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from reconciler import bump, spec
from reconciler.aws.clients import Clients

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


class ImagesError(Exception):
    """The policy's source answered with something that names no image."""


def find(
    clients: Clients, policy: spec.ImagePolicy, region: str, role_arn: str | None
) -> list[bump.Image]:
    """The available images the policy matches now, in the order AWS gave them."""
    ec2 = clients.ec2(region, role_arn)
    if policy.ec2 is not None:
        return _described(ec2, _ec2_query(policy.ec2))
    assert policy.ssm is not None  # the model holds exactly one of them
    answer = clients.ssm(region, role_arn).get_parameter(Name=policy.ssm.parameter)
    ids = _ami_ids(policy.ssm.parameter, answer["Parameter"].get("Value", ""))
    return _described(ec2, {"ImageIds": ids})


def _ec2_query(policy: spec.Ec2Policy) -> dict[str, Any]:
    filters = [{"Name": k, "Values": list(v)} for k, v in sorted(policy.filters.items())]
    return {"Owners": list(policy.owners), "Filters": filters}


def _ami_ids(parameter: str, value: str) -> list[str]:
    # A String holds one id; a StringList several, comma separated.
    ids = [part.strip() for part in value.split(",") if part.strip()]
    bad = [i for i in ids if not spec.AMI_RE.match(i)]
    if not ids or bad:
        raise ImagesError(f"parameter {parameter} holds {value!r}, not AMI ids")
    return ids


def _described(ec2: EC2Client, query: dict[str, Any]) -> list[bump.Image]:
    images = []
    for page in ec2.get_paginator("describe_images").paginate(**query):
        for found in page.get("Images", []):
            image = _image(found)
            if image is not None:
                images.append(image)
    return images


def _image(found: Any) -> bump.Image | None:
    if found.get("State", "available") != "available" or "CreationDate" not in found:
        return None
    return bump.Image(
        str(found["ImageId"]), str(found.get("Name", "")), _time(found["CreationDate"])
    )


def _time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ImagesError(f"CreationDate {value!r} is not a time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
