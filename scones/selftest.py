"""Self-test of the local cloud's patches against a running instance (`scones up --check`).

A client of the cloud: each check exercises one patch (services/localcloud/patches/) end to end through
boto3 and the health route. If a moto upgrade breaks a patch, the check names it and fails loudly.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from scones import localcloud
from scones.core import aws
from scones.core.errors import SconesError
from scones.workflow import wait

ROLE_NAME = "scones-selftest"
# The patches this self-test exercises (services/localcloud/patches/*.NAME);
# tests/unit/localcloud/test_patch_registry.py checks that it names every patch there.
PATCHES = (
    "sfn-execution",
    "lambda-subprocess",
    "sfn-cloudformation",
    "jsonata",
    "execution-name",
    "sfn-clients",
    "dispatch-cache",
    "sfn-map-definition",
    "sfn-item-reader",
    "sfn-item-batcher",
    "sfn-result-writer",
    "cloudwatch-percentiles",
    "sfn-sync-execution",
    "sagemaker-update-endpoint",
)
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
        }
    ],
}

SELFTEST_LAMBDA = """
import os, time
import boto3

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("bucket"):
        boto3.client("s3").put_object(Bucket=event["bucket"], Key="from-lambda.txt", Body=b"hi")
    print("hello from", context.function_name)
    return {"n": event.get("n", 0) + 1, "greeting": os.environ.get("GREETING", "")}
"""


class SelfTestError(SconesError):
    """A patch of the local cloud does not work (named in the message)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "reinstall the pinned moto with `make venv`, then `scones down && scones up --check`")


def health(url: str) -> dict:
    body = localcloud.health(url, 5.0)
    if body is None:
        raise SelfTestError(f"the local cloud at {url} does not answer its health route")
    return body


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def ensure_role(name: str = ROLE_NAME) -> str:
    """An IAM role usable by Lambda and Step Functions (the account id comes from the cloud itself)."""
    iam = aws.client("iam")
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]


def create_function(name: str, files: dict[str, str], handler: str = "app.handler", **extra) -> str:
    """A python3.12 Lambda made of `files` (name → source) under the shared role, active when this returns;
    its ARN. `extra`: more create_function arguments (Timeout, Environment)."""
    lam = aws.client("lambda")
    arn = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ensure_role(),
        Handler=handler,
        Code={"ZipFile": make_zip(files)},
        **extra,
    )["FunctionArn"]
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return arn


def _check(name: str, condition: bool, detail: object) -> None:
    if not condition:
        raise SelfTestError(f"{name}: {detail}")


def _lambda(suffix: str) -> str:
    name = f"scones-selftest-{suffix}"
    create_function(name, {"app.py": SELFTEST_LAMBDA}, Timeout=2, Environment={"Variables": {"GREETING": "scones"}})
    return name


def check_lambda(suffix: str) -> str:
    lam = aws.client("lambda")
    name = _lambda(suffix)
    ok = lam.invoke(FunctionName=name, Payload=json.dumps({"n": 1}), LogType="Tail")
    body = json.loads(ok["Payload"].read())
    _check("lambda-subprocess", body == {"n": 2, "greeting": "scones"} and "FunctionError" not in ok, body)
    _check("lambda-subprocess (LogType=Tail)", "hello from" in base64.b64decode(ok["LogResult"]).decode(), ok)
    bad = lam.invoke(FunctionName=name, Payload=json.dumps({"fail": True}))
    error = json.loads(bad["Payload"].read())
    _check(
        "lambda-subprocess (errors)",
        bad.get("FunctionError") == "Unhandled" and error.get("errorType") == "ValueError",
        error,
    )
    slow = lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": 5}))
    error = json.loads(slow["Payload"].read())
    _check("lambda-subprocess (timeout)", error.get("errorType") == "Sandbox.Timedout", error)
    return name


def check_stepfunctions(function_name: str, suffix: str) -> None:
    sfn = aws.client("stepfunctions")
    fn_arn = aws.client("lambda").get_function(FunctionName=function_name)["Configuration"]["FunctionArn"]
    jsonpath = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": fn_arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Next": "Big?",
            },
            "Big?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Yes"}],
                "Default": "No",
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail", "Error": "TooSmall"},
        },
    }
    jsonata = {
        "QueryLanguage": "JSONata",
        "StartAt": "Sum",
        "States": {"Sum": {"Type": "Pass", "Output": {"total": "{% $sum($states.input.values) %}"}, "End": True}},
    }
    for kind, definition, payload, expected in (
        ("execution (JSONPath)", jsonpath, {"n": 1}, {"n": 2, "greeting": "scones"}),
        ("jsonata", jsonata, {"values": [1, 2, 3]}, {"total": 6}),
    ):
        machine = sfn.create_state_machine(
            name=f"scones-selftest-{suffix}-{len(kind)}",
            definition=json.dumps(definition),
            roleArn=ensure_role(),
        )["stateMachineArn"]
        started = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))
        _check("execution-name", not started["executionArn"].endswith(":None"), started["executionArn"])
        done = wait(sfn, started["executionArn"])
        output = json.loads(done.get("output") or "null")
        _check(kind, done["status"] == "SUCCEEDED" and output == expected, done)
        sfn.delete_state_machine(stateMachineArn=machine)


def check_cloudformation(suffix: str) -> None:
    cfn, sfn = aws.client("cloudformation"), aws.client("stepfunctions")
    template = {
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineName": f"scones-selftest-cfn-{suffix}",
                    "RoleArn": ensure_role(),
                    "Definition": {
                        "StartAt": "P",
                        "States": {
                            "P": {
                                "Type": "Pass",
                                "Result": {"word": "${Word}"},
                                "ResultPath": "$.r",
                                "Next": "Q",
                            },
                            "Q": {"Type": "Pass", "Result": "dropped", "ResultPath": None, "End": True},
                        },
                    },
                    "DefinitionSubstitutions": {"Word": "substituted"},
                },
            }
        },
        "Outputs": {"Arn": {"Value": {"Ref": "Machine"}}},
    }
    stack = f"scones-selftest-{suffix}"
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template))
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    arn = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "Arn")
    done = wait(sfn, sfn.start_execution(stateMachineArn=arn, name="selftest")["executionArn"])
    _check(
        "sfn-cloudformation",
        done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"r": {"word": "substituted"}},
        done,
    )
    cfn.delete_stack(StackName=stack)
    left = [m for m in sfn.list_state_machines()["stateMachines"] if m["stateMachineArn"] == arn]
    _check("sfn-cloudformation (delete)", not left, left)


DISTRIBUTED_MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:listObjectsV2",
                "Parameters": {"Bucket.$": "$.bucket", "Prefix": "items/"},
                "ReaderConfig": {"MaxItemsPath": "$.limit"},
            },
            "ItemBatcher": {"MaxItemsPerBatchPath": "$.per_batch", "BatchInput": {"fail.$": "$.fail"}},
            "MaxConcurrency": 4,
            "ToleratedFailurePercentage": 0,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "Fail?",
                "States": {
                    "Fail?": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.BatchInput.fail", "BooleanEquals": True, "Next": "No"}],
                        "Default": "Count",
                    },
                    "Count": {"Type": "Pass", "Parameters": {"n.$": "States.ArrayLength($.Items)"}, "End": True},
                    "No": {"Type": "Fail", "Error": "AskedToFail", "Cause": "the input said so"},
                },
            },
            "ResultWriter": {
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.out"},
            },
            "ResultPath": "$.run",
            "End": True,
        }
    },
}


def check_distributed_map(suffix: str) -> None:
    """ItemReader over 2,100 keys (three pages), MaxItems, ItemBatcher, EXPRESS children, ResultWriter files,
    and a Map Run failed past its tolerance that still wrote its results."""
    s3, sfn = aws.client("s3", max_pool_connections=32), aws.client("stepfunctions")
    bucket = f"scones-selftest-{suffix}"
    s3.create_bucket(Bucket=bucket)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"items/{i:05d}", Body=b"x"), range(2100)))
    machine = sfn.create_state_machine(
        name=f"scones-selftest-dmap-{suffix}", definition=json.dumps(DISTRIBUTED_MAP), roleArn=ensure_role()
    )["stateMachineArn"]
    text = json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"])
    _check("sfn-map-definition", "ItemBatcher" in text["States"]["Each"], "the stored definition lost ItemBatcher")

    def run(**given: object) -> tuple[dict, dict]:
        payload = {"bucket": bucket, "limit": 0, "per_batch": 250, "fail": False, "out": f"out-{len(given)}", **given}
        done = wait(sfn, sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))["executionArn"])
        found = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=payload["out"]).get("Contents", [])]
        manifests = [k for k in found if k.endswith("manifest.json")]
        _check("sfn-result-writer", len(manifests) == 1, f"result files written: {found}")
        return done, json.loads(s3.get_object(Bucket=bucket, Key=manifests[0])["Body"].read())

    def children(manifest: dict, status: str) -> list[dict]:
        files = manifest["ResultFiles"][status]
        return [c for f in files for c in json.loads(s3.get_object(Bucket=bucket, Key=f["Key"])["Body"].read())]

    done, manifest = run()
    counts = [json.loads(c["Output"])["n"] for c in children(manifest, "SUCCEEDED")]
    _check("sfn-item-reader", done["status"] == "SUCCEEDED" and sum(counts) == 2100, (done, counts))
    _check("sfn-item-batcher", sorted(counts) == [100] + [250] * 8, counts)
    done, manifest = run(limit=7, per_batch=3)
    counts = [json.loads(c["Output"])["n"] for c in children(manifest, "SUCCEEDED")]
    _check("sfn-item-reader (MaxItems)", sorted(counts) == [1, 3, 3], counts)
    done, manifest = run(fail=True, per_batch=1000, limit=1500)
    failed = children(manifest, "FAILED")
    _check(
        "sfn-result-writer (tolerance)",
        done["status"] == "FAILED"
        and done.get("error") == "States.ExceedToleratedFailureThreshold"
        and [c["Error"] for c in failed] == ["AskedToFail", "AskedToFail"],
        (done, failed),
    )
    sfn.delete_state_machine(stateMachineArn=machine)


def check_percentiles(suffix: str) -> None:
    """cloudwatch-percentiles: p95 of 1..100 put as Values/Counts is 95, by GetMetricData and GetMetricStatistics."""
    cloudwatch = aws.client("cloudwatch")
    now = datetime.now(UTC).replace(microsecond=0)
    metric = {"Namespace": f"scones-selftest-{suffix}", "MetricName": "Latency"}
    datum = {
        "MetricName": "Latency",
        "Timestamp": now,
        "Values": [float(v) for v in range(1, 101)],
        "Counts": [1.0] * 100,
    }
    cloudwatch.put_metric_data(Namespace=metric["Namespace"], MetricData=[datum])
    start, end = now - timedelta(minutes=1), now + timedelta(minutes=1)
    query = {"Id": "m", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "p95"}}
    found = cloudwatch.get_metric_data(MetricDataQueries=[query], StartTime=start, EndTime=end)
    values = [v for r in found["MetricDataResults"] for v in r["Values"]]
    _check("cloudwatch-percentiles (GetMetricData)", values == [95.0], values)
    points = cloudwatch.get_metric_statistics(
        **metric, StartTime=start, EndTime=end, Period=120, ExtendedStatistics=["p50", "p95"]
    )["Datapoints"]
    extended = [p.get("ExtendedStatistics") for p in points]
    _check("cloudwatch-percentiles (GetMetricStatistics)", extended == [{"p50": 50.0, "p95": 95.0}], extended)


SYNC_MACHINE = {
    "StartAt": "Big?",
    "States": {
        "Big?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Yes"}],
            "Default": "No",
        },
        "Yes": {"Type": "Pass", "Parameters": {"twice.$": "States.MathAdd($.n, $.n)"}, "End": True},
        "No": {"Type": "Fail", "Error": "TooSmall", "Cause": "n is 1 or less"},
    },
}


def check_sync_execution(suffix: str) -> None:
    """StartSyncExecution on an EXPRESS machine answers at once with the outcome; a STANDARD one is refused."""
    sfn = aws.client("stepfunctions")
    machines = {
        kind: sfn.create_state_machine(
            name=f"scones-selftest-sync-{kind.lower()}-{suffix}",
            definition=json.dumps(SYNC_MACHINE),
            roleArn=ensure_role(),
            type=kind,
        )["stateMachineArn"]
        for kind in ("EXPRESS", "STANDARD")
    }
    try:
        done = sfn.start_sync_execution(stateMachineArn=machines["EXPRESS"], input='{"n": 21}')
        _check(
            "sfn-sync-execution",
            done["status"] == "SUCCEEDED"
            and json.loads(done.get("output") or "null") == {"twice": 42}
            and done["billingDetails"]["billedDurationInMilliseconds"] >= 100,
            done,
        )
        done = sfn.start_sync_execution(stateMachineArn=machines["EXPRESS"], input='{"n": 1}')
        _check(
            "sfn-sync-execution (failure)",
            (done["status"], done.get("error"), done.get("cause"), "output" in done)
            == ("FAILED", "TooSmall", "n is 1 or less", False),
            done,
        )
        try:
            sfn.start_sync_execution(stateMachineArn=machines["STANDARD"], input="{}")
            refused = "answered"
        except sfn.exceptions.StateMachineTypeNotSupported:
            refused = "refused"
        _check("sfn-sync-execution (STANDARD refused)", refused == "refused", refused)
    finally:
        for arn in machines.values():
            sfn.delete_state_machine(stateMachineArn=arn)


def check_update_endpoint(suffix: str) -> None:
    """sagemaker-update-endpoint: an endpoint moved to another configuration serves its variants at once; an
    unknown configuration is refused and changes nothing."""
    sm = aws.client("sagemaker")
    name = f"scones-selftest-{suffix}"
    models = []
    for n in ("a", "b"):
        sm.create_model(
            ModelName=f"{name}-{n}",
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/selftest:1"},
            ExecutionRoleArn=ensure_role(),
        )
        variant = {"VariantName": "AllTraffic", "ModelName": f"{name}-{n}", "InstanceType": "ml.m5.large"}
        sm.create_endpoint_config(
            EndpointConfigName=f"{name}-{n}", ProductionVariants=[{**variant, "InitialInstanceCount": 1}]
        )
        models.append(f"{name}-{n}")
    try:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-a")
        sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-b")
        found = sm.describe_endpoint(EndpointName=name)
        _check(
            "sagemaker-update-endpoint",
            (found["EndpointConfigName"], found["EndpointStatus"]) == (f"{name}-b", "InService"),
            found,
        )
        try:
            sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-none")
            refused = "answered"
        except sm.exceptions.ClientError as exc:
            refused = exc.response["Error"]["Code"]
        now = sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        _check(
            "sagemaker-update-endpoint (unknown configuration)",
            (refused, now) == ("ValidationException", f"{name}-b"),
            (refused, now),
        )
    finally:
        with contextlib.suppress(sm.exceptions.ClientError):
            sm.delete_endpoint(EndpointName=name)
        for model in models:
            sm.delete_endpoint_config(EndpointConfigName=model)
            sm.delete_model(ModelName=model)


def check_caches(before: dict, after: dict) -> None:
    """sfn-clients: the executions above made Task calls without a client each; dispatch-cache: hosts hit."""
    calls = after["sfn_clients"]["calls"] - before["sfn_clients"]["calls"]
    created = after["sfn_clients"]["created"] - before["sfn_clients"]["created"]
    _check("sfn-clients", calls >= 2 and created < calls, f"{calls} interpreter calls made {created} new clients")
    hits = after["dispatch_cache"]["hits"] - before["dispatch_cache"]["hits"]
    _check("dispatch-cache", hits > 0 and after["dispatch_cache"]["hosts"] > 0, after["dispatch_cache"])


def run(url: str, report: Callable[[str], None] = print) -> None:
    """Runs every check against the local cloud at `url` (boto3 must point there); raises SelfTestError."""
    suffix = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    before = health(url)
    missing = sorted(set(PATCHES) - set(before.get("patches", [])))
    _check("patches applied", not missing, f"not applied: {missing}")
    name = check_lambda(suffix)
    report("ok  lambda-subprocess: success, env vars, Unhandled errors, Sandbox.Timedout, LogType=Tail")
    try:
        check_stepfunctions(name, suffix)
        check_stepfunctions(name, suffix + "b")  # a second round must reuse the interpreter's clients
        report("ok  sfn-execution (JSONPath), jsonata, execution-name")
    finally:
        aws.client("lambda").delete_function(FunctionName=name)
    check_cloudformation(suffix)
    report("ok  sfn-cloudformation: Definition, DefinitionSubstitutions, ResultPath null; create, execute, delete")
    check_distributed_map(suffix)
    report(
        "ok  sfn-map-definition, sfn-item-reader, sfn-item-batcher, sfn-result-writer: a Distributed Map over "
        "2,100 keys, MaxItems, batches, EXPRESS children, result files, tolerance"
    )
    check_percentiles(suffix)
    report("ok  cloudwatch-percentiles: p95 by GetMetricData and GetMetricStatistics")

    check_sync_execution(suffix)
    report("ok  sfn-sync-execution: EXPRESS answered with output, error and cause at once; STANDARD refused")
    check_update_endpoint(suffix)
    report("ok  sagemaker-update-endpoint: an endpoint moved to another configuration; an unknown one refused")
    check_caches(before, health(url))
    report("ok  sfn-clients (one client per service), dispatch-cache (hits)")
    report(f"self-test passed in {time.perf_counter() - started:.1f} s")
