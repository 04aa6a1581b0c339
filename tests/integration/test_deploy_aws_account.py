"""The AWS path on a real account (marked `aws`: skipped unless SCONES_TARGET=aws, with credentials and
SCONES_SAGEMAKER_ROLE set). The round trip trains 2 epochs on spot ml.g4dn.xlarge and runs an ml.m5.large
endpoint for a few minutes: about US$0.10–0.30, everything deleted at the end, bucket included."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import solid_png

from scones.core import aws, settings
from scones.deploy import aws_clean, preflight, sagemaker
from scones.deploy.spec import Spec

pytestmark = [pytest.mark.aws, pytest.mark.integration]


def _spec(**overrides) -> Spec:
    role = settings.sagemaker_role()
    if not role:
        pytest.fail(f"set {settings.SAGEMAKER_ROLE} to a SageMaker execution role (README: 'The role')")
    suffix = uuid.uuid4().hex[:8]
    account = aws.client("sts").get_caller_identity()["Account"]
    values = {
        "stack": f"it{suffix}-workflow",
        "bucket": f"scones-it-{account}-{suffix}",
        "endpoint": f"scones-it-{suffix}",
        "region": settings.region(),
        "role": role,
        **overrides,
    }
    return Spec(**values)


def test_preflight_passes_with_the_configured_role_and_creates_a_private_bucket():
    spec = _spec()
    try:
        result = preflight.run(spec, log=lambda _m: None)
        assert result.bucket_created and result.role_arn.startswith("arn:aws:iam::")
        block = aws.client("s3").get_public_access_block(Bucket=spec.bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values())
    finally:
        aws.client("s3").delete_bucket(Bucket=spec.bucket)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_deploy_invoke_redeploy_clean_round_trip():
    spec = _spec(spot=True, epochs=2, max_run_s=1800)
    try:
        report = sagemaker.deploy(spec, poll_s=20)
        body = (
            aws.client("sagemaker-runtime")
            .invoke_endpoint(
                EndpointName=spec.endpoint, ContentType="image/png", Accept="application/json", Body=solid_png(200)
            )["Body"]
            .read()
        )
        probabilities = json.loads(body)
        assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-3
        again = sagemaker.deploy(spec, poll_s=20)
        assert again.changed == [], again.changed
        assert report.names["endpoint"] == spec.endpoint
    finally:
        result = aws_clean.clean(spec, purge_data=True, poll_s=20)
        assert result.left == [], result.left
