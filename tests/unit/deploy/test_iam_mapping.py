"""tests/iam_check.py, the IAM side of test_iam.py: boto3 calls as IAM actions, and the evaluator's corrections."""

from __future__ import annotations

import json

import iam_check
import pytest
from aws_recorder import Call

from scones.core.settings import ROOT
from scones.deploy import plan, validate
from scones.deploy.spec import Spec

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/scones-sagemaker"


def needs(service: str, operation: str, params: dict, error: str = "") -> list[str]:
    return [
        str(n).split(" (")[0] for n in iam_check.needs(Call(service, operation, params, "us-east-1", error), ACCOUNT)
    ]


def test_s3_reads_and_lists_map_to_the_actions_s3_checks():
    assert needs("s3", "HeadObject", {"Bucket": "b", "Key": "k"}) == ["s3:GetObject on arn:aws:s3:::b/k"]
    assert needs("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/"}) == ["s3:ListBucket on arn:aws:s3:::b"]
    assert needs("s3", "HeadBucket", {"Bucket": "b"}) == ["s3:ListBucket on arn:aws:s3:::b"]


def test_a_missing_key_needs_list_bucket_to_be_told_404():
    assert needs("s3", "GetObject", {"Bucket": "b", "Key": "k"}, error="NoSuchKey") == [
        "s3:GetObject on arn:aws:s3:::b/k",
        "s3:ListBucket on arn:aws:s3:::b",
    ]


def test_roles_handed_to_services_and_tags_on_create_are_permissions_too():
    found = needs("sagemaker", "CreateModel", {"ModelName": "M", "ExecutionRoleArn": ROLE, "Tags": [{"Key": "a"}]})
    assert found == [
        f"sagemaker:CreateModel on arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/m",
        f"sagemaker:AddTags on arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/m",
        f"iam:PassRole on {ROLE} with {{'iam:PassedToService': 'sagemaker.amazonaws.com'}}",
    ]
    assert needs("lambda", "Invoke", {"FunctionName": "f"}) == ["lambda:InvokeFunction on *"]
    assert needs("sts", "GetCallerIdentity", {}) == []


def test_an_allow_with_an_unmet_condition_does_not_apply_and_a_deny_wins():
    passes = {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": "*",
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    }
    other = {**passes, "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}}
    policy = {"Version": "2012-10-17", "Statement": [passes, other]}
    to = lambda service: iam_check.Need("iam:PassRole", ROLE, (("iam:PassedToService", service),))  # noqa: E731
    assert iam_check.permitted([policy], to("lambda.amazonaws.com"))  # moto alone: DENIED by the first statement
    assert not iam_check.permitted([policy], to("ec2.amazonaws.com"))
    assert not iam_check.permitted([policy], iam_check.Need("iam:PassRole", ROLE))  # the key is absent: not met
    deny = {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}
    assert not iam_check.permitted([policy, {"Version": "2012-10-17", "Statement": [deny]}], to("lambda.amazonaws.com"))


@pytest.mark.parametrize("trial", ["rollout", "rollout-named", "shadow"])
def test_the_deployer_policy_allows_the_calls_of_a_rollout_and_of_a_shadow(trial):
    # given the dry-run plan of a new model tried on the deployed endpoint
    model = "s3://b/models/j/output/model.tar.gz"
    spec = {
        "rollout": Spec(role=ROLE, model_uri=model, rollout="canary:10:300"),
        "rollout-named": Spec(role=ROLE, model_uri=model, rollout="linear:25:60", rollout_alarms=("mine",)),
        "shadow": Spec(role=ROLE, model_uri=model, shadow_percent=20.0),
    }[trial]
    steps = [
        s for s in plan.build(spec, image=lambda *a: "image") if s.key in ("alarms", "endpoint-config", "endpoint")
    ]
    calls = [
        Call(service, validate.operation_name(service, operation), params, "us-east-1")
        for service, operation, params, _ in validate.plan_requests(steps)
    ]
    # then docs/iam/deployer-policy.json grants every permission they need (the update and the alarms included)
    assert {c.operation for c in calls} >= {"CreateEndpointConfig"}
    policy = json.loads((ROOT / "docs" / "iam" / "deployer-policy.json").read_text())
    assert iam_check.refused(calls, [policy], ACCOUNT) == []
