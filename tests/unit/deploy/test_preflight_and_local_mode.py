"""Preflight's one-line errors (no credentials, no role) and local container mode without Docker."""

from __future__ import annotations

import pytest

from scones import cli
from scones.core import aws
from scones.core.errors import NotReadyError, UsageError
from scones.deploy import preflight, sagemaker_local
from scones.deploy.spec import Spec


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("SCONES_TARGET", "aws")
    aws.reset()
    yield
    aws.reset()


def test_no_credentials_is_one_line_with_the_next_step(no_credentials):
    with pytest.raises(NotReadyError) as caught:
        preflight.credentials()
    assert (
        caught.value.line()
        == "no AWS credentials found (next: `aws configure` or `aws sso login`, or export AWS_PROFILE)"
    )


def test_deploy_without_credentials_exits_3_before_anything_else(no_credentials, capsys):
    assert cli.main(["deploy", "--target", "aws", "--role", "r"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "scones deploy: error: no AWS credentials found (next: `aws configure` or `aws sso login`, "
        "or export AWS_PROFILE)"
    ]


def test_no_role_given_is_a_usage_error():
    with pytest.raises(UsageError, match="no SageMaker execution role"):
        preflight.role(Spec(role=None), "123456789012")


def test_the_trust_policy_must_name_sagemaker():
    assert preflight._trusts_sagemaker(
        {
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": ["sagemaker.amazonaws.com"]}, "Action": "sts:AssumeRole"}
            ]
        }
    )
    assert not preflight._trusts_sagemaker(
        {
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
        }
    )
    assert not preflight._trusts_sagemaker(
        {
            "Statement": [
                {"Effect": "Deny", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
        }
    )


def test_local_mode_without_docker_says_so_and_names_scones_train():
    with pytest.raises(NotReadyError) as caught:
        sagemaker_local.train(Spec(), docker_answers=lambda: False)
    assert "no Docker engine answers" in str(caught.value) and caught.value.next_step == "scones train"


def test_scones_train_mode_sagemaker_local_prints_one_line(monkeypatch, capsys):
    import scones.localcloud

    monkeypatch.setattr(scones.localcloud, "docker_engine_answers", lambda: False)
    assert cli.main(["train", "--mode", "sagemaker-local"]) == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("scones train: error: --mode sagemaker-local") and line.endswith("(next: scones train)")


def test_local_mode_builds_a_local_cpu_container_job_from_the_same_request(monkeypatch):
    """With Docker answering, the SDK's local container mode gets the planned request (its run is not tested
    here: no Docker engine on these machines)."""
    pytest.importorskip("sagemaker", reason="local mode runs through the SDK: needs the aws extra")
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    seen = {}
    monkeypatch.setattr(ModelTrainer, "train", lambda self, **kwargs: seen.update(trainer=self, **kwargs))
    sagemaker_local.train(Spec(epochs=2), docker_answers=lambda: True, log=lambda _m: None, outliers=True)
    trainer = seen["trainer"]
    assert trainer.training_mode == Mode.LOCAL_CONTAINER and trainer.compute.instance_type == "local_cpu"
    assert "pytorch-training:2.8.0-cpu-py312" in trainer.training_image
    assert trainer.hyperparameters == {"classes": "bicycle,motorcycle", "epochs": "2"}
    data = ["train", "test", "outliers", "train_lst", "test_lst", "outliers_lst"]  # ModelTrainer adds code, sm_drivers
    assert [c.channel_name for c in seen["input_data_config"]] == data


def test_clean_without_credentials_is_one_line_too(no_credentials, capsys):
    assert cli.main(["clean", "--target", "aws", "--yes"]) == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("scones clean: error: no AWS credentials found")
