"""The deployed workflow on the cloud under test (embedded, or LocalStack with SCONES_TARGET=localstack: the same
files, only the environment differs): `scones deploy`, executions, SNS alerts, the Map fan-out.

The endpoint serves a brightness model whose answers are known in advance (tests/helpers.py): bright
images are confidently 'bicycle', dark ones 'motorcycle', grey ones a coin toss below the threshold.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile

import pytest
from helpers import TARGET, deployment_env, environ, make_brightness_model, solid_png, subscribe_queue

from scones import cli, endpoint, localcloud, stacks, workflow
from scones.core import aws, settings
from scones.deploy import package

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.localstack]


@pytest.fixture(scope="module")
def deployed(local_cloud, tmp_path_factory):
    suffix, env = deployment_env("wf")
    with environ(env):
        model = make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")
        aws.client("s3").create_bucket(Bucket=env[settings.BUCKET])
        s3 = aws.client("s3")
        for i in range(8):
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/bright-{i}.png", Body=solid_png(230))
        for i in range(6):
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/dark-{i}.png", Body=solid_png(25))
        for i in range(4):
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/grey-{i}.png", Body=solid_png(128))
        for i in range(8):  # ~36 KB each: 8 of them leaking into the Map's output would pass 256 KiB
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/big-bright-{i}.png", Body=noisy_png(200, 256, seed=i))
        assert cli.main(["deploy", "--target", TARGET, "--model", str(model)]) == 0
        outputs = stacks.outputs(env[settings.STACK_NAME])
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
        stacks.delete(env[settings.STACK_NAME], log=lambda _m: None)


def noisy_png(low: int, high: int, size: int = 128, seed: int = 0) -> bytes:
    """Random pixels in [low, high): incompressible, so the PNG is large (~36 KB at 128×128 for 200..255)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(low, high, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def alerts(url: str, expect: int = 0, wait_s: float = 5.0) -> list[dict]:
    """The alerts on the queue (deleted as read): waits up to wait_s for `expect` of them, then takes any
    extras; with expect=0 it listens for wait_s (0: just drain what is there)."""
    sqs, found = aws.client("sqs"), []
    deadline = time.monotonic() + wait_s
    while True:
        remaining = deadline - time.monotonic()
        need_more = remaining > 0 and (len(found) < expect if expect else True)
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1 if need_more else 0).get(
            "Messages", []
        )
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not batch and not need_more:
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
    alerts(deployed["queue"], wait_s=0)  # drain
    row = single(deployed, "img/grey-0.png")
    assert row.status == "FAILED" and row.error == "LowConfidenceError"
    assert row.confidence is not None and row.confidence < 0.93 and row.alerted
    (alert,) = alerts(deployed["queue"], expect=1)
    message = json.loads(alert["Message"])
    assert message["error"] == "LowConfidenceError"
    assert message["execution"] == row.execution
    assert message["input"]["s3_key"] == "img/grey-0.png"
    assert alert["Subject"] == "scones: image classification failed"


def test_a_missing_key_fails_with_image_not_found(deployed):
    row = single(deployed, "img/nothing-here.png")
    assert row.status == "FAILED" and row.error == "ImageNotFoundError"


def test_map_over_20_keys_gives_per_item_outcomes(deployed):
    alerts(deployed["queue"], wait_s=0)
    keys = [f"img/big-bright-{i}.png" for i in range(8)] + [f"img/dark-{i}.png" for i in range(6)]
    keys += [f"img/grey-{i}.png" for i in range(4)] + ["img/missing-1.png", "img/missing-2.png"]
    sfn = aws.client("stepfunctions")
    described, rows = workflow.run_batch(
        sfn, deployed["outputs"]["ClassifyBatchStateMachineArn"], deployed["bucket"], keys
    )
    assert described["status"] == "SUCCEEDED", described.get("error")  # States.DataLimitExceeded if images pile up
    assert [r.key for r in rows] == keys
    outcome = {r.key: (r.status, r.label, r.error) for r in rows}
    assert all(outcome[f"img/big-bright-{i}.png"] == ("SUCCEEDED", "bicycle", "") for i in range(8))
    assert all(outcome[f"img/dark-{i}.png"] == ("SUCCEEDED", "motorcycle", "") for i in range(6))
    assert all(outcome[f"img/grey-{i}.png"][::2] == ("FAILED", "LowConfidenceError") for i in range(4))
    assert outcome["img/missing-1.png"] == ("FAILED", "", "ImageNotFoundError")
    alerted = sorted(json.loads(a["Message"])["s3_key"] for a in alerts(deployed["queue"], expect=6))
    assert alerted == sorted(k for k in keys if "grey" in k or "missing" in k)  # one alert per failed item
    assert sorted(r.key for r in rows if r.alerted) == alerted  # the table's column, read from the history
    sizes = []
    for event in workflow.history(sfn, described["executionArn"]):  # every payload under 256 KiB
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        sizes += [len(details.get(field) or "") for field in ("input", "output")]
    assert 32 * 1024 < max(sizes) < 256 * 1024  # big images went through the items; none piled up in the Map
    assert "image_data" not in described["output"]


def test_map_where_every_item_succeeds_sends_no_alert(deployed):
    alerts(deployed["queue"], wait_s=0)
    keys = [f"img/bright-{i}.png" for i in range(3)] + [f"img/dark-{i}.png" for i in range(3)]
    described, rows = workflow.run_batch(
        aws.client("stepfunctions"), deployed["outputs"]["ClassifyBatchStateMachineArn"], deployed["bucket"], keys
    )
    assert described["status"] == "SUCCEEDED" and all(r.status == "SUCCEEDED" for r in rows)
    assert alerts(deployed["queue"], wait_s=2) == []


def task_targets(states: dict) -> list[tuple[str, str]]:
    """(resource, function or topic) of every Task, Map iterations included, read from the parsed definition."""
    found = []
    for state in states.values():
        if state["Type"] == "Task":
            params = state.get("Parameters") or state.get("Arguments") or {}
            found.append((state["Resource"], params.get("FunctionName") or params.get("TopicArn")))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found += task_targets(processor["States"])
    return found


def test_deployed_definitions_resolve_every_placeholder(deployed):
    sfn, lam, out = aws.client("stepfunctions"), aws.client("lambda"), deployed["outputs"]
    functions = {out["SerializeFunctionArn"], out["ClassifyFunctionArn"], out["FilterFunctionArn"]}
    for key in ("ClassifyImageStateMachineArn", "ClassifyBatchStateMachineArn"):
        text = sfn.describe_state_machine(stateMachineArn=out[key])["definition"]
        assert "${" not in text
        targets = task_targets(json.loads(text)["States"])  # parsed: minified or not makes no difference
        invoked = {name for resource, name in targets if resource == "arn:aws:states:::lambda:invoke"}
        topics = {name for resource, name in targets if resource == "arn:aws:states:::sns:publish"}
        assert invoked == functions and topics == {out["AlertTopicArn"]}, targets
        for arn in invoked:
            lam.get_function(FunctionName=arn)  # exists


def test_scones_invoke_prints_one_row_per_key(deployed, capsys):
    keys = ["img/bright-3.png", "img/dark-3.png", "img/nothing-here.png"]
    argv = ["invoke", *[arg for key in keys for arg in ("--key", key)], "--bucket", deployed["bucket"]]
    assert cli.main(argv) == 1  # one image FAILED
    assert "1 of 3 image(s) FAILED" in capsys.readouterr().err
    assert cli.main([*argv, "--allow-failures"]) == 0
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


def deploy(capsys, *args: str) -> str:
    assert cli.main(["deploy", "--target", TARGET, *args]) == 0
    return capsys.readouterr().out


def test_redeploy_with_a_lower_threshold_lets_a_grey_image_through(deployed, capsys):
    filter_arn = deployed["outputs"]["FilterFunctionArn"]
    assert single(deployed, "img/grey-2.png").status == "FAILED"  # given: the default 0.93; warms the filter
    try:
        assert f"stack {deployed['stack']}: updated" in deploy(capsys, "--threshold", "0.4")
        variables = aws.client("lambda").get_function_configuration(FunctionName=filter_arn)["Environment"]
        assert variables["Variables"]["SCONES_THRESHOLD"] == "0.4"
        row = single(deployed, "img/grey-2.png")
        assert row.status == "SUCCEEDED" and row.label == "bicycle" and 0.4 <= row.confidence < 0.93
    finally:
        deploy(capsys, "--threshold", str(settings.DEFAULT_THRESHOLD))
    assert single(deployed, "img/grey-2.png").status == "FAILED"  # and back


def test_redeploy_with_a_new_model_replaces_the_running_one(deployed, capsys, tmp_path):
    name, original = deployed["endpoint"], str(deployed["model"])
    before = endpoint.record(name)
    inverted = make_brightness_model(tmp_path / "inverted", sharpness=-30.0)  # bright is now 'motorcycle'
    try:
        # --force: the inverted model is worse, and the quality gate (tests/unit/test_gate.py) would refuse it
        out = deploy(capsys, "--model", str(inverted), "--force")
        assert f"serves {inverted}" in out
        after = endpoint.record(name)
        assert after["model_uri"] == str(inverted) and after["pid"] != before["pid"]
        assert endpoint.status(name).running
        row = single(deployed, "img/bright-3.png")
        assert (row.status, row.label) == ("SUCCEEDED", "motorcycle")
    finally:
        deploy(capsys, "--model", original, "--force")
    assert endpoint.record(name)["model_uri"] == original
    assert single(deployed, "img/bright-3.png").label == "bicycle"


MARKER = "redeployed-" + uuid.uuid4().hex[:8]
WRAPPER = f"""

_scones_test_original = lambda_handler


def lambda_handler(event, context):  # added by the redeploy test: the new code names itself and its worker
    import os

    return dict(_scones_test_original(event, context), redeploy={{"marker": "{MARKER}", "pid": os.getpid()}})
"""


def changed_filter_zip(original):
    def lambda_zip(folder: str) -> bytes:
        body = original(folder)
        if folder != "filter_inferences":
            return body
        buffer = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(body)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
            for info in source.infolist():
                data = source.read(info)
                out.writestr(info, data + WRAPPER.encode() if info.filename == "lambda.py" else data)
        return buffer.getvalue()

    return lambda_zip


def filter_outputs(execution: str) -> list[dict]:
    events = workflow.history(aws.client("stepfunctions"), execution)
    outputs = [json.loads(e["taskSucceededEventDetails"]["output"]) for e in events if e["type"] == "TaskSucceeded"]
    return [o["Payload"] for o in outputs if "Payload" in o and "inferences" in o["Payload"]]


@pytest.mark.skipif(
    os.environ.get(settings.TARGET, settings.DEFAULT_TARGET) != "local",
    reason="reads the Lambda worker pids that only the embedded local cloud reports (/_scones/health)",
)
def test_redeploy_with_changed_lambda_code_runs_the_new_code_in_fresh_workers(
    deployed, capsys, monkeypatch, local_cloud
):
    lam, filter_arn = aws.client("lambda"), deployed["outputs"]["FilterFunctionArn"]
    assert single(deployed, "img/bright-4.png").status == "SUCCEEDED"  # warm workers with the old code
    old_sha = lam.get_function(FunctionName=filter_arn)["Configuration"]["CodeSha256"]
    old_workers = set(localcloud.health(local_cloud)["lambda_workers"])
    assert old_workers
    monkeypatch.setattr(package, "lambda_zip", changed_filter_zip(package.lambda_zip))
    try:
        assert f"stack {deployed['stack']}: updated" in deploy(capsys)
        assert lam.get_function(FunctionName=filter_arn)["Configuration"]["CodeSha256"] != old_sha
        row = single(deployed, "img/bright-4.png")
        assert row.status == "SUCCEEDED"
        (payload,) = [p for p in filter_outputs(row.execution) if "redeploy" in p]
        assert payload["redeploy"]["marker"] == MARKER  # the new code ran ...
        assert payload["redeploy"]["pid"] not in old_workers  # ... in a worker started after the update
        assert old_workers - set(localcloud.health(local_cloud)["lambda_workers"])  # the old filter worker is gone
    finally:
        monkeypatch.undo()
        deploy(capsys)
    assert lam.get_function(FunctionName=filter_arn)["Configuration"]["CodeSha256"] == old_sha


def test_endpoint_down_is_retried_then_fails_with_an_alert(deployed):
    """Last in this module: it stops the endpoint."""
    alerts(deployed["queue"], wait_s=0)
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
    (alert,) = alerts(deployed["queue"], expect=1)
    assert json.loads(alert["Message"])["error"] == "EndpointUnavailableError"


def test_two_concurrent_deploys_take_turns_and_the_last_threshold_is_the_one_deployed(deployed, capsys):
    import subprocess
    import sys

    from scones.core import lock

    def start(threshold: str) -> subprocess.Popen:
        argv = ["deploy", "--target", TARGET, "--model", str(deployed["model"]), "--threshold", threshold]
        return subprocess.Popen(
            [sys.executable, "-m", "scones.cli", *argv],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # given two deploys started while the target's lock is held, so that both are in flight at once
    with lock.hold(TARGET, "test", log=lambda _m: None):
        procs = {"0.61": start("0.61"), "0.62": start("0.62")}
        time.sleep(3)
    # when they run, then they run one after the other and both succeed
    finished: list[str] = []
    deadline = time.monotonic() + 300
    while len(finished) < 2 and time.monotonic() < deadline:
        finished += [t for t, p in procs.items() if t not in finished and p.poll() is not None]
        time.sleep(0.05)
    outs = {t: p.communicate(timeout=10) for t, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), outs
    assert all("waiting for `scones test`" in err for _, err in outs.values()), outs
    assert all(f"stack {deployed['stack']}: updated" in out for out, _ in outs.values()), outs
    # and the threshold deployed is the one of the deploy that finished last
    assert stacks.deployed_threshold(deployed["stack"]) == float(finished[-1])
    deploy(capsys, "--threshold", str(settings.DEFAULT_THRESHOLD))  # as the other tests expect it
