"""The alarm evaluator against CloudWatch's documented semantics (period, M of N, missing-data treatment)."""

from __future__ import annotations

import pytest

from scones import alarms
from scones.alarms import ALARM, INSUFFICIENT, OK, Alarm, evaluate


def alarm(**changes) -> Alarm:
    base = dict(
        name="a",
        namespace="AWS/SageMaker",
        metric="Invocation5XXErrors",
        dimensions={"EndpointName": "ep", "VariantName": "Candidate"},
        statistic="Sum",
        period=10,
        evaluation_periods=3,
        threshold=0.0,
        comparison="GreaterThanThreshold",
        datapoints_to_alarm=2,
        treat_missing="notBreaching",
    )
    return Alarm(**{**base, **changes})


NOW = 1000.0  # the current period starts at 1000: the range is 970, 980, 990


def test_m_of_n_breaching_periods_alarm():
    assert evaluate(alarm(), {990: 3.0, 980: 1.0}, NOW).state == ALARM
    assert evaluate(alarm(), {990: 3.0, 980: 0.0, 970: 0.0}, NOW).state == OK  # one of three, two needed
    found = evaluate(alarm(), {990: 3.0, 970: 5.0}, NOW)
    assert found.state == ALARM and found.value == 5.0 and "Invocation5XXErrors Sum 5" in found.reason


def test_the_incomplete_period_and_older_ones_do_not_count():
    assert evaluate(alarm(), {1000: 9.0, 960: 9.0, 990: 1.0}, NOW).state == OK


def test_datapoints_to_alarm_defaults_to_the_evaluation_periods():
    a = alarm(datapoints_to_alarm=None)
    assert evaluate(a, {990: 1.0, 980: 1.0}, NOW).state == OK
    assert evaluate(a, {990: 1.0, 980: 1.0, 970: 1.0}, NOW).state == ALARM


@pytest.mark.parametrize(
    ("treat", "previous", "state"),
    [
        ("notBreaching", ALARM, OK),
        ("breaching", OK, ALARM),
        ("missing", OK, INSUFFICIENT),
        ("ignore", ALARM, ALARM),
        ("ignore", OK, OK),
    ],
)
def test_missing_data_is_treated_as_told(treat, previous, state):
    assert evaluate(alarm(treat_missing=treat), {}, NOW, previous).state == state


def test_breaching_missing_periods_add_to_the_breaching_ones():
    a = alarm(treat_missing="breaching")
    assert evaluate(a, {990: 2.0, 980: 0.0, 970: 0.0}, NOW).state == OK
    assert evaluate(a, {990: 2.0, 980: 0.0}, NOW).state == ALARM  # 970 missing counts as breaching


def test_less_than_alarms_and_their_worst_value():
    a = alarm(metric="Invocations", comparison="LessThanThreshold", threshold=5.0, datapoints_to_alarm=1)
    found = evaluate(a, {990: 3.0, 980: 1.0, 970: 8.0}, NOW)
    assert found.state == ALARM and found.value == 1.0


def test_the_description_cloudwatch_returns_becomes_an_alarm():
    found = Alarm.from_description(
        {
            "AlarmName": "p95",
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": [{"Name": "EndpointName", "Value": "ep"}],
            "ExtendedStatistic": "p95",
            "Period": 60,
            "EvaluationPeriods": 2,
            "Threshold": 500000.0,
            "ComparisonOperator": "GreaterThanThreshold",
        }
    )
    assert found.statistic == "p95" and found.treat_missing == "missing" and found.dimensions == {"EndpointName": "ep"}


def test_a_rollout_judges_only_the_periods_since_it_began():
    """bench_rollout found it: a promotion right after a rollback was rolled back by the broken candidate's 5xx,
    still in the alarm's window under the same variant name."""
    points = {100: 132.0, 110: 0.0, 120: 0.0}
    assert alarms.since(points, 105.0) == {110: 0.0, 120: 0.0}
    assert alarms.since(points, 100.0) == points
