"""The single-image machine as Express (`scones deploy --workflow-type express`) on the cloud under test:
`scones invoke --sync` answers at once with the same table, failures still alert on SNS, `scones load --via workflow`
counts every request from the synchronous answers, `scones graph` says in one line that there is no history, a
Standard deploy refuses --sync in one line, and the documented deployer policy allows what invoke and load call.

The endpoint serves the brightness model of tests/helpers.py: bright images are confidently 'bicycle', dark ones
'motorcycle', grey ones below the threshold.
"""

from __future__ import annotations

import json
import time

import iam_check
import numpy as np
import pytest
from helpers import ROOT, TARGET, deployment_env, environ, make_brightness_model, solid_png, subscribe_queue

from scones import cli, endpoint, load, stacks, workflow
from scones.core import aws, settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOYER_POLICY = ROOT / "docs" / "iam" / "deployer-policy.json"
STAGED = "staged"  # a staged test split for `scones load`: {STAGED}/test/*.png
LEVELS = {"bicycle_s_bright.png": 230, "motorcycle_s_dark.png": 25, "bicycle_s_grey.png": 128}  # grey: below 0.93


@pytest.fixture(scope="module")
def express(local_cloud, tmp_path_factory):
    suffix, env = deployment_env("ex")
    with environ(env):
        model = make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=env[settings.BUCKET])
        for name, level in (("bright", 230), ("dark", 25), ("grey", 128)):
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"img/{name}.png", Body=solid_png(level))
        for name, level in LEVELS.items():
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"{STAGED}/test/{name}", Body=solid_png(level))
        argv = ["deploy", "--target", TARGET, "--model", str(model), "--workflow-type", "express"]
        assert cli.main(argv) == 0
        outputs = stacks.outputs(env[settings.STACK_NAME])
        yield {
            "bucket": env[settings.BUCKET],
            "outputs": outputs,
            "queue": subscribe_queue(outputs["AlertTopicArn"], f"alerts-{suffix}"),
            "stack": env[settings.STACK_NAME],
        }
        endpoint.stop(env[settings.SCONES_ENDPOINT_NAME], log=lambda _m: None)
        stacks.delete(env[settings.STACK_NAME], log=lambda _m: None)


def alerts(url: str, expect: int, wait_s: float = 10.0) -> list[dict]:
    sqs, found = aws.client("sqs"), []
    deadline = time.monotonic() + wait_s
    while len(found) < expect and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            found.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def rows_of(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("img/")}


def test_the_deployed_single_machine_is_express(express):
    described = aws.client("stepfunctions").describe_state_machine(stateMachineArn=express["outputs"][stacks.SINGLE])
    assert described["type"] == "EXPRESS" and express["outputs"][stacks.WORKFLOW_TYPE] == "EXPRESS"


def test_invoke_sync_prints_the_table_at_once_and_a_failure_still_alerts(express, capsys):
    keys = ["img/bright.png", "img/dark.png", "img/grey.png"]
    argv = ["invoke", "--sync", "--allow-failures", "--bucket", express["bucket"]]
    assert cli.main([*argv, *[a for key in keys for a in ("--key", key)]]) == 0
    out = capsys.readouterr().out
    assert "total 3: 2 SUCCEEDED, 1 FAILED" in out
    rows = rows_of(out)
    assert rows["img/bright.png"][:1] == ["bicycle"] and rows["img/dark.png"][:1] == ["motorcycle"]
    assert "LowConfidenceError:" in " ".join(rows["img/grey.png"]) and "[SNS alert sent]" in out
    # the alert column is inferred from the machine's shape: the alert itself must be on the topic
    (alert,) = alerts(express["queue"], expect=1)
    assert alert["error"] == "LowConfidenceError" and alert["input"]["s3_key"] == "img/grey.png"
    assert ":express:" in alert["execution"]


def test_a_plain_invoke_on_express_runs_synchronously_too(express, capsys):
    """AWS describes no Express execution, so start_execution + describe_execution cannot be used on it."""
    assert cli.main(["invoke", "--key", "img/bright.png", "--bucket", express["bucket"]]) == 0
    assert "synchronous Express execution" in capsys.readouterr().out


def test_graph_on_express_says_in_one_line_there_is_no_history(express, capsys):
    assert cli.main(["graph", "--out", "unused.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Express state machine" in err and "docs/workflow.md" in err
    assert "(next: scones graph --batch" in err


def no_describe(*_args, **_kwargs):
    raise AssertionError("DescribeExecution on an Express execution: AWS answers no such thing")


def test_load_via_workflow_on_express_counts_every_request_from_the_synchronous_answers(express, monkeypatch):
    # Given an Express machine, whose executions AWS never describes
    monkeypatch.setattr(workflow, "wait", no_describe)
    # and the images a burst of 12 draws (seeded), the grey ones below the threshold
    drawn = load.choose([f"{STAGED}/test/{n}" for n in LEVELS], 12, None, np.random.default_rng(5))
    grey = sum(key.endswith("grey.png") for key in drawn)
    assert 0 < grey < 12
    # When scones load sends them through the workflow
    summary = load.generate(
        "burst", via="workflow", count=12, concurrency=4, seed=5, bucket=express["bucket"], prefix=STAGED
    )
    # Then every request is counted from its StartSyncExecution answer: the grey ones failed, by name
    assert (summary.sent, summary.succeeded, summary.failed) == (12, 12 - grey, grey)
    assert summary.failed_by_error == {"LowConfidenceError": grey}
    assert summary.low_confidence_rate == round(grey / 12, 4)


def deployer_refuses(calls: list) -> list[str]:
    """What docs/iam/deployer-policy.json does not allow of the calls scones made (tests/iam_check.py)."""
    account = aws.client("sts").get_caller_identity()["Account"]
    return iam_check.refused(calls, [json.loads(DEPLOYER_POLICY.read_text())], account)


def test_the_deployer_policy_allows_invoke_sync_and_load_on_express(express, aws_calls, capsys):
    # Given the calls scones makes for invoke --sync and load --via workflow on an Express deploy
    start = len(aws_calls.calls)
    argv = ["invoke", "--sync", "--allow-failures", "--bucket", express["bucket"]]
    assert cli.main([*argv, "--key", "img/bright.png", "--key", "img/grey.png"]) == 0
    load.generate("burst", via="workflow", count=3, concurrency=2, seed=1, bucket=express["bucket"], prefix=STAGED)
    calls = [c for c in aws_calls.calls[start:] if c.by_scones]
    assert sum(c.operation == "StartSyncExecution" for c in calls) == 5
    # Then the documented policy for the user allows each of them (states:StartSyncExecution among them)
    assert deployer_refuses(calls) == []


def test_switching_back_to_standard_replaces_the_machine_and_sync_is_refused_in_one_line(express, capsys):
    # runs last: it redeploys the stack as Standard
    assert cli.main(["deploy", "--target", TARGET, "--workflow-type", "standard"]) == 0
    outputs = stacks.outputs(express["stack"])
    described = aws.client("stepfunctions").describe_state_machine(stateMachineArn=outputs[stacks.SINGLE])
    assert described["type"] == "STANDARD" and not described["name"].endswith("-express")
    capsys.readouterr()
    assert cli.main(["invoke", "--sync", "--key", "img/bright.png", "--bucket", express["bucket"]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Standard" in err and "(next: scones deploy --workflow-type express" in err


def test_the_deployer_policy_allows_invoke_on_standard(express, aws_calls, capsys):
    # given a Standard machine (the test above switched to it; run alone, this one does)
    if stacks.outputs(express["stack"])[stacks.WORKFLOW_TYPE] != "STANDARD":
        assert cli.main(["deploy", "--target", TARGET, "--workflow-type", "standard"]) == 0
    # when invoke starts, describes, and reads the history of a failed execution
    start = len(aws_calls.calls)
    argv = ["invoke", "--allow-failures", "--bucket", express["bucket"], "--key", "img/bright.png"]
    assert cli.main([*argv, "--key", "img/grey.png"]) == 0
    calls = [c for c in aws_calls.calls[start:] if c.by_scones]
    operations = {c.operation for c in calls}
    assert {"StartExecution", "DescribeExecution", "GetExecutionHistory"} <= operations
    # then the documented policy for the user allows each call
    assert deployer_refuses(calls) == []
