"""The embedded local cloud through boto3, as the rest of the project uses it."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from helpers import TARGET, create_function, receive, subscribe_queue, toolbox_zip

from scones import localcloud, selftest
from scones.core import aws, settings
from scones.selftest import ensure_role
from scones.workflow import wait

pytestmark = pytest.mark.integration


def test_self_test_passes(local_cloud):
    lines: list[str] = []
    selftest.run(local_cloud, report=lines.append)
    assert lines[-1].startswith("self-test passed")


def test_s3_put_get_list(local_cloud, unique):
    s3 = aws.client("s3")
    bucket = f"scones-test-{unique}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/one.txt", Body=b"1")
    s3.put_object(Bucket=bucket, Key="a/two.txt", Body=b"22")
    assert s3.get_object(Bucket=bucket, Key="a/two.txt")["Body"].read() == b"22"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert sorted(o["Key"] for o in listed["Contents"]) == ["a/one.txt", "a/two.txt"]


def test_sns_delivers_to_sqs(local_cloud, unique):
    topic = aws.client("sns").create_topic(Name=f"alerts-{unique}")["TopicArn"]
    url = subscribe_queue(topic, f"alerts-{unique}")
    aws.client("sns").publish(TopicArn=topic, Message="scones are burning", Subject="alert")
    bodies = receive(url)
    assert [b["Message"] for b in bodies] == ["scones are burning"]


def test_lambda_success_env_and_tail_log(local_cloud, unique):
    name = f"ok-{unique}"
    create_function(name, "toolbox.ok", env={"GREETING": "scones"})
    response = aws.client("lambda").invoke(FunctionName=name, Payload=b'{"n": 1}', LogType="Tail")
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"n": 2, "greeting": "scones", "items": None}
    assert f"ok handler in {name}" in base64.b64decode(response["LogResult"]).decode()


def test_lambda_uses_boto3_against_the_local_cloud(local_cloud, unique):
    bucket = f"from-lambda-{unique}"
    aws.client("s3").create_bucket(Bucket=bucket)
    create_function(f"s3-{unique}", "toolbox.put_s3")
    payload = json.dumps({"bucket": bucket, "key": "hello.txt", "body": "from inside"})
    response = aws.client("lambda").invoke(FunctionName=f"s3-{unique}", Payload=payload)
    assert "FunctionError" not in response, response["Payload"].read()
    assert aws.client("s3").get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"from inside"


def test_lambda_exception_is_unhandled_with_error_type(local_cloud, unique):
    create_function(f"flaky-{unique}", "toolbox.flaky")
    response = aws.client("lambda").invoke(FunctionName=f"flaky-{unique}", Payload=b'{"key": "k"}')
    body = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "TransientError"
    assert body["errorMessage"] == "transient failure for k"


def test_lambda_timeout_is_sandbox_timedout(local_cloud, unique):
    create_function(f"sleepy-{unique}", "toolbox.sleepy", timeout=1)
    response = aws.client("lambda").invoke(FunctionName=f"sleepy-{unique}", Payload=b'{"sleep": 4}')
    body = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"


def test_lambda_import_error(local_cloud, unique):
    create_function(f"broken-{unique}", "broken.handler")
    body = json.loads(aws.client("lambda").invoke(FunctionName=f"broken-{unique}")["Payload"].read())
    assert body["errorType"] == "Runtime.ImportModuleError"


def test_lambda_event_invoke_is_asynchronous(local_cloud, unique):
    bucket = f"async-{unique}"
    aws.client("s3").create_bucket(Bucket=bucket)
    create_function(f"async-{unique}", "toolbox.put_s3")
    payload = json.dumps({"bucket": bucket, "key": "later.txt"})
    response = aws.client("lambda").invoke(FunctionName=f"async-{unique}", InvocationType="Event", Payload=payload)
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if aws.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount"):
            break
        time.sleep(0.1)
    assert aws.client("s3").get_object(Bucket=bucket, Key="later.txt")["Body"].read() == b"x"


def flow_definition(ok_arn: str, double_arn: str, flaky_arn: str, topic_arn: str) -> dict:
    """lambda:invoke → Choice → Map, or → Retry → Catch → sns:publish → Fail."""
    return {
        "Comment": "local cloud integration flow",
        "StartAt": "Start",
        "States": {
            "Start": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": ok_arn, "Payload.$": "$"},
                "ResultSelector": {"items.$": "$.Payload.items"},
                "ResultPath": "$.start",
                "Next": "Route",
            },
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.mode", "StringEquals": "fail", "Next": "Flaky"}],
                "Default": "FanOut",
            },
            "FanOut": {
                "Type": "Map",
                "ItemsPath": "$.start.items",
                "MaxConcurrency": 4,
                "ResultPath": "$.doubled",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Double",
                    "States": {
                        "Double": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": double_arn, "Payload.$": "$"},
                            "OutputPath": "$.Payload",
                            "End": True,
                        }
                    },
                },
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
            "Flaky": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": flaky_arn, "Payload": {"key": "img.png"}},
                "Retry": [
                    {
                        "ErrorEquals": ["TransientError"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 1.0,
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Alert"}],
                "Next": "Done",
            },
            "Alert": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": topic_arn, "Message.$": "$.error"},
                "ResultPath": None,
                "Next": "Failed",
            },
            "Failed": {"Type": "Fail", "Error": "FlowFailed", "Cause": "the flaky step kept failing"},
        },
    }


JSONATA_FLOW = {
    "QueryLanguage": "JSONata",
    "StartAt": "Setup",
    "States": {
        "Setup": {"Type": "Pass", "Assign": {}, "Next": "Start"},
        "Start": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Arguments": {"FunctionName": "{% $ok %}", "Payload": "{% $states.input %}"},
            "Output": "{% $merge([$states.input, {'items': $states.result.Payload.items}]) %}",
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $states.input.mode = 'fail' %}", "Next": "Flaky"}],
            "Default": "FanOut",
        },
        "FanOut": {
            "Type": "Map",
            "Items": "{% $states.input.items %}",
            "MaxConcurrency": 4,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Double",
                "States": {
                    "Double": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Arguments": {"FunctionName": "{% $double %}", "Payload": "{% $states.input %}"},
                        "Output": "{% $states.result.Payload %}",
                        "End": True,
                    }
                },
            },
            "Output": "{% {'doubled': $states.result, 'total': $sum($states.result)} %}",
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
        "Flaky": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Arguments": {"FunctionName": "{% $flaky %}", "Payload": {"key": "img.png"}},
            "Retry": [{"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Output": "{% $states.errorOutput %}", "Next": "Alert"}],
            "Next": "Done",
        },
        "Alert": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish",
            "Arguments": {"TopicArn": "{% $topic %}", "Message": "{% $states.input %}"},
            "Next": "Failed",
        },
        "Failed": {"Type": "Fail", "Error": "FlowFailed", "Cause": "the flaky step kept failing"},
    },
}


@pytest.fixture(scope="module")
def flow_functions(local_cloud):
    import uuid

    suffix = uuid.uuid4().hex[:8]
    return {
        "ok": create_function(f"flow-ok-{suffix}", "toolbox.ok"),
        "double": create_function(f"flow-double-{suffix}", "toolbox.double"),
        "flaky": create_function(f"flow-flaky-{suffix}", "toolbox.flaky"),
    }


@pytest.fixture
def flow_parts(flow_functions, unique):
    """The shared functions, and a topic and queue of this test's own: no test reads another's alert."""
    topic = aws.client("sns").create_topic(Name=f"flow-alerts-{unique}")["TopicArn"]
    queue = subscribe_queue(topic, f"flow-alerts-{unique}")
    return unique, flow_functions, topic, queue


def run(machine_arn: str, payload: dict) -> dict:
    sfn = aws.client("stepfunctions")
    started = sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(payload))
    return wait(sfn, started["executionArn"])


def history_types(execution_arn: str) -> list[str]:
    events = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["type"] for e in events]


def test_jsonpath_flow_map_retry_catch_sns_fail(flow_parts):
    suffix, arns, topic, queue = flow_parts
    definition = flow_definition(arns["ok"], arns["double"], arns["flaky"], topic)
    machine = aws.client("stepfunctions").create_state_machine(
        name=f"flow-{suffix}", definition=json.dumps(definition), roleArn=ensure_role()
    )["stateMachineArn"]

    good = run(machine, {"mode": "map", "items": [1, 2, 3]})
    assert good["status"] == "SUCCEEDED"
    assert json.loads(good["output"])["doubled"] == [2, 4, 6]
    assert history_types(good["executionArn"]).count("MapIterationSucceeded") == 3

    bad = run(machine, {"mode": "fail", "items": []})
    assert bad["status"] == "FAILED"
    assert bad["error"] == "FlowFailed"
    types = history_types(bad["executionArn"])
    assert types.count("TaskFailed") + types.count("LambdaFunctionFailed") == 3  # first try + 2 retries
    assert "FailStateEntered" in types
    (message,) = receive(queue)
    assert json.loads(message["Message"])["Error"] == "TransientError"
    assert message["TopicArn"] == topic


def test_jsonata_flow(flow_parts):
    suffix, arns, topic, queue = flow_parts
    definition = json.loads(json.dumps(JSONATA_FLOW))
    # Variables assigned in a first Pass state, as console-written machines do.
    definition["States"]["Setup"]["Assign"] = {
        "ok": arns["ok"],
        "double": arns["double"],
        "flaky": arns["flaky"],
        "topic": topic,
    }
    machine = aws.client("stepfunctions").create_state_machine(
        name=f"flow-jsonata-{suffix}", definition=json.dumps(definition), roleArn=ensure_role()
    )["stateMachineArn"]

    good = run(machine, {"mode": "map", "items": [1, 2, 3]})
    assert good["status"] == "SUCCEEDED", (good.get("error"), good.get("cause"))
    assert json.loads(good["output"]) == {"doubled": [2, 4, 6], "total": 12}

    bad = run(machine, {"mode": "fail", "items": []})
    assert bad["status"] == "FAILED" and bad["error"] == "FlowFailed"
    (message,) = receive(queue)
    assert "TransientError" in message["Message"] and message["TopicArn"] == topic


CFN_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {
        "CodeBucket": {"Type": "String"},
        "CodeKey": {"Type": "String"},
        "Suffix": {"Type": "String"},
    },
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": {"Fn::Sub": "cfn-role-${Suffix}"},
                "AssumeRolePolicyDocument": selftest.TRUST,
            },
        },
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": {"Fn::Sub": "cfn-ok-${Suffix}"},
                "Runtime": "python3.12",
                "Handler": "toolbox.ok",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Environment": {"Variables": {"GREETING": "from-cfn"}},
            },
        },
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::Sub": "cfn-topic-${Suffix}"}}},
        "Machine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": {"Fn::Sub": "cfn-machine-${Suffix}"},
                "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                "Definition": {
                    "StartAt": "Call",
                    "States": {
                        "Call": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": "${FnArn}", "Payload.$": "$"},
                            "OutputPath": "$.Payload",
                            "Next": "Tell",
                        },
                        "Tell": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sns:publish",
                            "Parameters": {"TopicArn": "${TopicArn}", "Message.$": "$.greeting"},
                            "ResultPath": None,
                            "End": True,
                        },
                    },
                },
                "DefinitionSubstitutions": {
                    "FnArn": {"Fn::GetAtt": ["Fn", "Arn"]},
                    "TopicArn": {"Ref": "Topic"},
                },
            },
        },
    },
    "Outputs": {"Machine": {"Value": {"Ref": "Machine"}}, "Topic": {"Value": {"Ref": "Topic"}}},
}


def test_cloudformation_stack_create_execute_delete(local_cloud, unique):
    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    bucket = f"cfn-code-{unique}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="toolbox.zip", Body=toolbox_zip())
    stack = f"cfn-{unique}"
    params = {"CodeBucket": bucket, "CodeKey": "toolbox.zip", "Suffix": unique}
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(CFN_TEMPLATE),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    queue = subscribe_queue(outputs["Topic"], f"cfn-{unique}")

    done = run(outputs["Machine"], {"n": 1})
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["greeting"] == "from-cfn", output
    assert receive(queue)[0]["Message"] == "from-cfn"

    cfn.delete_stack(StackName=stack)
    functions = [f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]]
    machines = [m["name"] for m in aws.client("stepfunctions").list_state_machines()["stateMachines"]]
    topics = [t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]]
    roles = [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]
    assert f"cfn-ok-{unique}" not in functions
    assert f"cfn-machine-{unique}" not in machines
    assert outputs["Topic"] not in topics
    assert f"cfn-role-{unique}" not in roles


def test_an_ephemeral_cloud_removes_its_state_dir_and_restores_the_environment(local_cloud, monkeypatch):
    """A test session's cloud holds the container stand-ins' venvs (1.4 GB once an endpoint ran): left behind, they
    filled /tmp a session at a time until CI's own pip install failed with ENOSPC."""
    if TARGET != "local":
        pytest.skip("the embedded cloud's own state dir")
    monkeypatch.setenv(settings.STATE_DIR, "/nowhere/of/ours")
    with localcloud.ephemeral("scones-ephemeral-") as cloud:
        state = settings.state_dir()
        assert state.is_dir() and str(state) != "/nowhere/of/ours"
        (state / "venvs" / "some-image").mkdir(parents=True)  # as a container stand-in leaves it
        assert aws.client("s3").list_buckets()["Buckets"], cloud.url
    assert not state.exists()
    assert os.environ[settings.STATE_DIR] == "/nowhere/of/ours"
