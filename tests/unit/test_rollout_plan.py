"""A rollout plan: parsed from --rollout, its stages, and the DeploymentConfig AWS's UpdateEndpoint accepts."""

from __future__ import annotations

import pytest

from scones import rollout
from scones.core.errors import UsageError
from scones.deploy import validate


def test_canary_and_linear_plans_have_their_stages():
    assert rollout.parse("canary:10:300").stages() == [10, 100]
    assert rollout.parse("linear:25:120").stages() == [25, 50, 75, 100]
    assert rollout.parse("linear:40:5").stages() == [40, 80, 100]


@pytest.mark.parametrize("text", ["canary", "canary:10", "blue:10:30", "canary:0:30", "linear:x:30", "canary:10:0"])
def test_a_bad_plan_is_refused_in_one_line(text):
    with pytest.raises(UsageError) as refused:
        rollout.parse(text)
    assert "\n" not in refused.value.line() and "canary:10:300" in refused.value.line()


@pytest.mark.parametrize("text", ["canary:10:300", "linear:25:120"])
def test_the_deployment_config_passes_the_service_model_and_round_trips(text):
    plan = rollout.parse(text)
    config = rollout.deployment_config(plan, ["ep-candidate-5xx"])
    params = {"EndpointName": "ep", "EndpointConfigName": "ep-config-2", "DeploymentConfig": config}
    assert validate.problems("sagemaker", "UpdateEndpoint", params) == []
    assert rollout.from_deployment_config(config) == (plan, ["ep-candidate-5xx"])


def test_the_default_alarms_pass_the_service_model():
    for request in rollout.default_alarms("ep", period=60):
        assert validate.problems("cloudwatch", "PutMetricAlarm", request) == []


def test_the_default_alarms_watch_the_candidates_answers_locally_and_not_on_aws():
    # given windows of 100 answers
    made = {a["MetricName"]: a for a in rollout.default_alarms("ep", period=60)}
    # then the low-confidence and drift alarms read the endpoint's windowed metrics, both periods breaching
    for metric, threshold in (("LowConfidenceRise", 0.1645), ("ConfidenceDrift", 0.2302)):
        alarm = made[metric]
        assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"]) == ("scones", "Average", threshold)
        assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 2
        assert {d["Value"] for d in alarm["Dimensions"]} == {"ep", "Candidate"}
    # and a worker that dies unasked (killed, crashed, out of memory) rolls back at once: one death in one period
    deaths = made["WorkerDeaths"]
    assert (deaths["Namespace"], deaths["Statistic"], deaths["Threshold"]) == ("scones", "Sum", 1.0)
    assert deaths["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert deaths["EvaluationPeriods"] == deaths["DatapointsToAlarm"] == 1
    assert (deaths["TreatMissingData"], deaths["AlarmName"]) == ("notBreaching", "ep-candidate-worker-deaths")
    # and the AWS path, where nothing puts those metrics, asks for the 5xx and latency alarms only
    aws = rollout.default_alarms("ep", "AllTraffic", 60, answers=False)
    assert [a["MetricName"] for a in aws] == ["Invocation5XXErrors", "ModelLatency"]
