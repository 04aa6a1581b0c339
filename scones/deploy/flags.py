"""The AWS deploy's flags: declared once for the parser (deploy, clean, train --mode sagemaker-local), mapped to the
Spec's fields, and checked as the real deploy checks them, so that a dry run refuses what the deploy would.
Light on purpose: `scones --help` builds the parser from here without importing the deploy machinery."""

from __future__ import annotations

import argparse
import math
import re

from scones.core import settings
from scones.core.errors import UsageError
from scones.data.classes import at_least_two, parse_classes
from scones.deploy.spec import Spec, default, from_settings


def add_deploy_flags(p: argparse.ArgumentParser) -> None:
    """Every choice defaults to None: the spec fills it from settings, else from its own default (shown in help)."""
    g = p.add_argument_group("--target aws (make deploy-aws)")
    g.add_argument("--dry-run", action="store_true", help="print every AWS call it would make; call nothing")
    g.add_argument("--yes", action="store_true", help="deploy without asking, once the cost estimate is printed")
    g.add_argument(
        "--role", default=None, help=f"SageMaker execution role, ARN or name (default ${settings.SAGEMAKER_ROLE})"
    )
    g.add_argument("--instance-type", default=None, help=f"training instance (default {default('instance_type')})")
    g.add_argument("--spot", action="store_true", default=None, help="managed spot training (max wait >= max run)")
    g.add_argument(
        "--max-run",
        type=int,
        default=None,
        help=f"MaxRuntimeInSeconds of the training job (default {default('max_run_s')})",
    )
    g.add_argument("--max-wait", type=int, default=None, help="spot: MaxWaitTimeInSeconds (default 2 x --max-run)")
    g.add_argument(
        "--algorithm",
        choices=["script", "builtin"],
        default=None,
        help=f"builtin: image-classification (default {default('algorithm')})",
    )
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default: the algorithm's)")
    g.add_argument("--source", default=None, help=f"what `scones stage` stages (default {default('source')})")
    g.add_argument("--classes", default=None, help=f"default {','.join(default('classes'))}")
    g.add_argument(
        "--endpoint-instance-type",
        default=None,
        help=f"endpoint instance (default {default('endpoint_instance_type')})",
    )
    g.add_argument("--serverless", action="store_true", default=None, help="a serverless endpoint (no data capture)")
    g.add_argument(
        "--max-instances", type=int, default=None, help=f"autoscaling maximum (default {default('max_instances')})"
    )
    g.add_argument(
        "--invocations-per-instance",
        type=int,
        default=None,
        help=f"autoscaling target (default {default('invocations_per_instance')})",
    )


def add_clean_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="delete without asking, once the list is printed")
    p.add_argument(
        "--purge-data", action="store_true", help="aws: also delete the S3 objects (and a bucket scones made)"
    )


# The Spec's field each flag sets, on whichever command has it (deploy, clean, train --mode sagemaker-local).
FLAG_FIELDS = {
    "bucket": "bucket",
    "prefix": "prefix",
    "role": "role",
    "algorithm": "algorithm",
    "instance_type": "instance_type",
    "spot": "spot",
    "max_run": "max_run_s",
    "max_wait": "max_wait_s",
    "endpoint_instance_type": "endpoint_instance_type",
    "serverless": "serverless",
    "max_instances": "max_instances",
    "invocations_per_instance": "invocations_per_instance",
    "source": "source",
    "epochs": "epochs",
    "model": "model_uri",
    "threshold": "threshold",
    "alert_email": "alert_email",
    "rollout": "rollout",
    "workflow_type": "workflow_type",
}


def spec_from_args(args: argparse.Namespace) -> Spec:
    """The spec from the flags this command has (a flag it lacks or left unset is None: the setting decides)."""
    chosen = {field: getattr(args, flag, None) for flag, field in FLAG_FIELDS.items()}
    chosen["rollout_alarms"] = tuple(getattr(args, "alarm", None) or ()) or None
    if getattr(args, "shadow", False):
        given = getattr(args, "shadow_percent", None)
        chosen["shadow_percent"] = settings.shadow_percent() if given is None else given
    classes = tuple(parse_classes(getattr(args, "classes", None)))
    return checked(from_settings(**chosen, classes=classes))


BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket-naming rules, less the rarer ones
ROLE = re.compile(r"^(arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}|[\w+=,.@-]{1,64})$")  # IAM's patterns


def checked(spec: Spec) -> Spec:
    """Refuse, before anything is planned or sent, what AWS would refuse later or what makes no sense."""
    at_least_two(spec.classes, "scones deploy --target aws")
    if not math.isfinite(spec.threshold) or not 0 <= spec.threshold <= 1:
        raise UsageError(f"--threshold {spec.threshold} is not a number in 0..1")
    if spec.workflow_type not in settings.WORKFLOW_TYPES:
        raise UsageError(
            f"--workflow-type {spec.workflow_type!r} is not one of {', '.join(settings.WORKFLOW_TYPES)}",
            "scones deploy --workflow-type express",
        )
    if spec.epochs is not None and spec.epochs < 1:
        raise UsageError(f"--epochs {spec.epochs} must be at least 1")
    if not BUCKET_NAME.match(spec.bucket) or ".." in spec.bucket:
        raise UsageError(f"--bucket {spec.bucket!r} is not a valid S3 bucket name", "pass a name like scones-data-123")
    if not spec.prefix.strip("/") or ".." in spec.prefix.split("/"):
        raise UsageError(f"--prefix {spec.prefix!r} is empty or climbs out of the bucket", "pass a prefix like data")
    if spec.role is not None and not ROLE.match(spec.role):
        raise UsageError(f"--role {spec.role!r} is neither an IAM role ARN nor a role name")
    if spec.spot and spec.max_wait_s is not None and spec.max_wait_s < spec.max_run_s:
        raise UsageError(
            f"--max-wait {spec.max_wait_s} is below --max-run {spec.max_run_s}: spot needs max wait >= max run"
        )
    if not 1 <= spec.max_run_s <= 2_419_200:
        raise UsageError(f"--max-run {spec.max_run_s}: SageMaker allows 1 s to 28 days")
    if spec.max_instances < 1:
        raise UsageError("--max-instances must be at least 1")
    if spec.invocations_per_instance < 1:
        raise UsageError("--invocations-per-instance must be at least 1")
    if (spec.rollout or spec.shadow_percent is not None) and spec.model_uri is None:
        raise UsageError(
            "--rollout and --shadow try a new model on the deployed endpoint: name it with --model",
            "scones deploy --target aws --model s3://…/model.tar.gz --rollout canary:10:300",
        )
    if spec.shadow_percent is not None and not 0 < spec.shadow_percent <= 100:
        raise UsageError(f"--shadow-percent {spec.shadow_percent:g} is outside 0..100", "e.g. --shadow-percent 20")
    if spec.serverless and (spec.rollout or spec.shadow_percent is not None):
        raise UsageError("--rollout and --shadow need instances: a serverless endpoint has none", "drop --serverless")
    return spec
