"""The pieces of `scones train --mode container` that need no cloud: /opt/ml's config files, channel paths, the
container's environment and the failure reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from scones.containers import training as container
from scones.deploy import requests
from scones.deploy.spec import Spec

ROLE = "arn:aws:iam::123456789012:role/scones-sagemaker"


def fake_image(kind: str, region: str, instance_type: str) -> str:
    return f"{kind}@{region}/{instance_type}"


class FakeS3:
    """list_objects_v2 over a fixed set of keys, paginated as boto3's paginator is used."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, _name: str):
        keys = self.keys

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str):
                yield {"Contents": [{"Key": k} for k in keys if k.startswith(Prefix)]}

        return Paginator()


def test_channel_paths_follow_the_sdks_local_mode():
    s3 = FakeS3(["data/train/a.png", "data/train/sub/b.png", "data/train.lst", "data/test/c.png", "data/x/"])
    assert container.channel_objects(s3, "s3://b/data/train/") == [
        ("data/train/a.png", "a.png"),
        ("data/train/sub/b.png", "sub/b.png"),
    ]
    assert container.channel_objects(s3, "s3://b/data/train.lst") == [("data/train.lst", "train.lst")]
    code = FakeS3(["up/job/input/code/train.py", "up/job/input/code/x/y.py"])
    assert container.channel_objects(code, "s3://b/up/job/input/code") == [
        ("up/job/input/code/train.py", "train.py"),
        ("up/job/input/code/x/y.py", "x/y.py"),
    ]
    assert container.channel_objects(s3, "s3://b/data/outliers/") == []


def test_the_config_files_are_sagemakers_for_the_request():
    spec = Spec(role=ROLE, instance_type="ml.m5.large", algorithm="builtin")
    request = requests.training_request(spec, requests.Facts(), fake_image)
    config = container.input_data_config(request)
    assert config["train"] == {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
        "ContentType": "application/x-image",
    }
    resources = container.resource_config(request)
    assert resources["current_host"] == "algo-1" and resources["hosts"] == ["algo-1"]
    assert resources["current_instance_type"] == "ml.m5.large"
    # what the SDK's environment.py reads from it
    assert {"current_host", "current_instance_type", "hosts", "network_interface_name"} <= set(resources)


def test_the_container_gets_a_path_with_its_python_first_and_no_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-container")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:1/simple")
    request = {"TrainingJobName": "j-20260101000000"}
    env = container.container_environment(request, Path("/venvs/c/bin/python"), "eu-west-1")
    assert env["PATH"].split(":")[0] == "/venvs/c/bin"
    assert env["TRAINING_JOB_NAME"] == "j-20260101000000" and env["AWS_REGION"] == "eu-west-1"
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:1/simple"  # pip installs from this machine's index
    assert "AWS_SECRET_ACCESS_KEY" not in env


def test_the_failure_reason_is_the_scripts_not_the_drivers(tmp_path):
    failure, log = tmp_path / "failure", tmp_path / "train.log"
    failure.write_text("TrainingInputError: train.lst:1: bicycle/missing.png not found")
    assert container.failure_reason(failure, log, 2).startswith("TrainingInputError: train.lst:1")
    # only the driver wrote one (its traceback of the script's exit): the script's last error line
    failure.write_text("Traceback (most recent call last):\n ...\nsubprocess.CalledProcessError: ... status 2.")
    log.write_text("Running Basic Script driver\ntrain.py: error: argument --epochs: invalid int value: 'x'\n")
    assert container.failure_reason(failure, log, 2) == "train.py: error: argument --epochs: invalid int value: 'x'"
    failure.unlink()
    log.write_text("")
    assert container.failure_reason(failure, log, 137) == "exit status 137"


def test_a_request_without_a_container_command_is_refused_in_one_line(tmp_path):
    from scones.training_job import TrainingJobError

    request = requests.training_request(Spec(role=ROLE, algorithm="builtin"), requests.Facts(), fake_image)
    with pytest.raises(TrainingJobError, match="only script-mode jobs run here"):
        container.execute(request, tmp_path, Path("/usr/bin/python3"), "us-east-1", tmp_path / "log")


def test_a_job_name_the_sdk_would_make_too_long_is_refused_before_any_work():
    from scones.core.errors import UsageError

    with pytest.raises(UsageError, match="1-48 letters"):
        container.run("bucket", "data", job_name="x" * 49)
    with pytest.raises(UsageError, match="1-48 letters"):
        container.run("bucket", "data", job_name="bad_name")
