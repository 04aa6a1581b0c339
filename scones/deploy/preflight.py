"""Before anything is created on AWS: credentials, region, the SageMaker execution role, the bucket, the quota.

Each failure is one line with the next step. Checks that the caller may not be allowed to make (simulating
the role's policy, reading service quotas) only warn when they cannot be made.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field

from scones.core import aws
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.deploy import naming, requests
from scones.deploy.checks import code as error_code
from scones.deploy.spec import Spec

ROLE_HELP = "create it as the README's 'The role' shows, then pass --role ARN or set SCONES_SAGEMAKER_ROLE"


@dataclass
class Preflight:
    account: str
    region: str
    role_arn: str
    bucket_created: bool
    warnings: list[str] = field(default_factory=list)


def credentials() -> str:
    """The account id, or a one-line error when no credentials are found or they are refused."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    try:
        return aws.client("sts").get_caller_identity()["Account"]
    except (NoCredentialsError, PartialCredentialsError):
        raise NotReadyError(
            "no AWS credentials found", next_step="`aws configure` or `aws sso login`, or export AWS_PROFILE"
        ) from None
    except ClientError as exc:
        raise NotReadyError(
            f"AWS refused the credentials: {error_code(exc)}", next_step="`aws sts get-caller-identity` to check them"
        ) from None


def _trusts_sagemaker(document: object) -> bool:
    if isinstance(document, str):  # IAM returns it URL-encoded JSON in some SDKs, a dict in boto3
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        services = (statement.get("Principal") or {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if "sagemaker.amazonaws.com" in services and any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            return True
    return False


def role(spec: Spec, account: str) -> str:
    """The role's ARN, once it exists and SageMaker may assume it."""
    if not spec.role:
        raise UsageError("no SageMaker execution role given", next_step=ROLE_HELP)
    arn = naming.role_arn(spec, account)
    name = arn.rsplit("/", 1)[-1]
    iam = aws.client("iam")
    try:
        found = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        raise NotReadyError(f"the role {name} does not exist in account {account}", next_step=ROLE_HELP) from None
    if not _trusts_sagemaker(found.get("AssumeRolePolicyDocument", {})):
        raise NotReadyError(
            f"the role {name} is not trusted by sagemaker.amazonaws.com (its trust policy names other principals)",
            next_step=f"aws iam update-assume-role-policy --role-name {name} --policy-document "
            '\'{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
            '"Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}\'',
        )
    return found["Arn"]


def role_reads_bucket(role_arn: str, bucket: str) -> str | None:
    """None when the role may read and write the bucket; else a warning (or an error if clearly denied)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        result = aws.client("iam", max_attempts=1).simulate_principal_policy(
            PolicySourceArn=role_arn,
            ActionNames=["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
            ResourceArns=[f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        )
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # not allowed to simulate, or no such API
        return f"could not check the role's access to s3://{bucket} ({error_code(exc) or exc}); continuing"
    denied = sorted({r["EvalActionName"] for r in result["EvaluationResults"] if r["EvalDecision"] != "allowed"})
    if denied:
        raise NotReadyError(
            f"the role {role_arn} may not {', '.join(denied)} on s3://{bucket}",
            next_step="attach a policy granting s3:GetObject/PutObject/ListBucket on the bucket to the role",
        )
    return None


def quota_hint(instance_type: str, spot: bool) -> str | None:
    """Zero quota for the training instance stops the deploy; an unreadable quota is a hint only."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    wanted = f"{instance_type} for {'spot ' if spot else ''}training job usage"
    try:
        pages = (
            aws.client("service-quotas", max_attempts=1)
            .get_paginator("list_service_quotas")
            .paginate(ServiceCode="sagemaker")
        )
        found = next((q for page in pages for q in page.get("Quotas", []) if q.get("QuotaName") == wanted), None)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        reason = error_code(exc) or type(exc).__name__
        return f"could not read the quota '{wanted}' ({reason}); check it in Service Quotas"
    if found is None:
        return f"quota '{wanted}' not listed; if the job is refused, request it in Service Quotas"
    if found.get("Value", 0) < 1:
        raise NotReadyError(
            f"your account's quota '{wanted}' is 0",
            next_step="request an increase in the Service Quotas console (SageMaker), or pass --instance-type",
        )
    return None


def bucket(spec: Spec) -> bool:
    """Make sure the bucket exists; create it private and encrypted when absent. True when created."""
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=spec.bucket)
        return False
    except s3.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("403", "AccessDenied"):
            raise SconesError(
                f"bucket {spec.bucket} exists but this account may not use it (it may belong to another account)",
                next_step="pass --bucket with a name of your own",
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    calls = {c.operation: c.params for c in requests.bucket_calls(spec)}
    create = dict(calls["create_bucket"])
    if spec.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": spec.region}
    s3.create_bucket(**create)
    s3.put_public_access_block(**calls["put_public_access_block"])
    s3.put_bucket_encryption(**calls["put_bucket_encryption"])
    s3.put_bucket_tagging(**calls["put_bucket_tagging"])
    return True


def run(spec: Spec, log=print) -> Preflight:
    account = credentials()
    log(f"preflight: account {account}, region {spec.region}")
    arn = role(spec, account)
    log(f"preflight: role {arn} exists and SageMaker may assume it")
    created = bucket(spec)
    log(f"preflight: bucket s3://{spec.bucket} {'created (private, SSE-S3)' if created else 'exists'}")
    checks = [role_reads_bucket(arn, spec.bucket)]
    if spec.model_uri is None:  # no training job otherwise
        checks.append(quota_hint(spec.instance_type, spec.spot))
    warnings = [w for w in checks if w]
    for warning in warnings:
        log(f"preflight: note: {warning}")
    return Preflight(account, spec.region, arn, created, warnings)
