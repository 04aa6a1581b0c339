"""`scones deploy --target aws` and `scones clean --target aws` against the local cloud's SageMaker, Application
Auto Scaling, CloudFormation, Scheduler, IAM and tagging APIs (moto's control planes).

The test-only switch is the environment alone: the `local_cloud` fixture points AWS_ENDPOINT_URL at the local
cloud, and the aws code path runs unchanged. moto completes a training job at once without running a
container, so the first deploy stops at the missing artifact; the test then writes the artifact where the
container would have (playing SageMaker's part), and the deploy resumes from there.
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from scones.core import aws, settings
from scones.core.errors import NotReadyError
from scones.deploy import aws_clean, naming, requests, sagemaker
from scones.deploy.spec import Spec

pytestmark = pytest.mark.integration

TRUST_SAGEMAKER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def make_role(name: str, trust: dict = TRUST_SAGEMAKER) -> str:
    return aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def fake_artifact(onnx: bytes = b"onnx") -> bytes:
    """What train.py leaves in SM_MODEL_DIR, in miniature (SageMaker packs it as model.tar.gz); another `onnx`
    makes another model (another name and endpoint config when deployed)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in {"labels.json": b'["bicycle", "motorcycle"]', "model.onnx": onnx}.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deployed(local_cloud, cifar_tarball, tmp_path_factory, aws_calls):
    """One deploy on the local cloud: first run (stops at the artifact), the artifact written, second run. Every
    boto3 call of the chain is recorded (aws_calls) for test_requests_strict.py and test_iam.py."""
    import os
    import uuid

    suffix = uuid.uuid4().hex[:8]
    os.environ[settings.DATA_DIR] = str(tmp_path_factory.mktemp("data"))
    spec = Spec(
        stack=f"t{suffix}-workflow",
        bucket=f"t-{suffix}",
        endpoint=f"ep-{suffix}",
        region=settings.region(),
        role=make_role(f"sm-{suffix}"),
        spot=True,
        source=str(cifar_tarball),
    )
    logs: list[str] = []
    with pytest.raises(NotReadyError, match=r"artifact .* is missing"):
        sagemaker.deploy(spec, poll_s=0.01, log=logs.append)
    sm = aws.client("sagemaker")
    (job,) = sm.list_training_jobs(NameContains=requests.training_base_name(spec))["TrainingJobSummaries"]
    artifact = sm.describe_training_job(TrainingJobName=job["TrainingJobName"])["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = artifact[5:].split("/", 1)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=fake_artifact())
    report = sagemaker.deploy(spec, poll_s=0.01, log=logs.append)
    yield spec, report, job["TrainingJobName"], logs
    os.environ.pop(settings.DATA_DIR, None)


def test_deploy_creates_the_training_job_as_planned(deployed):
    spec, report, job, _ = deployed
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=job)
    assert job.startswith(requests.training_base_name(spec))
    assert ("train", "reused", job) in report.actions  # the second run did not train again
    assert described["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert described["EnableManagedSpotTraining"] is True
    stopping = described["StoppingCondition"]
    assert stopping["MaxRuntimeInSeconds"] == 3600 and stopping["MaxWaitTimeInSeconds"] >= 3600
    assert "pytorch-training:2.8.0-gpu-py312" in described["AlgorithmSpecification"]["TrainingImage"]
    assert described["HyperParameters"]["classes"] == "bicycle,motorcycle"
    channels = {c["ChannelName"] for c in described["InputDataConfig"]}
    assert {"train", "test", "train_lst", "test_lst"} <= channels
    assert described["OutputDataConfig"]["S3OutputPath"] == f"s3://{spec.bucket}/models"


def test_deploy_serves_the_model_with_full_capture_and_scaling(deployed):
    spec, _, _, _ = deployed
    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    endpoint = sm.describe_endpoint(EndpointName=spec.endpoint)
    assert endpoint["EndpointStatus"] == "InService"
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 1
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == f"s3://{spec.bucket}/datacapture"
    assert sorted(o["CaptureMode"] for o in capture["CaptureOptions"]) == ["Input", "Output"]
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert "pytorch-inference:2.6.0-cpu-py312" in model["PrimaryContainer"]["Image"]
    bucket, key = model["PrimaryContainer"]["ModelDataUrl"][5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        names = tar.getnames()
    assert {"labels.json", "model.onnx", "code/inference.py", "code/requirements.txt"} <= set(names)

    scaling = aws.client("application-autoscaling")
    resource = naming.scaling_resource_id(spec.endpoint)
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 70.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == naming.SCALING_METRIC


def test_deploy_tags_everything_and_points_the_stack_at_the_endpoint(deployed):
    spec, _, job, _ = deployed
    sm = aws.client("sagemaker")
    wanted = {"project": "scones", "scones:stack": spec.stack}
    endpoint = sm.describe_endpoint(EndpointName=spec.endpoint)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    arns = [
        endpoint["EndpointArn"],
        config["EndpointConfigArn"],
        sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])["ModelArn"],
        sm.describe_training_job(TrainingJobName=job)["TrainingJobArn"],
    ]
    for arn in arns:
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags.items() >= wanted.items(), arn
    stack = aws.client("cloudformation").describe_stacks(StackName=spec.stack)["Stacks"][0]
    assert {t["Key"]: t["Value"] for t in stack["Tags"]}.items() >= wanted.items()
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["EndpointName"] == spec.endpoint and params["SageMakerRuntimeUrl"] == ""
    tagged = aws.client("resourcegroupstaggingapi").get_resources(
        TagFilters=[{"Key": "scones:stack", "Values": [spec.stack]}]
    )["ResourceTagMappingList"]
    assert set(arns) <= {aws_clean.arn_of(m["ResourceARN"]) for m in tagged}


def test_deploy_schedules_hourly_monitoring(deployed):
    spec, _, _, _ = deployed
    schedule = aws.client("scheduler").get_schedule(
        Name=naming.schedule_name(spec), GroupName=naming.schedule_group(spec)
    )
    assert schedule["ScheduleExpression"] == "rate(1 hour)"
    assert schedule["Target"]["Arn"] == naming.SCHEDULER_TARGET
    job = json.loads(schedule["Target"]["Input"])
    assert job["AppSpecification"]["ContainerEntrypoint"] == [
        "/bin/sh",
        f"{naming.MONITOR_CODE}/{naming.MONITOR_SCRIPT}",
    ]
    assert job["Environment"][settings.SCONES_ENDPOINT_NAME] == spec.endpoint
    # the job's code input holds run.sh and the source tarball, both uploaded by the deploy
    source = job["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    listed = aws.client("s3").list_objects_v2(Bucket=spec.bucket, Prefix=source.split("/", 3)[3])["Contents"]
    assert {o["Key"].rsplit("/", 1)[-1] for o in listed} == {naming.MONITOR_SCRIPT, naming.MONITOR_TARBALL}
    role = aws.client("iam").get_role(RoleName=naming.scheduler_role_name(spec))["Role"]
    assert schedule["Target"]["RoleArn"] == role["Arn"]
    # a start the scheduler cannot make is retried, then lands in a queue whose alarm tells the alert topic
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] > 0
    queue_arn = schedule["Target"]["DeadLetterConfig"]["Arn"]
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=naming.monitor_dlq_name(spec))["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"] == queue_arn
    (alarm,) = aws.client("cloudwatch").describe_alarms(AlarmNames=[naming.monitor_alarm_name(spec)])["MetricAlarms"]
    topic = aws.client("cloudformation").describe_stacks(StackName=spec.stack)["Stacks"][0]["Outputs"]
    assert alarm["AlarmActions"] == [o["OutputValue"] for o in topic if o["OutputKey"] == "AlertTopicArn"]


def test_a_second_deploy_changes_nothing(deployed):
    spec, _, _, _ = deployed
    lines: list[str] = []
    report = sagemaker.deploy(spec, poll_s=0.01, log=lines.append)
    assert report.changed == [], report.changed
    assert {step for step, _, _ in report.actions} >= {"train", "package", "model", "endpoint", "scaling", "stack"}


def test_clean_leaves_nothing_tagged_and_a_second_clean_finds_nothing(deployed):
    spec, _, _, _ = deployed
    listed = aws_clean.inventory(spec)
    kinds = [item.kind for item in listed]
    assert kinds.index("scaling-policy") < kinds.index("scalable-target") < kinds.index("endpoint")
    assert kinds.index("endpoint") < kinds.index("endpoint-config") < kinds.index("model") < kinds.index("stack")
    assert kinds.index("schedule") < kinds.index("alarm") < kinds.index("dead-letter-queue")  # monitoring's
    result = aws_clean.clean(spec, poll_s=0.01, log=lambda _m: None)
    assert result.left == []
    tagged = aws.client("resourcegroupstaggingapi").get_resources(
        TagFilters=[{"Key": "scones:stack", "Values": [spec.stack]}]
    )["ResourceTagMappingList"]
    assert [m["ResourceARN"] for m in tagged if ":s3:::" not in m["ResourceARN"]] == []
    assert (
        aws.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[naming.scaling_resource_id(spec.endpoint)]
        )["ScalableTargets"]
        == []
    )
    assert aws_clean.inventory(spec) == []
    again = aws_clean.clean(spec, poll_s=0.01, log=lambda _m: None)
    assert again.deleted == [] and again.left == []
    # data stays unless asked: the staged manifest is still there
    aws.client("s3").head_object(Bucket=spec.bucket, Key=f"{spec.prefix}/manifest.json")


def test_clean_purge_data_deletes_the_objects_and_the_bucket_it_made(deployed):
    spec, _, _, _ = deployed
    s3 = aws.client("s3")
    foreign = [  # another stack's, endpoint's and job's, and beside the staged data: never ours (issue #21)
        f"{spec.prefix}/test/not-staged.png",
        "models/other-job/output/model.tar.gz",
        f"{spec.capture_prefix}/other-endpoint/AllTraffic/x.jsonl",
        "deploy/other-workflow/x.zip",
        "monitoring/other-endpoint/report.json",
    ]
    for key in foreign:
        s3.put_object(Bucket=spec.bucket, Key=key, Body=b"not ours")
    listed = [i for i in aws_clean.inventory(spec, purge_data=True) if i.kind == "s3-objects"]
    assert listed and all(" objects: " in i.name and i.keys for i in listed)  # one item per group, with its count
    assert not {k for i in listed for k in i.keys} & set(foreign)
    kept = aws_clean.clean(spec, purge_data=True, poll_s=0.01, log=lambda _m: None)
    assert [i.kind for i, _ in kept.left] == ["bucket"]  # not empty: someone else's objects are in it
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=spec.bucket).get("Contents", [])]
    assert sorted(remaining) == sorted(foreign)
    s3.delete_objects(Bucket=spec.bucket, Delete={"Objects": [{"Key": k} for k in foreign]})
    result = aws_clean.clean(spec, purge_data=True, poll_s=0.01, log=lambda _m: None)
    assert result.left == []
    assert spec.bucket not in [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]


def test_builtin_algorithm_on_a_serverless_endpoint_round_trip(local_cloud, cifar_tarball, tmp_path, monkeypatch):
    """--algorithm builtin --serverless: the course's algorithm on the same staged .lst files; no capture/scaling."""
    import uuid

    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv(settings.DATA_DIR, str(tmp_path))
    spec = Spec(
        stack=f"b{suffix}-workflow",
        bucket=f"b-{suffix}",
        endpoint=f"bep-{suffix}",
        region=settings.region(),
        role=make_role(f"smb-{suffix}"),
        algorithm="builtin",
        serverless=True,
        source=str(cifar_tarball),
    )
    lines: list[str] = []
    report = sagemaker.deploy(spec, poll_s=0.01, log=lines.append)
    sm = aws.client("sagemaker")
    job = sm.describe_training_job(TrainingJobName=report.names["training_job"])
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/image-classification:1")
    assert {c["ChannelName"]: c.get("ContentType") for c in job["InputDataConfig"]} == {
        "train": "application/x-image",
        "validation": "application/x-image",
        "train_lst": "application/x-image",
        "validation_lst": "application/x-image",
    }
    hps = job["HyperParameters"]
    assert (hps["num_classes"], hps["num_training_samples"], hps["image_shape"]) == ("2", "12", "3,32,32")
    config = sm.describe_endpoint_config(EndpointConfigName=report.names["endpoint_config"])
    assert not config.get("DataCaptureConfig") and "ServerlessConfig" in config["ProductionVariants"][0]
    model = sm.describe_model(ModelName=report.names["model"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert any("do not capture data" in line for line in lines)
    assert (
        aws.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[naming.scaling_resource_id(spec.endpoint)]
        )["ScalableTargets"]
        == []
    )
    result = aws_clean.clean(spec, poll_s=0.01, log=lambda _m: None)
    assert result.left == [] and aws_clean.inventory(spec) == []


@pytest.mark.e2e
def test_scones_clean_target_aws_asks_first_and_says_when_nothing_is_there(local_cloud, monkeypatch, capsys):
    from scones import cli

    monkeypatch.setenv(settings.STACK_NAME, "nothing-here-workflow")
    monkeypatch.setenv(settings.SCONES_ENDPOINT_NAME, "nothing-here")
    assert cli.main(["clean", "--target", "aws", "--yes"]) == 0
    assert "nothing to delete" in capsys.readouterr().out


STACK_TAGGED = {  # how each kind of stack resource takes tags (what CloudFormation calls when it propagates them)
    "AWS::Lambda::Function": lambda arn, tags: aws.client("lambda").tag_resource(Resource=arn, Tags=tags),
    "AWS::StepFunctions::StateMachine": lambda arn, tags: aws.client("stepfunctions").tag_resource(
        resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()]
    ),
    "AWS::SNS::Topic": lambda arn, tags: aws.client("sns").tag_resource(
        ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    ),
    "AWS::Logs::LogGroup": lambda arn, tags: aws.client("logs").tag_resource(resourceArn=arn, tags=tags),
}


def propagate_stack_tags(stack_name: str) -> list[str]:
    """Play CloudFormation's part: on AWS a stack's tags, with aws:cloudformation:stack-name, go onto every
    resource it creates that takes tags, so tag:GetResources lists them. moto 5.2.5 does this for EC2 only."""
    cfn = aws.client("cloudformation")
    found = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    tags = {t["Key"]: t["Value"] for t in found["Tags"]}
    tags.update({"aws:cloudformation:stack-name": stack_name, "aws:cloudformation:stack-id": found["StackId"]})
    tagged = []
    for resource in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]:
        kind, physical = resource["ResourceType"], resource["PhysicalResourceId"]
        if kind not in STACK_TAGGED:
            continue
        if kind == "AWS::Lambda::Function":
            physical = aws.client("lambda").get_function(FunctionName=physical)["Configuration"]["FunctionArn"]
        elif kind == "AWS::Logs::LogGroup":
            (group,) = aws.client("logs").describe_log_groups(logGroupNamePrefix=physical)["logGroups"]
            physical = group["arn"].removesuffix(":*")
        STACK_TAGGED[kind](physical, {**tags, "aws:cloudformation:logical-id": resource["LogicalResourceId"]})
        tagged.append(physical)
    return tagged


@pytest.mark.e2e
def test_clean_counts_what_the_stack_deleted_as_deleted_and_exits_0(local_cloud, monkeypatch, capsys):
    """On AWS the stack's resources carry its tags, so tag:GetResources lists them beside the stack; deleting
    the stack deletes them. A clean that then calls them "left" exits 1 after a complete clean-up."""
    import uuid

    from scones import cli
    from scones.deploy.checks import Report

    suffix = uuid.uuid4().hex[:8]
    spec = Spec(stack=f"o{suffix}-workflow", bucket=f"o-{suffix}", endpoint=f"oep-{suffix}")
    aws.client("s3").create_bucket(Bucket=spec.bucket)
    sagemaker.ensure_stack(spec, Report(), log=lambda _m: None)
    owned = propagate_stack_tags(spec.stack)
    assert len(owned) == 12  # four functions and their log groups, three state machines, the topic (moto: no alarm)
    logs = aws.client("logs")
    groups = {
        f"/aws/lambda/{spec.name_prefix}-{f}" for f in ("serialize-image-data", "classify-image", "filter-inferences")
    }
    found = {g["logGroupName"]: g for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]}
    assert {name: found[name].get("retentionInDays") for name in groups} == dict.fromkeys(groups, 30)
    monkeypatch.setenv(settings.STACK_NAME, spec.stack)
    monkeypatch.setenv(settings.BUCKET, spec.bucket)
    monkeypatch.setenv(settings.SCONES_ENDPOINT_NAME, spec.endpoint)

    code = cli.main(["clean", "--target", "aws", "--yes"])

    out, err = capsys.readouterr()
    assert "left:" not in err and ", left 0" in out, out + err
    assert code == 0
    listed = out.split("will delete", 1)[1]
    assert f"lambda:function      {spec.name_prefix}-classify-image   (deleted with stack {spec.stack})" in listed
    assert f"deleted states:stateMachine {spec.name_prefix}-classify-batch (with the stack)" in out
    functions = [f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]]
    assert not [name for name in functions if name.startswith(spec.name_prefix)]
    assert aws_clean.inventory(spec) == []
    left_groups = {g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]}
    assert not groups & left_groups  # the stack took its log groups with it


@pytest.mark.parametrize("failure", ["refused", "DELETE_FAILED"])
def test_what_a_stack_owns_is_left_when_its_stack_could_not_be_deleted(monkeypatch, failure):
    from botocore.exceptions import ClientError

    from scones.stacks import DeployError

    spec = Spec(stack="f-workflow")
    items = [aws_clean.Item("stack", spec.stack), aws_clean.Item("lambda:function", "f-classify-image", "", spec.stack)]
    monkeypatch.setattr(aws_clean, "inventory", lambda *_a, **_k: [aws_clean.Item(**vars(i)) for i in items])

    def fail(item, *_a):
        if failure == "refused":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteStack")
        raise DeployError("stack f-workflow delete failed: DELETE_FAILED")  # what stacks.delete's waiter raises

    monkeypatch.setattr(aws_clean, "_delete", fail)
    result = aws_clean.clean(spec, poll_s=0.01, log=lambda _m: None)
    expected = (
        "could not delete: AccessDenied" if failure == "refused" else "stack f-workflow delete failed: DELETE_FAILED"
    )
    assert [(i.kind, reason) for i, reason in result.left] == [
        ("stack", expected),
        ("lambda:function", "its stack f-workflow was not deleted"),
    ]
    assert result.deleted == []


def test_log_groups_an_older_stacks_functions_made_are_listed_and_deleted_after_the_stack(local_cloud, monkeypatch):
    """Before template.yaml declared them, Lambda made /aws/lambda/<function> itself on first run; such a group
    outlives the stack and would block the stack that now declares it. clean finds it by the stack's functions."""
    import uuid

    suffix = uuid.uuid4().hex[:8]
    spec = Spec(stack=f"old{suffix}-workflow", bucket=f"old-{suffix}", endpoint=f"oldep-{suffix}")
    group = f"/aws/lambda/old{suffix}-classify-image"
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=group)  # what Lambda made; no tags, no stack
    functions = [{"ResourceType": "AWS::Lambda::Function", "PhysicalResourceId": f"old{suffix}-classify-image"}]
    monkeypatch.setattr(aws_clean, "stack_resources", lambda _stack: functions)

    listed = aws_clean.inventory(spec)

    assert [(i.kind, i.name, i.owner) for i in listed] == [("log-group", group, "")]
    result = aws_clean.clean(spec, poll_s=0.01, log=lambda _m: None)
    assert result.left == [] and [i.name for i in result.deleted] == [group]
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
