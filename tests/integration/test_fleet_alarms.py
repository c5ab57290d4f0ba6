"""Fleet.with_alarms(): rollout.alarms from DescribeAlarms reads shared by every spec of an
account, reused while fresh, paced like the other shared reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from reconciler import model, spec
from reconciler.aws.batch import NotYet
from reconciler.aws.clients import Clients
from reconciler.aws.fleet import ALARMS_FORGOTTEN, Fleet
from tests.integration.conftest import REGION, Stack

FRESH = dt.timedelta(seconds=1)
NOTHING = model.Observed(stack=None)


class Clock:
    """A monotonic clock the test moves; requests may move it too (a slow read)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_spec(stack_name: str, *alarms: str) -> spec.Spec:
    return spec.Spec.model_validate(
        {
            "stackName": stack_name,
            "region": REGION,
            "image": "ami-12345678",
            "rollout": {"alarms": list(alarms)},
        }
    )


def put_alarm(name: str, state: str | None = None) -> str:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="HTTPCode_Backend_5XX",
        Namespace="AWS/ELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    if state is not None:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    arn: str = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]
    return arn


def alarm_calls(requests: list[tuple[str, str, str]]) -> int:
    return sum(1 for call in requests if call[:2] == ("cloudwatch", "DescribeAlarms"))


def sent_names(clients: Clients) -> list[list[str]]:
    """The AlarmNames of every DescribeAlarms `clients` sends from now on."""
    sent: list[list[str]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        assert params["AlarmTypes"] == ["MetricAlarm", "CompositeAlarm"]
        sent.append(list(params["AlarmNames"]))

    clients.cloudwatch(REGION).meta.events.register(
        "provide-client-params.cloudwatch.DescribeAlarms", record
    )
    return sent


def test_alarms_by_name_with_arn_and_state(clients: Clients) -> None:
    """Each name the spec lists maps to its alarm; a name CloudWatch does not know is absent."""
    errors = put_alarm("api-5xx", "ALARM")
    latency = put_alarm("api-latency", "OK")
    put_alarm("not-ours", "ALARM")
    sp = make_spec("Stack1", "api-5xx", "api-latency", "no-such-alarm")
    found = Fleet(clients, Clock()).with_alarms(sp, NOTHING, FRESH).alarms
    assert found == {
        "api-5xx": model.Alarm("api-5xx", errors, "ALARM"),
        "api-latency": model.Alarm("api-latency", latency, "OK"),
    }


def test_a_spec_without_alarms_reads_nothing(
    clients: Clients, requests: list[tuple[str, str, str]]
) -> None:
    observed = Fleet(clients, Clock()).with_alarms(make_spec("Stack1"), NOTHING, FRESH)
    assert observed.alarms == {}
    assert requests == []


def test_specs_share_one_read_while_it_is_fresh(
    clients: Clients, requests: list[tuple[str, str, str]]
) -> None:
    """Six specs asking within one tick cost no read beyond the first that covered their
    names; once that read is older than `fresh`, one request serves all six again, with
    states as they are now."""
    put_alarm("shared", "OK")
    for i in range(6):
        put_alarm(f"own-{i}", "OK")
    specs = [make_spec(f"Stack{i}", "shared", f"own-{i}") for i in range(6)]
    clock = Clock()
    fleet = Fleet(clients, clock)
    for sp in specs:
        fleet.with_alarms(sp, NOTHING, FRESH)
    first_round = alarm_calls(requests)
    assert 1 <= first_round <= len(specs)  # each spec's first ask at most one request

    clock.now += 0.5
    for sp in specs:
        fleet.with_alarms(sp, NOTHING, FRESH)
    assert alarm_calls(requests) == first_round  # fresh: nothing read

    boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
        AlarmName="shared", StateValue="ALARM", StateReason="test"
    )
    clock.now += 1.0
    seen = [fleet.with_alarms(sp, NOTHING, FRESH).alarms for sp in specs]
    assert alarm_calls(requests) == first_round + 1
    assert all(alarms is not None and alarms["shared"].state == "ALARM" for alarms in seen)


def test_specs_observed_in_a_tick_share_their_first_read(
    make_stack: Callable[..., Stack],
    clients: Clients,
    requests: list[tuple[str, str, str]],
) -> None:
    """The engine observes every spec that steps before a rule asks for alarms: by then the
    fleet knows every spec's names, and the first ask reads them all at once."""
    stacks = [make_stack(f"Fleet{i}") for i in range(4)]
    for i in range(4):
        put_alarm(f"own-{i}", "OK")
    specs = [make_spec(s.name, f"own-{i}") for i, s in enumerate(stacks)]
    fleet = Fleet(clients, Clock())
    for sp in specs:
        fleet.observe(sp, sp.image, FRESH, managed=len(specs))
    found = [fleet.with_alarms(sp, NOTHING, FRESH).alarms for sp in specs]
    assert alarm_calls(requests) == 1
    assert [sorted(a or {}) for a in found] == [[f"own-{i}"] for i in range(4)]


def test_more_than_a_hundred_names_are_read_a_hundred_at_a_time(clients: Clients) -> None:
    specs = [make_spec(f"Stack{i}", *(f"a-{i}-{j}" for j in range(5))) for i in range(21)]
    clock = Clock()
    fleet = Fleet(clients, clock)
    for sp in specs:
        fleet.with_alarms(sp, NOTHING, FRESH)
    sent = sent_names(clients)
    clock.now += 2.0
    fleet.with_alarms(specs[0], NOTHING, FRESH)
    assert [len(names) for names in sent] == [100, 5]
    assert {n for names in sent for n in names} == {n for sp in specs for n in sp.rollout.alarms}


def test_names_nobody_asked_for_lately_are_not_read(clients: Clients) -> None:
    clock = Clock()
    fleet = Fleet(clients, clock)
    fleet.with_alarms(make_spec("Stack1", "old"), NOTHING, FRESH)
    clock.now += ALARMS_FORGOTTEN + 1
    sent = sent_names(clients)
    fleet.with_alarms(make_spec("Stack2", "new"), NOTHING, FRESH)
    assert sent == [["new"]]


def test_a_read_due_moments_after_the_last_is_not_yet(clients: Clients) -> None:
    """Paced like the listings: a spec whose names the last read missed waits until twice
    that read's duration has passed since it began, then reads."""
    clock = Clock()
    fleet = Fleet(clients, clock)

    def slow(**_: Any) -> None:
        clock.now += 1.0  # the read takes a second

    clients.cloudwatch(REGION).meta.events.register("before-call.cloudwatch.DescribeAlarms", slow)
    fleet.with_alarms(make_spec("Stack1", "a"), NOTHING, FRESH)
    late = make_spec("Stack2", "b")
    with pytest.raises(NotYet):
        fleet.with_alarms(late, NOTHING, FRESH)
    clock.now += 1.0
    assert fleet.with_alarms(late, NOTHING, FRESH).alarms == {}
