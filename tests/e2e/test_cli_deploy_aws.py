"""`scones deploy --target aws --dry-run` as a user runs it: no credentials, no network, a complete plan."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.e2e
def test_dry_run_works_with_no_credentials_at_all(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SCONES_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # were anything called, it would fail: nothing listens there
    )
    out = subprocess.run(
        [sys.executable, "-m", "scones.cli", "deploy", "--target", "aws", "--dry-run", "--spot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "account <account-id>, region us-east-1" in out.stdout
    for expected in (
        "ResourceConfig.InstanceType = ml.g4dn.xlarge",
        "StoppingCondition.MaxWaitTimeInSeconds = 7200",
        "DataCaptureConfig.InitialSamplingPercentage = 100",
        "MaxCapacity = 4",
        "PredefinedMetricType = SageMakerVariantInvocationsPerInstance",
        "Target.Input.AppSpecification.ContainerEntrypoint[1] = /opt/ml/processing/input/code/run.sh",
        "Target.Input.Environment.SCONES_ENDPOINT_NAME = scones-endpoint",
        "tags on everything: project=scones, scones:stack=scones-workflow",
    ):
        assert expected in out.stdout, expected


# --- the cost estimate and the question before anything bills -------------------------------------------------
# Against the local cloud: credentials work (the question names the account), and the role does not exist, so a
# deploy that goes past the question stops at preflight's role check, before it creates anything.


def cloud_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}  # AWS_*: the local cloud's
    env.update(SCONES_STATE_DIR=str(tmp_path / "state"), **extra)
    return env


def deploy_aws(env: dict[str, str], *flags: str, answer: str | None = None) -> subprocess.CompletedProcess:
    """`scones deploy --target aws FLAGS`; answer=None: stdin is not a terminal, else a terminal that types it."""
    command = [sys.executable, "-m", "scones.cli", "deploy", "--target", "aws", "--role", "no-such-role", *flags]
    if answer is None:
        return subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    import pty

    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")  # typed ahead: the terminal holds it until input() reads
        return subprocess.run(command, env=env, stdin=terminal, capture_output=True, text=True, timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)


ESTIMATE_LINES = ("at most $0.736 per job", "$0.115 per hour, $83.95 per month", "$1.38 per day")
QUESTION = "in us-east-1, and start billing? [y/N]"
PAST_THE_QUESTION = "the role no-such-role does not exist"  # preflight's next check: nothing created yet


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.parametrize("answer", ["n", "", "\x04"], ids=["n", "enter", "ctrl-d"])
def test_deploy_prints_the_estimate_and_stops_when_the_user_says_no(local_cloud, tmp_path, answer):
    out = deploy_aws(cloud_env(tmp_path), answer=answer)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    for expected in ESTIMATE_LINES:
        assert expected in out.stdout, expected
    assert "deploy to account 123456789012 " + QUESTION in out.stdout
    assert out.stdout.rstrip().endswith("nothing deployed") and PAST_THE_QUESTION not in out.stderr


@pytest.mark.e2e
@pytest.mark.integration
def test_deploy_goes_on_when_the_user_says_yes(local_cloud, tmp_path):
    out = deploy_aws(cloud_env(tmp_path), answer="y")
    assert out.returncode == 3, out.stdout + out.stderr
    assert QUESTION in out.stdout and PAST_THE_QUESTION in out.stderr
    assert "nothing deployed" not in out.stdout


@pytest.mark.e2e
@pytest.mark.integration
def test_deploy_without_a_terminal_refuses_in_one_line_naming_yes(local_cloud, tmp_path):
    out = deploy_aws(cloud_env(tmp_path))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "at most $0.736 per job" in out.stdout  # the estimate is still shown
    (line,) = out.stderr.strip().splitlines()
    assert "no terminal to ask on" in line and "scones deploy --target aws --yes" in line
    assert QUESTION not in out.stdout


@pytest.mark.e2e
@pytest.mark.integration
def test_deploy_yes_answers_for_the_user_after_printing_the_estimate(local_cloud, tmp_path):
    out = deploy_aws(cloud_env(tmp_path), "--yes")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "at most $0.736 per job" in out.stdout and QUESTION not in out.stdout
    assert PAST_THE_QUESTION in out.stderr


@pytest.mark.e2e
@pytest.mark.integration
def test_a_region_without_prices_says_so_and_still_asks(local_cloud, tmp_path):
    out = deploy_aws(cloud_env(tmp_path, AWS_DEFAULT_REGION="eu-west-3"), answer="n")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cost estimate: no estimate for eu-west-3" in out.stdout and "$0.736" not in out.stdout
    assert "in eu-west-3, and start billing? [y/N]" in out.stdout and "nothing deployed" in out.stdout


@pytest.mark.e2e
def test_the_dry_run_prints_the_same_estimate_and_asks_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SCONES_"))}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_ENDPOINT_URL="http://127.0.0.1:9")  # nothing to call
    out = deploy_aws(env, "--dry-run", "--spot")  # no terminal, no --yes: a dry run never asks
    assert out.returncode == 0, out.stderr
    for expected in (*ESTIMATE_LINES, "spot: this is the on-demand ceiling; spot usually costs less"):
        assert expected in out.stdout, expected
    assert "[y/N]" not in out.stdout
