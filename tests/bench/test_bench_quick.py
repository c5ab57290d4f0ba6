"""The benchmark's quick mode, in `make test-slow` (a benchmark, about 20 s): counts and ratios
only, never times."""

from __future__ import annotations

import pytest

from tests.bench import harness


@pytest.mark.slow
def test_quick_benchmark_keeps_the_api_budget() -> None:
    row = harness.measure(10, harness.QUICK, rate="100/s", peer_size=0)
    # Batching: one paged DescribeStacks serves all ten idle stacks (5 calls each before),
    # and one paged DescribeAutoScalingGroups judges their drift: 0.2 when the two listings
    # age out once per pass, a little more when a step's jitter straddles one.
    assert row["passes"] >= 1
    assert row["req_per_stack_pass"] <= 0.3
    # Both phases of ten stacks, each polled with backoff: a bounded number of calls.
    assert row["rollout_req_per_stack"] < 30
    assert row["rollout_throttled"] == 0
    assert row["peak_rss_mb"] > 0
