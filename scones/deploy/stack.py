"""`scones deploy`: one CloudFormation stack from template.yaml, created or updated, identical on every target.

Only the parameters differ by target: locally the classify Lambda is told where the model server listens
(SageMakerRuntimeUrl); on AWS that parameter is empty and the real SageMaker endpoint answers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from scones import stacks
from scones.core import aws, settings
from scones.deploy import package
from scones.stacks import DeployError

TEMPLATE = settings.ROOT / "template.yaml"


@dataclass
class DeployResult:
    stack: str
    action: str  # created | updated | unchanged
    outputs: dict[str, str]
    uploaded: int
    seconds: float


def deploy(
    parameters: dict[str, str], name: str | None = None, log=print, tags: list[dict[str, str]] | None = None
) -> DeployResult:
    """Package, upload and create or update the stack; a deploy with nothing changed changes nothing."""
    started = time.perf_counter()
    name = name or settings.stack_name()
    bucket = parameters["CodeBucket"]
    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    items = package.artifacts(f"{settings.DEPLOY_PREFIX}/{name}")
    uploaded = package.upload(s3, bucket, items)
    params = {**parameters, **{param: artifact.key for param, artifact in items.items()}}
    body = TEMPLATE.read_text()
    cfn_params = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in sorted(params.items())]
    try:
        existing = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" not in str(exc):
            raise
        existing = None
    if (
        existing is not None
        and existing["StackStatus"].endswith("ROLLBACK_COMPLETE")
        and existing["StackStatus"].startswith("CREATE")
    ):
        log(f"stack {name} is in {existing['StackStatus']}: deleting it before creating it again")
        cfn.delete_stack(StackName=name)
        stacks.wait(cfn, name, "delete")
        existing = None
    if existing is None:
        log(f"creating stack {name} ...")
        cfn.create_stack(
            StackName=name,
            TemplateBody=body,
            Parameters=cfn_params,
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Tags=tags or [{"Key": "project", "Value": "scones"}],
        )
        stacks.wait(cfn, name, "create")
        action = "created"
    else:
        current_params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in existing.get("Parameters", [])}
        current_body = cfn.get_template(StackName=name)["TemplateBody"]
        if isinstance(current_body, dict):  # boto3 parses a JSON template body
            current_body = json.dumps(current_body)
        if current_body == body and all(current_params.get(k) == str(v) for k, v in params.items()):
            action = "unchanged"
        else:
            log(f"updating stack {name} ...")
            try:
                cfn.update_stack(
                    StackName=name, TemplateBody=body, Parameters=cfn_params, Capabilities=["CAPABILITY_NAMED_IAM"]
                )
                stacks.wait(cfn, name, "update")
                action = "updated"
            except cfn.exceptions.ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise DeployError(f"stack {name} update failed: {exc}") from None
                action = "unchanged"
    return DeployResult(name, action, stacks.outputs(name, cfn), uploaded, time.perf_counter() - started)
