"""Preflight against the local cloud's IAM and S3: a missing role, an untrusted role, a bucket made private."""

from __future__ import annotations

import json
import uuid

import pytest

from scones.core import aws, settings
from scones.core.errors import NotReadyError
from scones.deploy import preflight
from scones.deploy.spec import Spec

pytestmark = pytest.mark.integration


def spec_with(role: str | None, bucket: str | None = None) -> Spec:
    return Spec(role=role, bucket=bucket or f"pf-{uuid.uuid4().hex[:8]}", region=settings.region())


def test_a_missing_role_is_named(local_cloud):
    with pytest.raises(NotReadyError, match=r"the role no-such-role-\w+ does not exist") as caught:
        preflight.run(spec_with(f"no-such-role-{uuid.uuid4().hex[:6]}"), log=lambda _m: None)
    assert "--role" in caught.value.next_step


def test_a_role_sagemaker_cannot_assume_is_refused(local_cloud):
    name = f"lambda-only-{uuid.uuid4().hex[:6]}"
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    with pytest.raises(NotReadyError, match=r"not trusted by sagemaker\.amazonaws\.com") as caught:
        preflight.run(spec_with(name), log=lambda _m: None)
    assert "update-assume-role-policy" in caught.value.next_step


def test_an_absent_bucket_is_created_private_and_encrypted(local_cloud):
    name = f"ok-{uuid.uuid4().hex[:6]}"
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    arn = aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    spec = spec_with(arn)
    lines: list[str] = []
    result = preflight.run(spec, log=lines.append)
    assert result.bucket_created and result.role_arn == arn
    s3 = aws.client("s3")
    block = s3.get_public_access_block(Bucket=spec.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rule = s3.get_bucket_encryption(Bucket=spec.bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert preflight.run(spec, log=lines.append).bucket_created is False
