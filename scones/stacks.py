"""The deployed workflow stack as the commands see it: its outputs and threshold, waiting on it, deleting it.

Every command that needs to know what is deployed asks here; `scones.deploy.stack` creates and updates it."""

from __future__ import annotations

from scones.core import aws, settings
from scones.core.errors import NotReadyError, SconesError, UsageError

# the stack's outputs naming its three state machines (template.yaml), and the single-image machine's type
SINGLE, BATCH = "ClassifyImageStateMachineArn", "ClassifyBatchStateMachineArn"
PREFIX = "ClassifyPrefixStateMachineArn"  # the Distributed Map backfill over an S3 prefix
WORKFLOW_TYPE = "WorkflowType"  # STANDARD | EXPRESS


class DeployError(SconesError):
    """The stack could not be created or updated (the message carries CloudFormation's reason)."""

    next_default = "scones status, then scones deploy again"


def outputs(name: str | None = None, cfn=None) -> dict[str, str]:
    """The deployed stack's outputs (state machine ARNs, topic, functions)."""
    if cfn is None:
        cfn = aws.client("cloudformation")
    name = name or settings.stack_name()
    try:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            raise NotReadyError(f"stack {name} is not deployed", "scones deploy") from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def is_express(found: dict[str, str]) -> bool:
    """Whether the deployed single-image machine (`found`: the stack's outputs) is Express (--workflow-type)."""
    return found.get(WORKFLOW_TYPE, "STANDARD") == "EXPRESS"


def filter_threshold(requested: float | None = None) -> float:
    """The confidence threshold a command judges answers by: the one asked for, else the deployed stack's
    (0 included), else $SCONES_THRESHOLD; refused outside 0..1."""
    if requested is None:
        deployed = deployed_threshold()
        requested = settings.threshold() if deployed is None else deployed
    if not 0 <= requested <= 1:
        raise UsageError(f"--threshold {requested} is outside 0..1")
    return requested


def deployed_parameters(name: str | None = None) -> dict[str, str]:
    """The deployed workflow stack's parameters; empty when none is deployed or no cloud answers."""
    cfn = aws.client("cloudformation", max_attempts=1)
    try:
        found = cfn.describe_stacks(StackName=name or settings.stack_name())["Stacks"][0]
    except Exception:  # not deployed, or no cloud: callers fall back to the settings
        return {}
    return {p["ParameterKey"]: p.get("ParameterValue") for p in found.get("Parameters", [])}


def deployed_threshold(name: str | None = None) -> float | None:
    """The Threshold parameter of the deployed workflow stack; None when none is deployed or no cloud answers."""
    try:
        return float(deployed_parameters(name)["Threshold"])
    except (KeyError, TypeError, ValueError):
        return None


def deployed_labels(name: str | None = None) -> list[str] | None:
    """The Labels parameter of the deployed workflow stack (the class names the endpoint's answers are read by);
    None when none is deployed or no cloud answers."""
    labels = [x.strip() for x in (deployed_parameters(name).get("Labels") or "").split(",") if x.strip()]
    return labels or None


def wait(cfn, name: str, action: str) -> None:
    """Until the stack `action` (create, update, delete) completes; a failure names the failed resources."""
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


def delete(name: str | None = None, log=print) -> bool:
    name = name or settings.stack_name()
    cfn = aws.client("cloudformation")
    try:
        cfn.describe_stacks(StackName=name)
    except cfn.exceptions.ClientError:
        log(f"stack {name} is not deployed")
        return False
    cfn.delete_stack(StackName=name)
    wait(cfn, name, "delete")
    log(f"stack {name} deleted")
    return True
