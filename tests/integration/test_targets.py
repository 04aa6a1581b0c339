"""The same workflow on the other targets. Skipped here (no Docker engine, no AWS account); they run with
SCONES_TARGET=localstack after `make up STACK=localstack`, or SCONES_TARGET=aws with credentials."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import make_brightness_model, solid_png

from scones import cli, endpoint, workflow
from scones.core import aws, settings
from scones.deploy import package, stack


@pytest.mark.localstack
def test_workflow_on_localstack(local_cloud, tmp_path, monkeypatch):
    """LocalStack runs the Lambdas in Docker; they reach our model server through host.docker.internal."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        settings.BUCKET: f"ls-{suffix}",
        settings.STACK_NAME: f"ls{suffix}-workflow",
        settings.SCONES_ENDPOINT_NAME: f"ep-{suffix}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    model = make_brightness_model(tmp_path / "model")
    aws.client("s3").create_bucket(Bucket=f"ls-{suffix}")
    aws.client("s3").put_object(Bucket=f"ls-{suffix}", Key="img/bright.png", Body=solid_png(230))
    try:
        assert cli.main(["deploy", "--target", "localstack", "--model", str(model)]) == 0
        outputs = stack.outputs(f"ls{suffix}-workflow")
        (row,) = workflow.run_single(
            aws.client("stepfunctions"), outputs["ClassifyImageStateMachineArn"], f"ls-{suffix}", ["img/bright.png"]
        )
        assert row.status == "SUCCEEDED" and row.label == "bicycle"
    finally:
        endpoint.stop(f"ep-{suffix}", log=lambda _m: None)
        stack.delete(f"ls{suffix}-workflow", log=lambda _m: None)


@pytest.mark.aws
def test_template_validates_and_artifacts_package_on_aws():
    """Read-only on a real account: CloudFormation accepts template.yaml and every Lambda zip is small."""
    cfn = aws.client("cloudformation")
    result = cfn.validate_template(TemplateBody=stack.TEMPLATE.read_text())
    assert {p["ParameterKey"] for p in result["Parameters"]} >= {"CodeBucket", "EndpointName", "Labels"}
    assert "CAPABILITY_NAMED_IAM" in result.get("Capabilities", [])
    for artifact in package.artifacts("deploy/check").values():
        assert len(artifact.body) < 50 * 1024
    identity = aws.client("sts").get_caller_identity()
    assert json.dumps(identity["Account"]).strip('"').isdigit()
