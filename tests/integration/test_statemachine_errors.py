"""The deployed definitions' error handling, run for real: statemachine/classify_image.asl.json with its
placeholders filled by test Lambdas (tests/lambdas/toolbox.py) that fail on purpose.

- A transient Lambda error (the names the ASL's second retrier lists) is retried per the ASL, then succeeds; in the
  batch machine's Map items too (statemachine/classify_batch.asl.json).
- A Lambda timeout ends the execution as Sandbox.Timedout, through the Catch, with an SNS alert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import create_function, receive, subscribe_queue

from scones import workflow
from scones.core import aws
from scones.selftest import ensure_role

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SINGLE = Path(__file__).resolve().parents[2] / "statemachine" / "classify_image.asl.json"
BATCH = SINGLE.with_name("classify_batch.asl.json")


def machine_from_asl(name: str, substitutions: dict[str, str], asl: Path = SINGLE) -> str:
    """The real definition, its ${…} placeholders filled as the template's DefinitionSubstitutions does."""
    text = asl.read_text()
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text
    sfn = aws.client("stepfunctions")
    return sfn.create_state_machine(name=name, definition=text, roleArn=ensure_role())["stateMachineArn"]


@pytest.fixture
def flow(local_cloud, unique):
    """Serialize and Filter pass the event on; Classify is whatever the test names. Its own topic and queue."""
    bucket = f"errors-{unique}"
    aws.client("s3").create_bucket(Bucket=bucket)
    topic = aws.client("sns").create_topic(Name=f"errors-{unique}")["TopicArn"]
    passthrough = create_function(f"pass-{unique}", "toolbox.passthrough")

    def build(classify_handler: str, timeout: int = 5, asl: Path = SINGLE) -> str:
        classify = create_function(f"classify-{unique}", classify_handler, timeout=timeout)
        return machine_from_asl(
            f"errors-{unique}",
            {
                "SerializeFunctionArn": passthrough,
                "ClassifyFunctionArn": classify,
                "FilterFunctionArn": passthrough,
                "AlertTopicArn": topic,
            },
            asl,
        )

    return {"bucket": bucket, "build": build, "queue": subscribe_queue(topic, f"errors-{unique}")}


def run(machine: str, payload: dict) -> tuple[workflow.Row, list[dict]]:
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine, name=f"x-{payload['s3_key']}", input=json.dumps(payload))[
        "executionArn"
    ]
    row = workflow.row_for_execution(sfn, workflow.wait(sfn, arn, timeout_s=60), payload["s3_key"])
    return row, workflow.history(sfn, arn)


def classify_attempts(events: list[dict]) -> list[str]:
    """The outcome of each Classify try, in order: the error name, or 'ok'."""
    by_id = {e["id"]: e for e in events}
    outcomes = []
    for event in events:
        if event["type"] not in ("TaskSucceeded", "TaskFailed"):
            continue
        started = by_id[event["previousEventId"]]
        scheduled = by_id[started["previousEventId"]]["taskScheduledEventDetails"]
        if "classify-" in json.loads(scheduled["parameters"]).get("FunctionName", ""):
            outcomes.append(event.get("taskFailedEventDetails", {}).get("error", "ok"))
    return outcomes


@pytest.mark.parametrize("error", ["Lambda.ServiceException", "Lambda.TooManyRequestsException"])
def test_a_transient_lambda_error_is_retried_per_the_asl_then_succeeds(flow, error):
    machine = flow["build"]("toolbox.transient")
    key = "img/" + error.split(".")[-1] + ".png"
    row, events = run(machine, {"s3_bucket": flow["bucket"], "s3_key": key, "fail_times": 2, "error": error})
    assert row.status == "SUCCEEDED", (row.error, row.cause)
    assert classify_attempts(events) == [error, error, "ok"]  # two retries, then through
    assert (row.label, row.alerted) == ("bicycle", False)
    assert receive(flow["queue"], timeout_s=1) == []


def test_the_batch_machine_retries_a_transient_lambda_error_in_each_item_then_succeeds(flow):
    machine = flow["build"]("toolbox.transient_by_key", asl=BATCH)
    keys = ["img/Lambda.ServiceException.png", "img/Lambda.TooManyRequestsException.png"]
    described, rows = workflow.run_batch(aws.client("stepfunctions"), machine, flow["bucket"], keys)
    assert described["status"] == "SUCCEEDED"
    assert [(r.key, r.status, r.label, r.alerted) for r in rows] == [(k, "SUCCEEDED", "bicycle", False) for k in keys]
    attempts = classify_attempts(workflow.history(aws.client("stepfunctions"), described["executionArn"]))
    assert sorted(attempts) == sorted([*keys_errors(keys), *keys_errors(keys), "ok", "ok"])  # two retries per item
    assert receive(flow["queue"], timeout_s=1) == []


def keys_errors(keys: list[str]) -> list[str]:
    return [k.rsplit("/", 1)[-1].removesuffix(".png") for k in keys]


def test_a_lambda_timeout_ends_through_the_catch_with_an_alert(flow):
    machine = flow["build"]("toolbox.sleepy", timeout=1)
    row, events = run(machine, {"s3_bucket": flow["bucket"], "s3_key": "img/slow.png", "sleep": 3})
    assert row.status == "FAILED" and row.error in ("Sandbox.Timedout", "States.Timeout"), row
    assert classify_attempts(events) == [row.error]  # not a transient error: no retry
    assert [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e][-3:] == [
        "DescribeFailure",
        "Alert",
        "Failed",
    ]
    assert row.alerted
    (alert,) = receive(flow["queue"])
    message = json.loads(alert["Message"])
    assert (message["error"], message["execution"]) == (row.error, row.execution)
    assert message["input"]["s3_key"] == "img/slow.png"
