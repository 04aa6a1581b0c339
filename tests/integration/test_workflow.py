"""The deployed workflow on the cloud under test (embedded, or LocalStack with SCONES_TARGET=localstack: the same
files, only the environment differs): `scones deploy`, executions, SNS alerts, the Map fan-out.

The endpoint serves a brightness model whose answers are known in advance (tests/helpers.py): bright
images are confidently 'bicycle', dark ones 'motorcycle', grey ones a coin toss below the threshold.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from helpers import TARGET, make_brightness_model, solid_png, subscribe_queue

from scones import cli, endpoint, workflow
from scones.core import aws, settings
from scones.deploy import stack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.localstack]


@pytest.fixture(scope="module")
def deployed(local_cloud, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    env = {
        settings.BUCKET: f"wf-{suffix}",
        settings.STACK_NAME: f"t{suffix}-workflow",
        settings.SCONES_ENDPOINT_NAME: f"ep-{suffix}",
        settings.ENDPOINT_PORT: "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    model = make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")
    aws.client("s3").create_bucket(Bucket=env[settings.BUCKET])
    s3 = aws.client("s3")
    for i in range(8):
        s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/bright-{i}.png", Body=solid_png(230))
    for i in range(6):
        s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/dark-{i}.png", Body=solid_png(25))
    for i in range(4):
        s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/grey-{i}.png", Body=solid_png(128))
    assert cli.main(["deploy", "--target", TARGET, "--model", str(model)]) == 0
    outputs = stack.outputs(env[settings.STACK_NAME])
    queue = subscribe_queue(outputs["AlertTopicArn"], f"alerts-{suffix}")
    yield {
        "bucket": env[settings.BUCKET],
        "outputs": outputs,
        "queue": queue,
        "model": model,
        "endpoint": env[settings.SCONES_ENDPOINT_NAME],
        "stack": env[settings.STACK_NAME],
    }
    endpoint.stop(env[settings.SCONES_ENDPOINT_NAME], log=lambda _m: None)
    stack.delete(env[settings.STACK_NAME], log=lambda _m: None)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def alerts(url: str) -> list[dict]:
    sqs, found = aws.client("sqs"), []
    for _ in range(5):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if found and not batch:
            break
    return found


def single(deployed, key: str) -> workflow.Row:
    sfn = aws.client("stepfunctions")
    return workflow.run_single(sfn, deployed["outputs"]["ClassifyImageStateMachineArn"], deployed["bucket"], [key])[0]


def test_a_confident_image_succeeds_with_inferences(deployed):
    row = single(deployed, "img/bright-0.png")
    assert row.status == "SUCCEEDED"
    assert row.label == "bicycle" and row.confidence > 0.99
    output = json.loads(aws.client("stepfunctions").describe_execution(executionArn=row.execution)["output"])
    assert set(output) == {"s3_bucket", "s3_key", "inferences", "labels"}  # no image bytes in the result


def test_a_low_confidence_image_fails_and_alerts(deployed):
    alerts(deployed["queue"])  # drain
    row = single(deployed, "img/grey-0.png")
    assert row.status == "FAILED" and row.error == "LowConfidenceError"
    assert row.confidence is not None and row.confidence < 0.93 and row.alerted
    (alert,) = alerts(deployed["queue"])
    message = json.loads(alert["Message"])
    assert message["error"] == "LowConfidenceError"
    assert message["execution"] == row.execution
    assert message["input"]["s3_key"] == "img/grey-0.png"
    assert alert["Subject"] == "scones: image classification failed"


def test_a_missing_key_fails_with_image_not_found(deployed):
    row = single(deployed, "img/nothing-here.png")
    assert row.status == "FAILED" and row.error == "ImageNotFoundError"


def test_map_over_20_keys_gives_per_item_outcomes(deployed):
    alerts(deployed["queue"])
    keys = [f"img/bright-{i}.png" for i in range(8)] + [f"img/dark-{i}.png" for i in range(6)]
    keys += [f"img/grey-{i}.png" for i in range(4)] + ["img/missing-1.png", "img/missing-2.png"]
    sfn = aws.client("stepfunctions")
    described, rows = workflow.run_batch(
        sfn, deployed["outputs"]["ClassifyBatchStateMachineArn"], deployed["bucket"], keys
    )
    assert described["status"] == "SUCCEEDED" and [r.key for r in rows] == keys
    outcome = {r.key: (r.status, r.label, r.error) for r in rows}
    assert all(outcome[f"img/bright-{i}.png"] == ("SUCCEEDED", "bicycle", "") for i in range(8))
    assert all(outcome[f"img/dark-{i}.png"] == ("SUCCEEDED", "motorcycle", "") for i in range(6))
    assert all(outcome[f"img/grey-{i}.png"][::2] == ("FAILED", "LowConfidenceError") for i in range(4))
    assert outcome["img/missing-1.png"] == ("FAILED", "", "ImageNotFoundError")
    alerted = sorted(json.loads(a["Message"])["s3_key"] for a in alerts(deployed["queue"]))
    assert alerted == sorted(k for k in keys if "grey" in k or "missing" in k)  # one alert per failed item
    for event in workflow.history(sfn, described["executionArn"]):  # every payload under 256 KiB
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        for field in ("input", "output"):
            assert len(details.get(field, "")) < 256 * 1024
    assert "image_data" not in described["output"]


def test_map_where_every_item_succeeds_sends_no_alert(deployed):
    alerts(deployed["queue"])
    keys = [f"img/bright-{i}.png" for i in range(3)] + [f"img/dark-{i}.png" for i in range(3)]
    described, rows = workflow.run_batch(
        aws.client("stepfunctions"), deployed["outputs"]["ClassifyBatchStateMachineArn"], deployed["bucket"], keys
    )
    assert described["status"] == "SUCCEEDED" and all(r.status == "SUCCEEDED" for r in rows)
    assert alerts(deployed["queue"]) == []


def test_deployed_definitions_resolve_every_placeholder(deployed):
    sfn, lam = aws.client("stepfunctions"), aws.client("lambda")
    for key in ("ClassifyImageStateMachineArn", "ClassifyBatchStateMachineArn"):
        definition = sfn.describe_state_machine(stateMachineArn=deployed["outputs"][key])["definition"]
        assert "${" not in definition
        for arn in set(json.loads(json.dumps(definition)).split('"FunctionName": "')[1:]):
            lam.get_function(FunctionName=arn.split('"')[0])  # exists


def test_scones_invoke_prints_one_row_per_key(deployed, capsys):
    keys = ["img/bright-3.png", "img/dark-3.png", "img/nothing-here.png"]
    assert cli.main(["invoke", *[arg for key in keys for arg in ("--key", key)], "--bucket", deployed["bucket"]]) == 0
    out = capsys.readouterr().out
    assert "total 3: 2 SUCCEEDED, 1 FAILED" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("img/")}
    assert rows["img/bright-3.png"][0] == "bicycle" and rows["img/dark-3.png"][0] == "motorcycle"
    assert "ImageNotFoundError:" in " ".join(rows["img/nothing-here.png"])


def test_second_deploy_changes_nothing(deployed, capsys):
    lam = aws.client("lambda")
    before = lam.get_function(FunctionName=deployed["outputs"]["ClassifyFunctionArn"])["Configuration"]
    assert cli.main(["deploy", "--target", TARGET]) == 0
    assert f"stack {deployed['stack']}: unchanged" in capsys.readouterr().out
    after = lam.get_function(FunctionName=deployed["outputs"]["ClassifyFunctionArn"])["Configuration"]
    assert (before["CodeSha256"], before["LastModified"]) == (after["CodeSha256"], after["LastModified"])


def test_graph_and_export(deployed, tmp_path, capsys):
    single(deployed, "img/grey-1.png")
    assert cli.main(["graph", "--status", "FAILED", "--out", str(tmp_path / "g.png")]) == 0
    assert cli.main(["graph", "--batch", "--out", str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()[:500]
    assert cli.main(["export", "--out-dir", str(tmp_path / "export")]) == 0
    exported = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert exported == sorted(
        f"{deployed['stack'].removesuffix('-workflow')}-classify-{k}.json" for k in ("batch", "image")
    )


def test_endpoint_down_is_retried_then_fails_with_an_alert(deployed):
    """Last in this module: it stops the endpoint."""
    alerts(deployed["queue"])
    endpoint.stop(deployed["endpoint"], log=lambda _m: None)
    row = single(deployed, "img/bright-1.png")
    assert row.status == "FAILED" and row.error == "EndpointUnavailableError" and row.alerted
    events = workflow.history(aws.client("stepfunctions"), row.execution)
    scheduled = [e["taskScheduledEventDetails"] for e in events if e["type"] == "TaskScheduled"]
    classify_tries = [
        d
        for d in scheduled
        if d["resourceType"] == "lambda"
        and json.loads(d["parameters"])["FunctionName"] == deployed["outputs"]["ClassifyFunctionArn"]
    ]
    assert len(classify_tries) == 3  # the first try and two retries
    (alert,) = alerts(deployed["queue"])
    assert json.loads(alert["Message"])["error"] == "EndpointUnavailableError"
