"""scones.core.aws: StartSyncExecution's `sync-` host prefix reaches AWS's own host, never a local cloud's."""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse

from scones.core import aws, settings


class Headers(dict):
    pass


def sent_url(monkeypatch, endpoint: str | None) -> str:
    """The URL boto3 sends StartSyncExecution to through the factory's client (answered here, never sent)."""
    for name in list(settings.service_endpoints()):
        monkeypatch.delenv(name)
    if endpoint is None:
        monkeypatch.delenv(settings.AWS_ENDPOINT_URL, raising=False)
    else:
        monkeypatch.setenv(settings.AWS_ENDPOINT_URL, endpoint)
    monkeypatch.setenv(settings.AWS_ACCESS_KEY_ID, "testing")
    monkeypatch.setenv(settings.AWS_SECRET_ACCESS_KEY, "testing")
    aws.reset()
    client = aws.client("stepfunctions", region="us-east-1", max_attempts=1)
    seen = []

    def answer(request, **_):
        seen.append(request.url)
        body = {"executionArn": "arn", "startDate": 0, "stopDate": 0, "status": "SUCCEEDED"}
        return AWSResponse(request.url, 200, Headers(), _Raw(json.dumps(body).encode()))

    client.meta.events.register("before-send.sfn.StartSyncExecution", answer)
    try:
        client.start_sync_execution(stateMachineArn="arn:aws:states:us-east-1:000000000000:stateMachine:m")
    finally:
        client.meta.events.unregister("before-send.sfn.StartSyncExecution", answer)
        aws.reset()
    return seen[0]


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4566", "http://localhost:4566"])
def test_a_custom_endpoint_gets_no_host_prefix(monkeypatch, endpoint):
    assert sent_url(monkeypatch, endpoint) == endpoint + "/"


def test_aws_itself_keeps_the_sync_host_prefix(monkeypatch):
    monkeypatch.setenv(settings.TARGET, "aws")
    assert sent_url(monkeypatch, None) == "https://sync-states.us-east-1.amazonaws.com/"


@pytest.mark.parametrize(
    ("url", "custom"),
    [
        ("https://states.us-east-1.amazonaws.com", False),
        ("https://s3.cn-north-1.amazonaws.com.cn", False),
        ("https://lambda.us-east-1.api.aws", False),
        ("http://127.0.0.1:4566", True),
        ("http://evil.amazonaws.com.example.org", True),
    ],
)
def test_what_counts_as_a_custom_endpoint(url, custom):
    assert aws.custom_endpoint(url) is custom
