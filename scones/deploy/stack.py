"""`scones deploy`: one CloudFormation stack from template.yaml, created or updated, identical on every target.

Only the parameters differ by target: locally the classify Lambda is told where the model server listens
(SageMakerRuntimeUrl); on AWS that parameter is empty and the real SageMaker endpoint answers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from scones.core import settings
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.deploy import package

TEMPLATE = package.ROOT / "template.yaml"


class DeployError(SconesError):
    """The stack could not be created or updated (the message carries CloudFormation's reason)."""

    next_default = "scones status, then scones deploy again"


@dataclass
class DeployResult:
    stack: str
    action: str  # created | updated | unchanged
    outputs: dict[str, str]
    uploaded: int
    seconds: float


def outputs(name: str | None = None, cfn=None) -> dict[str, str]:
    """The deployed stack's outputs (state machine ARNs, topic, functions)."""
    if cfn is None:
        from scones.core import aws

        cfn = aws.client("cloudformation")
    name = name or settings.stack_name()
    try:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            raise NotReadyError(f"stack {name} is not deployed", "scones deploy") from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _wait(cfn, name: str, action: str) -> None:
    waiter = cfn.get_waiter(f"stack_{action}_complete")
    try:
        waiter.wait(StackName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 450})
    except Exception as exc:
        events = cfn.describe_stack_events(StackName=name).get("StackEvents", [])[:10]
        reasons = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in events
            if "FAILED" in e.get("ResourceStatus", "")
        ]
        raise DeployError(f"stack {name} {action} failed: {exc}; " + "; ".join(reasons)) from None


def deploy(
    parameters: dict[str, str], name: str | None = None, log=print, tags: list[dict[str, str]] | None = None
) -> DeployResult:
    """Package, upload and create or update the stack; a deploy with nothing changed changes nothing."""
    from scones.core import aws

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
        _wait(cfn, name, "delete")
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
        _wait(cfn, name, "create")
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
                _wait(cfn, name, "update")
                action = "updated"
            except cfn.exceptions.ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise DeployError(f"stack {name} update failed: {exc}") from None
                action = "unchanged"
    return DeployResult(name, action, outputs(name, cfn), uploaded, time.perf_counter() - started)


def delete(name: str | None = None, log=print) -> bool:
    from scones.core import aws

    name = name or settings.stack_name()
    cfn = aws.client("cloudformation")
    try:
        cfn.describe_stacks(StackName=name)
    except cfn.exceptions.ClientError:
        log(f"stack {name} is not deployed")
        return False
    cfn.delete_stack(StackName=name)
    _wait(cfn, name, "delete")
    log(f"stack {name} deleted")
    return True


def filter_threshold(requested: float | None = None) -> float:
    """The confidence threshold a command judges answers by: the one asked for, else the deployed stack's
    (0 included), else $SCONES_THRESHOLD; refused outside 0..1."""
    if requested is None:
        deployed = deployed_threshold()
        requested = settings.threshold() if deployed is None else deployed
    if not 0 <= requested <= 1:
        raise UsageError(f"--threshold {requested} is outside 0..1")
    return requested


def deployed_threshold(name: str | None = None) -> float | None:
    """The Threshold parameter of the deployed workflow stack; None when none is deployed or no cloud answers."""
    from scones.core import aws

    cfn = aws.client("cloudformation", max_attempts=1)
    try:
        found = cfn.describe_stacks(StackName=name or settings.stack_name())["Stacks"][0]
    except Exception:  # not deployed, or no cloud: callers fall back to the setting
        return None
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in found.get("Parameters", [])}
    try:
        return float(params["Threshold"])
    except (KeyError, TypeError, ValueError):
        return None
