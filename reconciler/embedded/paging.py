"""Paging of DescribeAutoScalingGroups that survives a group going away between pages.

moto's NextToken is the last group's name and it resumes at that name's index: when the
group is deleted before the next page is asked for (moto replaces a group on every image
change), the index lookup raises and the server answers 500 with an HTML page. AWS's token
is opaque and survives it. Here the groups are listed in name order and a page resumes
after the token's name in that order, whether or not the group still exists.
"""

from __future__ import annotations

import bisect

from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult

_MAX_RECORDS = 100  # AWS's limit on MaxRecords


def describe_auto_scaling_groups(self: AutoScalingResponse) -> ActionResult:
    names = self._get_param("AutoScalingGroupNames", [])
    token = self._get_param("NextToken")
    filters = self._get_param("Filters", [])
    groups = sorted(
        self.autoscaling_backend.describe_auto_scaling_groups(names, filters=filters),
        key=lambda group: group.name,
    )
    start = bisect.bisect_right([group.name for group in groups], token) if token else 0
    max_records = self._get_int_param("MaxRecords", 50)
    if max_records > _MAX_RECORDS:
        raise ValueError(f"MaxRecords {max_records} is over {_MAX_RECORDS}")
    page = groups[start : start + max_records]
    more = len(groups) > start + max_records
    return ActionResult({"AutoScalingGroups": page, "NextToken": page[-1].name if more else None})


def install() -> None:
    """Replace moto's handler; idempotent, and harmless to moto's own tests of the emulator."""
    AutoScalingResponse.describe_auto_scaling_groups = describe_auto_scaling_groups  # type: ignore[method-assign]
