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
        "python -m scones.monitoring --capture s3://scones-unlimited/datacapture/scones-endpoint",
        "tags on everything: project=scones, scones:stack=scones-workflow",
    ):
        assert expected in out.stdout, expected
