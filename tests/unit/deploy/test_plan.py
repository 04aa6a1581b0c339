"""The AWS plan as data and as the dry run prints it (pure: no cloud, no credentials)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from scones.core import settings
from scones.core.errors import UsageError
from scones.data import staged
from scones.deploy import flags, images, naming, plan, render, requests
from scones.deploy.spec import TAG_STACK, Spec

SNAPSHOT = Path(__file__).with_name("dry_run.txt")
ROLE = "arn:aws:iam::123456789012:role/scones-sagemaker"


def fake_image(kind: str, region: str, instance_type: str) -> str:
    return f"{kind}@{region}/{instance_type}"


def normalized(text: str) -> str:
    """Content hashes change with the training and serving code; the snapshot is about everything else."""
    return re.sub(r"(?<=-)[0-9a-f]{8}\b", "<hash8>", text)


def calls(steps: list[plan.Step]) -> dict[str, requests.Call]:
    return {f"{c.service}.{c.operation}": c for s in steps for c in s.calls}


def test_the_dry_run_matches_its_snapshot():
    pytest.importorskip("sagemaker", reason="the snapshot shows the SDK's image URIs: needs the aws extra")
    spec = Spec(role=ROLE, spot=True)
    text = normalized(render.render(plan.build(spec), spec, naming.account_of(spec)))
    if os.environ.get("SCONES_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "dry run changed: review, then SCONES_UPDATE_SNAPSHOTS=1 pytest this test"


MODEL = "s3://b/models/j/output/model.tar.gz"
TRIALS = {  # a new model tried on the deployed endpoint: its own dry-run snapshot each
    "rollout": Spec(role=ROLE, model_uri=MODEL, rollout="canary:10:300"),
    "shadow": Spec(role=ROLE, model_uri=MODEL, shadow_percent=20.0),
}


@pytest.mark.parametrize("name", TRIALS)
def test_the_dry_run_of_a_rollout_and_of_a_shadow_match_their_snapshots(name):
    pytest.importorskip("sagemaker", reason="the snapshot shows the SDK's image URIs: needs the aws extra")
    spec, snapshot = TRIALS[name], SNAPSHOT.with_name(f"dry_run_{name}.txt")
    text = normalized(render.render(plan.build(spec), spec, naming.account_of(spec)))
    if os.environ.get("SCONES_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text(), "dry run changed: review, then SCONES_UPDATE_SNAPSHOTS=1 pytest this test"


def test_a_rollout_makes_its_alarms_then_updates_the_endpoint_blue_green():
    steps = plan.build(TRIALS["rollout"], image=fake_image)
    keys = [s.key for s in steps]
    assert keys.index("alarms") < keys.index("endpoint")
    found = calls(steps)
    assert "sagemaker.create_endpoint" not in found
    alarms = [c.params for s in steps if s.key == "alarms" for c in s.calls]
    assert [(a["MetricName"], a.get("Statistic"), a.get("ExtendedStatistic")) for a in alarms] == [
        ("Invocation5XXErrors", "Sum", None),
        ("ModelLatency", None, "p95"),
    ]
    assert all({"Name": "VariantName", "Value": "AllTraffic"} in a["Dimensions"] for a in alarms)
    update = found["sagemaker.update_endpoint"].params
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert (policy["Type"], policy["CanarySize"]["Value"], policy["WaitIntervalInSeconds"]) == ("CANARY", 10, 300)
    named = update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert named == [{"AlarmName": a["AlarmName"]} for a in alarms]


def test_a_rollout_on_named_alarms_checks_they_exist_and_makes_none():
    spec = Spec(role=ROLE, model_uri=MODEL, rollout="linear:25:60", rollout_alarms=("mine",))
    steps = plan.build(spec, image=fake_image)
    (alarms,) = [s for s in steps if s.key == "alarms"]
    assert [(c.operation, c.params) for c in alarms.calls] == [("describe_alarms", {"AlarmNames": ["mine"]})]
    found = calls(steps)
    rollback = found["sagemaker.update_endpoint"].params["DeploymentConfig"]["AutoRollbackConfiguration"]
    assert rollback == {"Alarms": [{"AlarmName": "mine"}]}


def test_a_shadow_keeps_production_and_adds_the_model_as_a_shadow_variant():
    config = calls(plan.build(TRIALS["shadow"], image=fake_image))["sagemaker.create_endpoint_config"].params
    (production,), (shadow,) = config["ProductionVariants"], config["ShadowProductionVariants"]
    assert production["ModelName"] == naming.UNKNOWN_PRODUCTION_MODEL and production["InitialVariantWeight"] == 1.0
    assert shadow["VariantName"] == "Shadow" and shadow["InitialVariantWeight"] == 0.2
    assert shadow["ModelName"] not in (production["ModelName"],) and shadow["ModelName"].startswith("scones-model-")


@pytest.mark.parametrize(
    "overrides, says",
    [
        (dict(rollout="canary:10:300"), "name it with --model"),
        (dict(shadow=True), "name it with --model"),
        (dict(model=MODEL, shadow=True, shadow_percent=0.0), "outside 0..100"),
        (dict(model=MODEL, rollout="canary:10:300", serverless=True), "need instances"),
    ],
)
def test_a_rollout_or_shadow_the_aws_deploy_cannot_make_is_refused_by_its_flags(overrides, says):
    with pytest.raises(UsageError, match=says):
        flags.spec_from_args(aws_command_args(**overrides))


def test_a_bad_rollout_is_refused_before_anything_is_planned():
    with pytest.raises(UsageError, match="not canary:PERCENT:SECONDS"):
        plan.build(Spec(role=ROLE, model_uri=MODEL, rollout="blue:1:2"), image=fake_image)


def test_the_plan_holds_every_required_setting():
    spec = Spec(role=ROLE, spot=True, max_run_s=1800)
    found = calls(plan.build(spec, image=fake_image))
    job = found["sagemaker.create_training_job"].params
    assert job["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert job["AlgorithmSpecification"]["TrainingImage"] == "training@us-east-1/ml.g4dn.xlarge"
    config = found["sagemaker.create_endpoint_config"].params
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 100
    assert [o["CaptureMode"] for o in config["DataCaptureConfig"]["CaptureOptions"]] == ["Input", "Output"]
    target = found["application-autoscaling.register_scalable_target"].params
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    for call in found.values():
        if "Tags" in call.params and isinstance(call.params["Tags"], list):
            assert {"Key": TAG_STACK, "Value": spec.stack} in call.params["Tags"], call.operation


def test_without_spot_there_is_no_max_wait_and_max_runtime_is_always_set():
    job = calls(plan.build(Spec(role=ROLE), image=fake_image))["sagemaker.create_training_job"].params
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert job["EnableManagedSpotTraining"] is False


def test_metric_definitions_read_train_py_metrics_lines_in_both_shapes():
    lines = ["METRICS epoch=3 train_loss=0.2104 val_acc=0.9 epoch_s=4.1", 'METRICS {"epoch": 3, "val_acc": 0.9}']
    for definition in requests.metric_definitions():
        if definition["Name"] in ("val_acc",):
            assert [re.search(definition["Regex"], line).group(1) for line in lines] == ["0.9", "0.9"]
    train_loss = next(d for d in requests.metric_definitions() if d["Name"] == "train_loss")
    assert re.search(train_loss["Regex"], lines[0]).group(1) == "0.2104"


def test_builtin_uses_the_course_channels_and_hyperparameters():
    spec = Spec(role=ROLE, algorithm="builtin")
    job = requests.training_request(spec, requests.Facts(num_training_samples=1000), fake_image)
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "validation", "train_lst", "validation_lst"]
    assert {c["ContentType"] for c in job["InputDataConfig"]} == {"application/x-image"}
    hps = job["HyperParameters"]
    assert (hps["num_classes"], hps["num_training_samples"], hps["image_shape"]) == ("2", "1000", "3,32,32")
    assert job["AlgorithmSpecification"]["TrainingImage"].startswith("builtin@")
    assert "MetricDefinitions" not in job["AlgorithmSpecification"]


def test_serverless_has_no_capture_and_no_autoscaling_and_says_so():
    spec = Spec(role=ROLE, serverless=True)
    steps = plan.build(spec, image=fake_image)
    found = calls(steps)
    config = found["sagemaker.create_endpoint_config"].params
    assert "DataCaptureConfig" not in config and "ServerlessConfig" in config["ProductionVariants"][0]
    assert not any(k.startswith("application-autoscaling") for k in found)
    assert any("do not capture data" in note for s in steps for note in s.notes)


def test_names_change_with_what_they_describe():
    a, b = Spec(role=ROLE), Spec(role=ROLE, instance_type="ml.p3.2xlarge")
    assert requests.training_base_name(a) != requests.training_base_name(b)
    assert requests.training_base_name(a) == requests.training_base_name(Spec(role=ROLE))
    one, two = (requests.model_request(a, requests.Facts(model_data=f"s3://b/{n}.tar.gz"), fake_image) for n in "12")
    assert one["ModelName"] != two["ModelName"]  # a new artifact is a new model (models are immutable)
    small = requests.endpoint_config_request(a, "m")["EndpointConfigName"]
    large = requests.endpoint_config_request(Spec(endpoint_instance_type="ml.c5.xlarge"), "m")["EndpointConfigName"]
    assert small != large


def test_max_wait_below_max_run_is_refused():
    args = aws_command_args(spot=True, max_run=3600, max_wait=600)
    with pytest.raises(UsageError, match="max wait >= max run"):
        flags.spec_from_args(args)


def aws_command_args(**overrides):
    import argparse

    p = argparse.ArgumentParser()
    flags.add_deploy_flags(p)
    args = p.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_without_the_sdk_the_dry_run_shows_how_to_get_the_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "sagemaker", None)  # import fails as if the aws extra were absent
    monkeypatch.setitem(sys.modules, "sagemaker.core", None)
    text = images.placeholder_or_retrieve("training", "us-east-1", "ml.g4dn.xlarge")
    assert text.startswith("<training image: needs the aws extra")


def test_a_described_resource_with_aws_defaults_still_matches_what_was_asked():
    from scones.deploy.checks import contains as _contains

    asked = {"Target": {"RetryPolicy": {"MaximumRetryAttempts": 0}}, "State": "ENABLED"}
    described = {
        "Target": {"RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 86400}},
        "State": "ENABLED",
        "Arn": "x",
    }
    assert _contains(described, asked)
    assert not _contains({**described, "State": "DISABLED"}, asked)
    assert not _contains({"Target": {}}, asked)


# --- monitoring: the schedule and the processing job it starts ------------------------------------------

EXECUTION_ID = "0b9f1c5e-3d2a-4f7e-9c1b-8a6d5e4f3a2b"  # what the scheduler puts for <aws.scheduler.execution-id>


def service_model_violations(service: str, operation: str, params: dict) -> list[str]:
    """Every length, pattern, enum, list-size and required-member constraint of botocore's service model that
    `params` breaks (botocore's own validator checks only types and required members)."""
    import botocore.session

    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    found: list[str] = []

    def walk(shape, value, path: str) -> None:
        meta = shape.metadata
        if shape.type_name == "structure":
            found.extend(f"{path}.{name}: required" for name in shape.required_members if name not in value)
            for name, item in value.items():
                if name not in shape.members:
                    found.append(f"{path}.{name}: not a member of {shape.name}")
                else:
                    walk(shape.members[name], item, f"{path}.{name}")
            return
        size = len(value) if isinstance(value, list | dict | str) else value
        if "min" in meta and size < meta["min"]:
            found.append(f"{path}: {size} < min {meta['min']}")
        if "max" in meta and size > meta["max"]:
            found.append(f"{path}: {size} > max {meta['max']}")
        if "enum" in meta and value not in meta["enum"]:
            found.append(f"{path}: {value!r} not in {meta['enum']}")
        if "pattern" in meta and isinstance(value, str) and not fullmatch(meta["pattern"], value):
            found.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if shape.type_name == "list":
            for i, item in enumerate(value):
                walk(shape.member, item, f"{path}[{i}]")
        elif shape.type_name == "map":
            for key, item in value.items():
                walk(shape.key, key, f"{path} key")
                walk(shape.value, item, f"{path}[{key}]")

    walk(shape, params, operation)
    return found


def fullmatch(pattern: str, value: str) -> bool:
    """AWS patterns are Java regexes (\\p{L}…): the `regex` package reads them; without it such a pattern passes."""
    try:
        import regex
    except ImportError:
        try:
            return re.fullmatch(pattern, value) is not None
        except re.error:
            return True
    return regex.fullmatch(pattern, value) is not None


def monitoring(spec: Spec | None = None) -> dict[str, requests.Call]:
    spec = spec or Spec(role=ROLE)
    step = next(s for s in plan.build(spec, image=fake_image) if s.key == "monitor")
    return {f"{c.service}.{c.operation}": c for c in step.calls if c.operation != "put_object"} | {
        f"s3.put_object:{c.params['Key'].rsplit('/', 1)[-1]}": c for c in step.calls if c.operation == "put_object"
    }


def job_as_sent(spec: Spec) -> dict:
    job = monitoring(spec)["scheduler.create_schedule"].params["Target"]["Input"]
    return {**job, "ProcessingJobName": job["ProcessingJobName"].replace("<aws.scheduler.execution-id>", EXECUTION_ID)}


@pytest.mark.parametrize(
    "spec",
    [
        Spec(role=ROLE),
        # the longest names a user is likely to pick: every field still within the service's limits
        Spec(
            role=ROLE,
            stack="scones-production-eu-workflow",
            bucket="scones-unlimited-monitoring-and-models-eu-west-1",
            endpoint="scones-endpoint-production-eu-west-1",
            region="eu-west-1",
            capture_prefix="captured/requests",
        ),
    ],
    ids=["defaults", "long-names"],
)
def test_the_processing_job_and_schedule_fit_the_service_models(spec):
    # Given the plan's CreateProcessingJob (as the scheduler sends it) and CreateSchedule requests
    job = job_as_sent(spec)
    schedule = monitoring(spec)["scheduler.create_schedule"].params
    sent = {**schedule, "Target": {**schedule["Target"], "Input": json.dumps(job, sort_keys=True)}}
    # Then nothing in them breaks a constraint of the service models (today's main: ContainerEntrypoint[2] > 256)
    assert service_model_violations("sagemaker", "CreateProcessingJob", job) == []
    assert service_model_violations("scheduler", "CreateSchedule", sent) == []
    # and so does every other call of the monitoring step (policy documents go as JSON text)
    for call in monitoring(spec).values():
        params = {k: json.dumps(v) if k.endswith("PolicyDocument") else v for k, v in call.params.items()}
        if call.operation == "create_schedule":
            params = sent
        operation = call.operation.title().replace("_", "")
        assert service_model_violations(call.service, operation, params) == [], call.operation


def test_the_job_takes_bucket_endpoint_stack_capture_and_threshold_from_its_environment():
    from scones.core import settings

    spec = Spec(role=ROLE, bucket="b1", endpoint="ep1", stack="st-workflow", capture_prefix="cap", threshold=0.8)
    env = job_as_sent(spec)["Environment"]
    assert env[settings.BUCKET] == env[settings.CAPTURE_BUCKET] == "b1"
    assert (env[settings.SCONES_ENDPOINT_NAME], env[settings.STACK_NAME]) == ("ep1", "st-workflow")
    assert (env[settings.CAPTURE_PREFIX], env[settings.THRESHOLD], env[settings.TARGET]) == ("cap", "0.8", "aws")
    assert (env[settings.PREFIX], env[settings.AWS_REGION]) == (spec.prefix, spec.region)


def test_the_job_writes_under_its_declared_output_and_reads_its_declared_input():
    spec = Spec(role=ROLE)
    job = job_as_sent(spec)
    app, calls_ = job["AppSpecification"], monitoring(spec)
    (output,) = job["ProcessingOutputConfig"]["Outputs"]
    out = app["ContainerArguments"][app["ContainerArguments"].index("--out") + 1]
    assert out.startswith(output["S3Output"]["LocalPath"] + "/") and "s3://" not in " ".join(app["ContainerArguments"])
    assert output["S3Output"]["S3Uri"] == naming.monitor_out_uri(spec)
    # the entrypoint is run.sh from the code input, which holds exactly the two objects the deploy uploads
    (code,) = job["ProcessingInputs"]
    script = calls_["s3.put_object:run.sh"].params["Key"]
    tarball = calls_[f"s3.put_object:{naming.MONITOR_TARBALL}"].params["Key"]
    assert app["ContainerEntrypoint"] == ["/bin/sh", f"{code['S3Input']['LocalPath']}/run.sh"]
    assert {f"s3://{spec.bucket}/{k}" for k in (script, tarball)} == {
        code["S3Input"]["S3Uri"] + "run.sh",
        code["S3Input"]["S3Uri"] + naming.MONITOR_TARBALL,
    }
    assert (settings.ROOT / "scones" / "monitoring" / "run.sh").is_file()


def test_a_start_the_scheduler_cannot_make_is_retried_then_dead_lettered_and_alarmed():
    spec = Spec(role=ROLE)
    found = monitoring(spec)
    target = found["scheduler.create_schedule"].params["Target"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    queue = found["sqs.create_queue"].params["QueueName"]
    assert target["DeadLetterConfig"]["Arn"] == f"arn:aws:sqs:{spec.region}:123456789012:{queue}"
    # the schedule's role (which the scheduler uses to deliver dead letters) may send to that queue
    policy = found["iam.put_role_policy"].params["PolicyDocument"]
    dlq = target["DeadLetterConfig"]["Arn"]
    allowed = [s for s in policy["Statement"] if s["Effect"] == "Allow" and s["Action"] == "sqs:SendMessage"]
    assert [s["Resource"] for s in allowed] == [dlq]
    alarm = found["cloudwatch.put_metric_alarm"].params
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue}] and alarm["Namespace"] == "AWS/SQS"


def test_the_dry_run_shows_the_request_the_schedule_sends():
    spec = Spec(role=ROLE)
    text = render.render(plan.build(spec, image=fake_image), spec, naming.account_of(spec))
    job = monitoring(spec)["scheduler.create_schedule"].params["Target"]["Input"]
    for key, value in render._flatten(job, "Target.Input"):
        if not key.endswith("Tags"):
            assert f"       {key} = {value}\n" in text


# --- training: the request ModelTrainer sends, its channels, its fingerprint ---------------------------


def test_the_aws_job_gets_every_channel_scones_train_downloads_outliers_included(tmp_path):
    """Local training reads train, test and the staged outliers (with their .lst channels); the AWS job must
    read the same, or the confidence filter passes on AWS what it blocks locally."""

    manifest = {"classes": ["bicycle", "motorcycle"], "outliers": {"mode": "auto", "train": {"channel": "outliers"}}}
    splits = staged.channel_splits(manifest)
    local = {name for split in splits for name in (split, f"{split}_lst")}
    spec = Spec(role=ROLE)
    job = requests.training_request(spec, requests.Facts(), fake_image)
    data = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert set(data) - {requests.SDK_CODE_CHANNEL, requests.SDK_DRIVERS_CHANNEL} == local
    assert data["outliers"] == "s3://scones-unlimited/data/outliers/"  # the folder, not outliers_test/
    assert data["outliers_lst"] == "s3://scones-unlimited/data/outliers.lst"
    # where nothing was staged for them (`scones stage --outliers none`), neither gets them
    bare = requests.training_request(spec, requests.Facts(outliers=False), fake_image)
    assert not {c["ChannelName"] for c in bare["InputDataConfig"]} & {"outliers", "outliers_lst"}


def test_the_training_request_passes_botocores_validation_in_the_sdks_shape():
    import boto3
    from botocore.validate import validate_parameters

    model = boto3.session.Session(region_name="us-east-1").client("sagemaker").meta.service_model
    shape = model.operation_model("CreateTrainingJob").input_shape
    for algorithm in ("script", "builtin"):
        job = requests.training_request(Spec(role=ROLE, algorithm=algorithm, spot=True), requests.Facts(), fake_image)
        validate_parameters(job, shape)  # raises ParamValidationError listing every problem
        assert "SourceCode" not in job  # not a CreateTrainingJob field: ModelTrainer's, turned into channels
        for c in job["InputDataConfig"]:
            assert c["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
    script = requests.training_request(Spec(role=ROLE), requests.Facts(), fake_image)
    assert [c["ChannelName"] for c in script["InputDataConfig"]][-2:] == ["code", "sm_drivers"]


def copy_training(tmp_path: Path) -> Path:
    import shutil

    source = tmp_path / "training"
    shutil.copytree(requests.TRAINING_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def test_changing_any_file_the_job_uploads_changes_the_fingerprint(tmp_path):
    source = copy_training(tmp_path)
    spec = Spec(role=ROLE)
    before = requests.training_fingerprint(spec, source)
    uploaded = requests.training_files(source)
    assert {"train.py", "model.py", "calibration.py", "metrics.py", "requirements.txt"} <= {str(p) for p in uploaded}
    for name in uploaded:
        path = source / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert requests.training_fingerprint(spec, source) != before, f"{name} changed, fingerprint did not"
        path.write_bytes(original)
    assert requests.training_fingerprint(spec, source) == before
    (source / "extra.py").write_text("X = 1\n")  # a new file is uploaded too
    assert requests.training_fingerprint(spec, source) != before
    (source / "extra.py").unlink()
    (source / "__pycache__").mkdir()  # what the SDK leaves out does not count
    (source / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (source / ".DS_Store").write_bytes(b"\0")
    assert requests.training_fingerprint(spec, source) == before


def test_the_fingerprints_ignore_list_is_the_sdks():
    pytest.importorskip("sagemaker", reason="compares with the SDK's SourceCode: needs the aws extra")
    from sagemaker.core.training.configs import SourceCode

    assert list(requests.SDK_IGNORE_PATTERNS) == SourceCode().ignore_patterns == requests.sdk_ignore_patterns()


def test_onnx_pins_are_the_same_for_the_container_and_the_project():
    import tomllib

    from scones.containers import venv

    container = {
        line.split("==")[0].lower(): line
        for line in venv.check_requirements(requests.TRAINING_DIR / "requirements.txt")
    }
    project = tomllib.loads((settings.ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ml"]
    names = ("onnx", "onnxscript", "onnxruntime")
    pinned = {line.split("==")[0].lower(): line.split("#")[0].strip() for line in project if "==" in line}
    assert set(names) <= set(pinned), "pyproject's ml extra pins onnx, onnxscript and onnxruntime exactly"
    for name in names:
        assert container[name] == pinned[name]


def test_every_hyperparameter_reaches_train_py_through_the_sdks_driver():
    """The SDK's basic script driver turns HyperParameters into `--<name> <value>` verbatim; train.py ignores
    options it does not know, so an `oe_weight` (as `--hp` takes it) would be dropped on AWS without a word."""
    drivers = pytest.importorskip("sagemaker.train.container_drivers.common.utils", reason="needs the aws extra")
    from training import train

    hps = (("oe_weight", "0.5"), ("batch_size", "16"), ("val_fraction", "0.2"), ("lr", "0.05"))
    job = requests.training_request(Spec(role=ROLE, epochs=2, hyperparameters=hps), requests.Facts(), fake_image)
    argv = drivers.hyperparameters_to_cli_args(job["HyperParameters"])
    args, unknown = train.build_parser().parse_known_args(argv)
    assert unknown == []
    assert (args.oe_weight, args.batch_size, args.val_fraction, args.lr, args.epochs) == (0.5, 16, 0.2, 0.05, 2)
