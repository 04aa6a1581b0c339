"""`scones deploy --target aws --model NEW --rollout …` and `--shadow` on the local cloud: the AWS chain's own
rollout and shadow steps (sagemaker.serving_model, ensure_alarms, roll_out, the shadow endpoint config) run
unchanged against moto's SageMaker and CloudWatch, and every call they make is checked by the service models
(scones.deploy.validate) and by IAM's evaluator against the documented deployer policy.

moto applies an UpdateEndpoint at once and evaluates no alarm, so where AWS would roll back the test plays
SageMaker's part (the endpoint back on its old configuration once InService), as test_deploy_aws.py writes the
training job's artifact in the container's place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid

import iam_check
import pytest
from test_deploy_aws import fake_artifact, make_role

from scones import rollout
from scones.core import aws, settings
from scones.core.errors import NotReadyError
from scones.deploy import requests, sagemaker, validate
from scones.deploy.spec import Spec

pytestmark = pytest.mark.integration

DEPLOYER_POLICY = settings.ROOT / "docs" / "iam" / "deployer-policy.json"


def candidate(spec: Spec, name: str) -> str:
    key = f"candidates/{name}/model.tar.gz"
    aws.client("s3").put_object(Bucket=spec.bucket, Key=key, Body=fake_artifact(name.encode()))
    return f"s3://{spec.bucket}/{key}"


def config_of(endpoint: str) -> dict:
    sm = aws.client("sagemaker")
    name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    return sm.describe_endpoint_config(EndpointConfigName=name)


@pytest.fixture(scope="module")
def serving(local_cloud, cifar_tarball, tmp_path_factory, aws_calls):
    """An endpoint deployed by the AWS chain from a model artifact (no training job: --model)."""
    suffix = uuid.uuid4().hex[:8]
    os.environ[settings.DATA_DIR] = str(tmp_path_factory.mktemp("data"))
    spec = Spec(
        stack=f"r{suffix}-workflow",
        bucket=f"r-{suffix}",
        endpoint=f"ep-{suffix}",
        region=settings.region(),
        role=make_role(f"sm-r{suffix}"),
        source=str(cifar_tarball),
    )
    aws.client("s3").create_bucket(Bucket=spec.bucket)
    first = dataclasses.replace(spec, model_uri=candidate(spec, "production"))
    sagemaker.deploy(first, poll_s=0.01, log=lambda line: None)
    yield spec, config_of(spec.endpoint)["ProductionVariants"][0]["ModelName"]
    os.environ.pop(settings.DATA_DIR, None)


def checked(calls: list, account: str) -> list[str]:
    """Every problem the service models or the deployer policy find in these calls."""
    problems = [
        f"{c.service}.{c.operation}: {p}" for c in calls for p in validate.problems(c.service, c.operation, c.params)
    ]
    refused = iam_check.refused(calls, [json.loads(DEPLOYER_POLICY.read_text())], account)
    return problems + [f"IAM refuses {r}" for r in refused]


def test_a_canary_rollout_makes_its_alarms_then_updates_the_endpoint_with_the_deployment_config(serving, aws_calls):
    spec, production = serving
    start = len(aws_calls.calls)
    rolled = dataclasses.replace(spec, model_uri=candidate(spec, "canary"), rollout="canary:10:300")
    report = sagemaker.deploy(rolled, poll_s=0.01, log=lambda line: None)
    calls = [c for c in aws_calls.calls[start:] if c.by_scones]

    made = [c.params["AlarmName"] for c in calls if c.operation == "PutMetricAlarm"]
    assert made == [a["AlarmName"] for a in requests.rollout_alarms(rolled)] and made
    found = aws.client("cloudwatch").describe_alarms(AlarmNames=made)["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in found) == sorted(made)  # they exist before any traffic moves
    (update,) = [c for c in calls if c.operation == "UpdateEndpoint"]
    assert calls.index(update) > max(i for i, c in enumerate(calls) if c.operation == "PutMetricAlarm")
    policy = update.params["DeploymentConfig"]
    assert policy["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert [a["AlarmName"] for a in policy["AutoRollbackConfiguration"]["Alarms"]] == made
    assert not [c for c in calls if c.operation == "CreateEndpoint"]  # updated in place, not made anew
    served = config_of(spec.endpoint)["ProductionVariants"][0]["ModelName"]
    assert served != production and served == report.names["model"]
    assert checked(calls, aws.client("sts").get_caller_identity()["Account"]) == []


def test_a_rollout_sagemaker_rolled_back_ends_in_one_line_with_the_rollback_exit(serving, monkeypatch):
    spec, _ = serving
    before = aws.client("sagemaker").describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"]
    waited = sagemaker._wait_in_service

    def rolled_back(name: str, poll_s: float, log=print) -> None:  # SageMaker's part: an alarm fired
        aws.client("sagemaker").update_endpoint(EndpointName=name, EndpointConfigName=before)
        waited(name, poll_s, log)

    monkeypatch.setattr(sagemaker, "_wait_in_service", rolled_back)
    broken = dataclasses.replace(spec, model_uri=candidate(spec, "broken"), rollout="linear:25:60")
    with pytest.raises(rollout.RolledBackError, match=f"rolled back: {before} serves") as raised:
        sagemaker.deploy(broken, poll_s=0.01, log=lambda line: None)
    assert raised.value.exit_code == 4
    assert aws.client("sagemaker").describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"] == before


def test_a_rollout_naming_an_alarm_that_does_not_exist_moves_nothing(serving):
    spec, _ = serving
    before = aws.client("sagemaker").describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"]
    named = dataclasses.replace(
        spec, model_uri=candidate(spec, "named"), rollout="canary:10:60", rollout_alarms=("no-such-alarm",)
    )
    with pytest.raises(NotReadyError, match="no CloudWatch alarm named no-such-alarm"):
        sagemaker.deploy(named, poll_s=0.01, log=lambda line: None)
    assert aws.client("sagemaker").describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"] == before


def test_a_shadow_keeps_production_serving_and_adds_the_candidate_as_a_shadow_variant(serving, aws_calls):
    spec, _ = serving
    production = config_of(spec.endpoint)["ProductionVariants"][0]["ModelName"]
    start = len(aws_calls.calls)
    shadowed = dataclasses.replace(spec, model_uri=candidate(spec, "shadow"), shadow_percent=20)
    report = sagemaker.deploy(shadowed, poll_s=0.01, log=lambda line: None)
    calls = [c for c in aws_calls.calls[start:] if c.by_scones]
    (config,) = [c.params for c in calls if c.operation == "CreateEndpointConfig"]
    (variant,) = config["ProductionVariants"]
    (shadow,) = config["ShadowProductionVariants"]
    assert variant["ModelName"] == production and shadow["ModelName"] == report.names["model"] != production
    assert shadow["InitialVariantWeight"] == pytest.approx(0.2) and variant["InitialVariantWeight"] == 1.0
    assert config_of(spec.endpoint)["EndpointConfigName"] == config["EndpointConfigName"]
    assert checked(calls, aws.client("sts").get_caller_identity()["Account"]) == []
