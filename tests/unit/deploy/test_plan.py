"""The AWS plan as data and as the dry run prints it (pure: no cloud, no credentials)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from scones.core.errors import UsageError
from scones.deploy import aws_command, images, plan

SNAPSHOT = Path(__file__).with_name("dry_run.txt")
ROLE = "arn:aws:iam::123456789012:role/scones-sagemaker"


def fake_image(kind: str, region: str, instance_type: str) -> str:
    return f"{kind}@{region}/{instance_type}"


def normalized(text: str) -> str:
    """Content hashes change with the training and serving code; the snapshot is about everything else."""
    return re.sub(r"(?<=-)[0-9a-f]{8}\b", "<hash8>", text)


def calls(steps: list[plan.Step]) -> dict[str, plan.Call]:
    return {f"{c.service}.{c.operation}": c for s in steps for c in s.calls}


def test_the_dry_run_matches_its_snapshot():
    pytest.importorskip("sagemaker", reason="the snapshot shows the SDK's image URIs: needs the aws extra")
    spec = plan.Spec(role=ROLE, spot=True)
    text = normalized(plan.render(plan.build(spec), spec, plan.account_of(spec)))
    if os.environ.get("SCONES_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "dry run changed: review, then SCONES_UPDATE_SNAPSHOTS=1 pytest this test"


def test_the_plan_holds_every_required_setting():
    spec = plan.Spec(role=ROLE, spot=True, max_run_s=1800)
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
            assert {"Key": plan.TAG_STACK, "Value": spec.stack} in call.params["Tags"], call.operation


def test_without_spot_there_is_no_max_wait_and_max_runtime_is_always_set():
    job = calls(plan.build(plan.Spec(role=ROLE), image=fake_image))["sagemaker.create_training_job"].params
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert job["EnableManagedSpotTraining"] is False


def test_metric_definitions_read_train_py_metrics_lines_in_both_shapes():
    lines = ["METRICS epoch=3 train_loss=0.2104 val_acc=0.9 epoch_s=4.1", 'METRICS {"epoch": 3, "val_acc": 0.9}']
    for definition in plan.metric_definitions():
        if definition["Name"] in ("val_acc",):
            assert [re.search(definition["Regex"], line).group(1) for line in lines] == ["0.9", "0.9"]
    train_loss = next(d for d in plan.metric_definitions() if d["Name"] == "train_loss")
    assert re.search(train_loss["Regex"], lines[0]).group(1) == "0.2104"


def test_builtin_uses_the_course_channels_and_hyperparameters():
    spec = plan.Spec(role=ROLE, algorithm="builtin")
    job = plan.training_request(spec, plan.Facts(num_training_samples=1000), fake_image)
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "validation", "train_lst", "validation_lst"]
    assert {c["ContentType"] for c in job["InputDataConfig"]} == {"application/x-image"}
    hps = job["HyperParameters"]
    assert (hps["num_classes"], hps["num_training_samples"], hps["image_shape"]) == ("2", "1000", "3,32,32")
    assert job["AlgorithmSpecification"]["TrainingImage"].startswith("builtin@")
    assert "MetricDefinitions" not in job["AlgorithmSpecification"]


def test_serverless_has_no_capture_and_no_autoscaling_and_says_so():
    spec = plan.Spec(role=ROLE, serverless=True)
    steps = plan.build(spec, image=fake_image)
    found = calls(steps)
    config = found["sagemaker.create_endpoint_config"].params
    assert "DataCaptureConfig" not in config and "ServerlessConfig" in config["ProductionVariants"][0]
    assert not any(k.startswith("application-autoscaling") for k in found)
    assert any("do not capture data" in note for s in steps for note in s.notes)


def test_names_change_with_what_they_describe():
    a, b = plan.Spec(role=ROLE), plan.Spec(role=ROLE, instance_type="ml.p3.2xlarge")
    assert plan.training_base_name(a) != plan.training_base_name(b)
    assert plan.training_base_name(a) == plan.training_base_name(plan.Spec(role=ROLE))
    one, two = (plan.model_request(a, plan.Facts(model_data=f"s3://b/{n}.tar.gz"), fake_image) for n in "12")
    assert one["ModelName"] != two["ModelName"]  # a new artifact is a new model (models are immutable)
    small = plan.endpoint_config_request(a, "m")["EndpointConfigName"]
    large = plan.endpoint_config_request(plan.Spec(endpoint_instance_type="ml.c5.xlarge"), "m")["EndpointConfigName"]
    assert small != large


def test_max_wait_below_max_run_is_refused():
    args = aws_command_args(spot=True, max_run=3600, max_wait=600)
    with pytest.raises(UsageError, match="max wait >= max run"):
        aws_command.spec_from_args(args)


def aws_command_args(**overrides):
    import argparse

    p = argparse.ArgumentParser()
    aws_command.add_deploy_flags(p)
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
