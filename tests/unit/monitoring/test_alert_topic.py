"""The AWS monitoring job publishes its alert to the topic the deploy gave it: its role may not describe the
workflow stack (docs/iam/sagemaker-role-policy.json allows no cloudformation:DescribeStacks)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from scones.core import settings
from scones.deploy import requests
from scones.deploy.spec import Spec
from scones.monitoring import monitor

TOPIC = "arn:aws:sns:us-east-1:123456789012:scones-alerts"


class SNS:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def publish(self, **params):
        self.sent.append(params)
        return {"MessageId": "m-1"}


@pytest.fixture
def failed(monkeypatch):
    result = SimpleNamespace(failed=True, checks=[], summary=lambda: {"verdict": "DRIFT", "checks": []})
    monkeypatch.setattr(monitor.drift, "violations", lambda _checks: {"violations": []})
    sns = SNS()
    monkeypatch.setattr(monitor.aws, "client", lambda name, **_k: sns)
    return result, sns


def test_the_job_publishes_to_the_topic_in_its_environment_without_asking_the_stack(failed, monkeypatch):
    result, sns = failed
    monkeypatch.setenv(settings.ALERT_TOPIC_ARN, TOPIC)
    monkeypatch.setattr(monitor.stacks, "outputs", lambda *_a: pytest.fail("the job's role cannot describe stacks"))
    assert monitor.alert(result, "ep") == "m-1"
    assert sns.sent[0]["TopicArn"] == TOPIC


def test_without_the_setting_the_stack_s_output_is_used(failed, monkeypatch):
    result, sns = failed
    monkeypatch.delenv(settings.ALERT_TOPIC_ARN, raising=False)
    monkeypatch.setattr(monitor.stacks, "outputs", lambda *_a: {"AlertTopicArn": TOPIC + "-stack"})
    monitor.alert(result, "ep")
    assert sns.sent[0]["TopicArn"] == TOPIC + "-stack"


def test_the_processing_job_is_given_the_topic_the_deploy_knows():
    request = requests.processing_job_request(Spec(), "123456789012", "src/x.tar.gz", lambda *_a: "i", TOPIC)
    assert request["Environment"][settings.ALERT_TOPIC_ARN] == TOPIC
    assert (
        settings.ALERT_TOPIC_ARN
        not in requests.processing_job_request(Spec(), "1", "s/x", lambda *_a: "i")["Environment"]
    )
