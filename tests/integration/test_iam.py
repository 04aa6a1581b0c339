"""IAM, checked: what each piece really calls, against the policy it runs under (moto's policy evaluator).

- The Lambdas: template.yaml deployed on the local cloud, each function's worker given a boto3 call recorder
  (tests/aws_recorder.py, through PYTHONPATH: tests only), invoked on a present image, a missing one, an image to
  classify and inferences to filter; their calls against their roles' policies as CloudFormation made them.
- The state machines: every Task of the deployed definitions against the workflow role.
- The schedule: the CreateProcessingJob its target sends, against the scheduler role's policy the deploy put.
- The deploying user: every call of `deploy --target aws` → redeploy → `clean --target aws`, and what
  CloudFormation does in the user's name for template.yaml's resources (its resource schemas' handler
  permissions, as cfn-lint ships them), against docs/iam/deployer-policy.json.
"""

from __future__ import annotations

import ast
import base64
import json
import urllib.parse
import uuid

import aws_recorder
import iam_check
import pytest
from helpers import ROOT, solid_png

from scones import stacks
from scones.core import aws
from scones.deploy import requests, stack, validate
from scones.deploy.spec import Spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOYER_POLICY = ROOT / "docs" / "iam" / "deployer-policy.json"
SAGEMAKER_ROLE_POLICY = ROOT / "docs" / "iam" / "sagemaker-role-policy.json"
# CloudFormation handler permissions for features template.yaml does not use (VPC, EFS, KMS keys of its own,
# log delivery to Firehose/S3, data protection): the user need not hold them.
UNUSED_FEATURES = ("ec2:", "elasticfilesystem:", "s3files:", "kms:", "firehose:", "s3:REST.")
UNUSED_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:PutDataProtectionPolicy",
    "logs:GetDataProtectionPolicy",
    "logs:DeleteDataProtectionPolicy",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DeleteResourcePolicy",
    "logs:PutIndexPolicy",
    "logs:DescribeIndexPolicies",
    "logs:DeleteIndexPolicy",
    "logs:PutBearerTokenAuthentication",
    "sns:PutDataProtectionPolicy",
    "sns:GetDataProtectionPolicy",
    "lambda:PassCapacityProvider",
    "lambda:AssociateRuntimeAlias",
    "logs:AssociateKmsKey",
    "logs:DisassociateKmsKey",
}
PASSES_ROLE_TO = {
    "AWS::Lambda::Function": "lambda.amazonaws.com",
    "AWS::StepFunctions::StateMachine": "states.amazonaws.com",
}


def role_policies(role_arn: str) -> list[dict]:
    """The inline policies of a role as the cloud holds them (CloudFormation resolved the template's !Sub/!Ref)."""
    iam = aws.client("iam")
    name = role_arn.rsplit("/", 1)[-1]
    documents = []
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        if isinstance(document, str):  # AWS: URL-encoded JSON; moto's CloudFormation stores a Python repr
            text = urllib.parse.unquote(document)
            document = json.loads(text) if text.lstrip().startswith('{"') else ast.literal_eval(text)
        documents.append(document)
    assert documents, f"role {name} has no inline policy"
    return documents


@pytest.fixture(scope="module")
def workflow(local_cloud, tmp_path_factory):
    """template.yaml on the local cloud, its Lambdas recording their boto3 calls, each invoked."""
    suffix = uuid.uuid4().hex[:8]
    prefix, bucket = f"iam{suffix}", f"iam-{suffix}"
    s3, lam = aws.client("s3"), aws.client("lambda")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="img/bright.png", Body=solid_png(230))
    params = {
        "NamePrefix": prefix,
        "CodeBucket": bucket,
        "DataBucket": bucket,
        "EndpointName": f"ep-{suffix}",
        "Labels": "bicycle,motorcycle",
        "Threshold": "0.93",
        "SageMakerRuntimeUrl": "",
        "AlertEmail": "",
    }
    name = f"{prefix}-workflow"
    outputs = stack.deploy(params, name=name, log=lambda _m: None).outputs
    folder = tmp_path_factory.mktemp("iam-record")
    record, site = folder / "calls.jsonl", aws_recorder.sitecustomize_dir(folder / "site")
    functions = {key: outputs[f"{key}FunctionArn"] for key in ("Serialize", "Classify", "Filter")}
    for arn in functions.values():
        env = lam.get_function_configuration(FunctionName=arn).get("Environment", {}).get("Variables", {})
        extra = {"PYTHONPATH": str(site), aws_recorder.RECORD_ENV: str(record)}
        lam.update_function_configuration(FunctionName=arn, Environment={"Variables": {**env, **extra}})

    def invoke(key: str, event: dict) -> dict:
        answer = lam.invoke(FunctionName=functions[key], Payload=json.dumps(event).encode())
        return {"error": answer.get("FunctionError"), "payload": json.loads(answer["Payload"].read() or b"null")}

    image = base64.b64encode(solid_png(230)).decode()
    answers = {
        "present": invoke("Serialize", {"s3_bucket": bucket, "s3_key": "img/bright.png"}),
        "missing": invoke("Serialize", {"s3_bucket": bucket, "s3_key": "img/no-such-image.png"}),
        "classify": invoke("Classify", {"s3_bucket": bucket, "s3_key": "img/bright.png", "image_data": image}),
        "filter": invoke("Filter", {"inferences": [0.99, 0.01], "labels": ["bicycle", "motorcycle"]}),
    }
    yield {
        "outputs": outputs,
        "functions": functions,
        "answers": answers,
        "calls": aws_recorder.read(record),
        "account": aws.client("sts").get_caller_identity()["Account"],
    }
    stacks.delete(name, log=lambda _m: None)


def test_the_lambdas_calls_were_recorded_in_their_workers(workflow):
    # Given the recorder in each worker, when the functions ran, then their own calls are in the record
    calls = workflow["calls"]
    serialize = [c for c in calls if c.function.endswith("-serialize-image-data")]
    assert [(c.operation, c.error) for c in serialize] == [("GetObject", ""), ("GetObject", "NoSuchKey")]
    assert [c.operation for c in calls if c.function.endswith("-classify-image")] == ["InvokeEndpoint"]
    assert not [c for c in calls if c.function.endswith("-filter-inferences")]  # it calls nothing
    assert workflow["answers"]["missing"]["payload"]["errorType"] == "ImageNotFoundError"


@pytest.mark.parametrize("key", ["Serialize", "Classify", "Filter"])
def test_each_lambdas_calls_are_allowed_by_its_role_in_the_template(workflow, key):
    arn = workflow["functions"][key]
    function = arn.rsplit(":", 1)[-1]
    role = aws.client("lambda").get_function_configuration(FunctionName=arn)["Role"]
    calls = [c for c in workflow["calls"] if c.function == function]
    assert iam_check.refused(calls, role_policies(role), workflow["account"]) == []


def test_the_serialize_role_may_list_the_bucket_so_a_missing_image_is_404_not_403(workflow):
    """Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied: ImageNotFoundError never happens."""
    arn = workflow["functions"]["Serialize"]
    role = aws.client("lambda").get_function_configuration(FunctionName=arn)["Role"]
    (missing,) = [c for c in workflow["calls"] if c.error == "NoSuchKey"]
    needs = [str(n) for n in iam_check.needs(missing, workflow["account"])]
    assert any(n.startswith("s3:ListBucket on arn:aws:s3:::iam-") for n in needs), needs
    assert iam_check.refused([missing], role_policies(role), workflow["account"]) == []


def test_the_state_machines_may_run_every_task(workflow):
    sfn = aws.client("stepfunctions")
    for key in ("ClassifyImageStateMachineArn", "ClassifyBatchStateMachineArn"):
        described = sfn.describe_state_machine(stateMachineArn=workflow["outputs"][key])
        tasks = iam_check.state_machine_needs(json.loads(described["definition"]))
        assert {n.action for n in tasks} == {"lambda:InvokeFunction", "sns:Publish"}
        policies = role_policies(described["roleArn"])
        assert [str(n) for n in tasks if not iam_check.permitted(policies, n)] == []


def test_the_scheduler_role_may_start_the_job_its_schedule_sends(aws_chain_calls):
    schedules = [c for c in aws_chain_calls if c.operation == "CreateSchedule"]
    assert schedules
    for schedule in schedules:
        role = schedule.params["Target"]["RoleArn"].rsplit("/", 1)[-1]
        (put,) = [c for c in aws_chain_calls if c.operation == "PutRolePolicy" and c.params["RoleName"] == role]
        policy = json.loads(put.params["PolicyDocument"])
        job = validate.scheduled_job(schedule.params)
        call = aws_recorder.Call("sagemaker", "CreateProcessingJob", job, schedule.region)
        needs = iam_check.needs(call, job["RoleArn"].split(":")[4])
        assert {n.action for n in needs} == {"sagemaker:CreateProcessingJob", "sagemaker:AddTags", "iam:PassRole"}
        assert [str(n) for n in needs if not iam_check.permitted([policy], n)] == []


def cloudformation_permissions(template: dict, region: str) -> dict[str, list[str]]:
    """What CloudFormation calls in the deploying user's name for each resource type of the template: the
    create, read, update and delete handlers' permissions of the type's registry schema (cfn-lint's copy),
    less those of features the template does not use."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    found = {}
    for kind in sorted({r["Type"] for r in template["Resources"].values()}):
        handlers = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, kind).schema["handlers"]
        actions = {
            a for h in ("create", "read", "update", "delete") for a in handlers.get(h, {}).get("permissions", [])
        }
        if kind not in PASSES_ROLE_TO:
            actions.discard("iam:PassRole")  # SNS's delivery-logging and Firehose roles: the template has none
        found[kind] = sorted(a for a in actions if not a.startswith(UNUSED_FEATURES) and a not in UNUSED_ACTIONS)
    return found


def test_the_deployer_policy_allows_every_call_of_the_chain(aws_chain_calls):
    policy = json.loads(DEPLOYER_POLICY.read_text())
    account = next(c.params["RoleArn"].split(":")[4] for c in aws_chain_calls if c.operation == "CreateTrainingJob")
    assert iam_check.refused(aws_chain_calls, [policy], account) == []


def test_the_deployer_policy_allows_what_cloudformation_does_for_the_template():
    import yaml

    policy = json.loads(DEPLOYER_POLICY.read_text())
    template = yaml.safe_load(stack.TEMPLATE.read_text())
    missing = [
        f"{kind}: {action}"
        for kind, actions in cloudformation_permissions(template, "us-east-1").items()
        for action in actions
        if not iam_check.permitted([policy], iam_check.Need(action, context=_passed_to(action, kind)))
    ]
    assert missing == []


def _passed_to(action: str, kind: str) -> tuple[tuple[str, str], ...]:
    return (("iam:PassedToService", PASSES_ROLE_TO[kind]),) if action == "iam:PassRole" else ()


def test_the_deployer_policy_is_a_policy_iam_accepts(local_cloud, unique):
    """IAM's grammar (moto's validator) and its size limit for a managed policy: 6,144 characters, spaces aside."""
    text = DEPLOYER_POLICY.read_text()
    assert len("".join(text.split())) <= 6144
    arn = aws.client("iam").create_policy(PolicyName=f"scones-deployer-{unique}", PolicyDocument=text)["Policy"]["Arn"]
    aws.client("iam").delete_policy(PolicyArn=arn)


def sagemaker_role_policies(bucket: str) -> list[dict]:
    """The SageMaker execution role the README has users create: AmazonSageMakerFullAccess (moto's copy of the
    managed policy) and docs/iam/sagemaker-role-policy.json for the project's bucket."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    managed = json.loads(aws_managed_policies_data)["AmazonSageMakerFullAccess"]["Document"]
    inline = json.loads(SAGEMAKER_ROLE_POLICY.read_text().replace("scones-unlimited", bucket))
    return [managed, inline]


def test_the_documented_sagemaker_role_allows_what_the_jobs_and_the_endpoint_do_with_it(aws_chain_calls):
    # Given the training jobs and models the chain created, and the processing jobs its schedules send
    created = [c for c in aws_chain_calls if c.operation in ("CreateTrainingJob", "CreateModel")]
    for schedule in [c for c in aws_chain_calls if c.operation == "CreateSchedule"]:
        job = validate.scheduled_job(schedule.params)
        created.append(aws_recorder.Call("sagemaker", "CreateProcessingJob", job, schedule.region))
    assert {c.operation for c in created} == {"CreateTrainingJob", "CreateModel", "CreateProcessingJob"}
    refused = set()
    for call in created:
        account = (call.params.get("RoleArn") or call.params["ExecutionRoleArn"]).split(":")[4]
        bucket = next(u for u in _s3_uris(call.params) if u).split("/")[2]
        policies = sagemaker_role_policies(bucket)
        # then what SageMaker does with the role for each is allowed
        refused |= {str(n) for n in iam_check.job_needs(call, account) if not iam_check.permitted(policies, n)}
    assert sorted(refused) == []


def _s3_uris(value: object) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in _s3_uris(v)]
    if isinstance(value, list):
        return [u for v in value for u in _s3_uris(v)]
    return [value] if isinstance(value, str) and value.startswith("s3://") else []


@pytest.fixture(scope="module")
def monitoring_job_calls(local_cloud, aws_calls, tmp_path_factory) -> list:
    """The boto3 calls of one `scones.monitoring` run as the hourly job makes it: captured records in S3, the
    newest model's baseline computed from the staged test split and stored beside it, metrics put."""
    import io
    import os
    import tarfile

    from helpers import environ, make_brightness_model

    from scones.core import settings
    from scones.monitoring import monitor

    suffix = uuid.uuid4().hex[:8]
    bucket, endpoint = f"mon-{suffix}", f"ep-{suffix}"
    tmp = tmp_path_factory.mktemp("monitoring-job")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    model = make_brightness_model(tmp / "model")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model.iterdir()):
            tar.add(path, arcname=path.name)
    s3.put_object(Bucket=bucket, Key="models/mon-job/output/model.tar.gz", Body=buffer.getvalue())
    lines = []
    for i, (label, value) in enumerate([("bicycle", 230), ("motorcycle", 25)] * 3):
        name = f"{label}_s_{i:06d}.png"
        s3.put_object(Bucket=bucket, Key=f"data/test/{name}", Body=solid_png(value))
        lines.append(f"{i}\t{0 if label == 'bicycle' else 1}\t{name}")
    s3.put_object(Bucket=bucket, Key="data/test.lst", Body="\n".join(lines).encode())
    recorded = [json.loads(line) for line in (ROOT / "tests" / "events" / "capture_aws.jsonl").read_text().splitlines()]
    records = []
    for i in range(24):  # the checks need 20 records at least
        record = json.loads(json.dumps(recorded[i % len(recorded)]))
        record["eventMetadata"]["eventId"] = str(uuid.uuid4())
        records.append(json.dumps(record))
    records = "\n".join(records).encode()
    key = f"datacapture/{endpoint}/AllTraffic/2024/11/25/23/21-43-000-{uuid.uuid4()}.jsonl"
    s3.put_object(Bucket=bucket, Key=key, Body=records)
    start = len(aws_calls.calls)
    arguments = requests.processing_job_request(Spec(), "123456789012", "src/", lambda *_a: "image")[
        "AppSpecification"
    ]["ContainerArguments"]
    with environ({settings.DATA_DIR: str(tmp / "data")}):
        monitor.run(
            capture_uri=f"s3://{bucket}/datacapture/{endpoint}",
            out=tmp / "out",
            threshold=float(arguments[arguments.index("--threshold") + 1]),  # as the scheduled job passes it
            endpoint=endpoint,
            bucket=bucket,
            prefix="data",
            log=lambda _m: None,
        )
    assert os.path.exists(tmp / "out")
    return [c for c in aws_calls.calls[start:] if c.by_scones]


def test_the_documented_sagemaker_role_allows_the_monitoring_jobs_own_calls(monitoring_job_calls):
    calls = monitoring_job_calls
    assert {"ListObjectsV2", "GetObject", "PutObject", "PutMetricData"} <= {c.operation for c in calls}
    bucket = next(c.params["Bucket"] for c in calls if c.operation == "ListObjectsV2")
    assert iam_check.refused(calls, sagemaker_role_policies(bucket), "123456789012") == []


def test_the_monitoring_job_is_given_its_threshold_and_looks_up_no_stack(monitoring_job_calls):
    # the SageMaker role may not describe the stack: a lookup would be refused and fall back to the default
    assert "DescribeStacks" not in {c.operation for c in monitoring_job_calls}


def test_the_lambdas_and_the_monitoring_jobs_requests_pass_the_service_model(workflow, monitoring_job_calls):
    calls = workflow["calls"] + monitoring_job_calls
    refused = [
        f"{c.service}.{c.operation}: {p}" for c in calls for p in validate.problems(c.service, c.operation, c.params)
    ]
    assert refused == []
