"""The names the AWS deployment gives what it makes, and the IAM documents it writes (pure: calls nothing).

Names that depend on content carry a short hash of it (`digest`), which is what makes a re-run find what it made
last time and change nothing. `scones clean --target aws` finds what to delete by the same names.
"""

from __future__ import annotations

import hashlib
import json

from scones.core import settings
from scones.core.settings import ROOT
from scones.deploy.spec import Spec

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
SCHEDULER_TARGET = "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"
MONITOR_CODE = "/opt/ml/processing/input/code"  # the processing job's code input (run.sh + the scones tarball)
MONITOR_OUTPUT = "/opt/ml/processing/output"  # uploaded to monitor_out_uri when the job ends
MONITOR_SCRIPT = "run.sh"  # scones/monitoring/run.sh
MONITOR_TARBALL = "scones-src.tar.gz"
ALERT_TOPIC_PLACEHOLDER = "<the workflow stack's AlertTopicArn>"  # known once the stack is deployed
UNKNOWN_TIMESTAMP = "<timestamp>"  # ModelTrainer appends the time of the call to the base name
UNKNOWN_ACCOUNT = "<account-id>"
UNKNOWN_HASH = "<hash of the trained artifact>"
UNKNOWN_PRODUCTION_MODEL = "<the endpoint's model now>"  # --shadow: production keeps it (read at deploy time)
INFERENCE_FILE = ROOT / "services" / "endpoint" / "inference.py"


def digest(*parts: object, n: int = 8) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:n]


def role_arn(spec: Spec, account: str) -> str:
    if spec.role and spec.role.startswith("arn:"):
        return spec.role
    return f"arn:aws:iam::{account}:role/{spec.role or '<role: pass --role or set SCONES_SAGEMAKER_ROLE>'}"


def account_of(spec: Spec) -> str:
    """The account, when the role's ARN names it (a dry run calls nothing to find out)."""
    if spec.role and spec.role.startswith("arn:") and len(spec.role.split(":")) > 4:
        return spec.role.split(":")[4]
    return UNKNOWN_ACCOUNT


def staging_prefix(spec: Spec) -> str:
    """Where ModelTrainer uploads the code and its drivers (the SDK session's default bucket and prefix)."""
    return f"{settings.DEPLOY_PREFIX}/{spec.stack}/training"


def serving_key(job_or_model: str) -> str:
    """Where the artifact with code/inference.py is uploaded (content-addressed by the serving code)."""
    return f"models/{job_or_model}/serving/model-{digest(INFERENCE_FILE.read_bytes())}.tar.gz"


def scaling_resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def scaling_policy_name(endpoint: str) -> str:
    return f"{endpoint}-invocations-per-instance"


def scheduler_role_name(spec: Spec) -> str:
    return f"{spec.name_prefix}-monitor-scheduler"


def schedule_group(spec: Spec) -> str:
    return f"{spec.name_prefix}-monitoring"


def schedule_name(spec: Spec) -> str:
    return f"{spec.name_prefix}-monitor-hourly"


def monitor_job_prefix(spec: Spec) -> str:
    """At most 26 characters: the job name adds `-<aws.scheduler.execution-id>` (16 in AWS's example; a UUID's
    36 allowed for) and ProcessingJobName stops at 63."""
    name = f"{spec.name_prefix}-monitor"
    return name if len(name) <= 26 else f"{spec.name_prefix[:17]}-{digest(spec.name_prefix)}"


def monitor_dlq_name(spec: Spec) -> str:
    """The schedule's dead-letter queue: where a CreateProcessingJob the scheduler could not make lands."""
    return f"{spec.name_prefix}-monitor-dlq"


def monitor_dlq_arn(spec: Spec, account: str) -> str:
    return f"arn:aws:sqs:{spec.region}:{account}:{monitor_dlq_name(spec)}"


def monitor_alarm_name(spec: Spec) -> str:
    return f"{spec.name_prefix}-monitor-not-started"


def monitoring_source_prefix(spec: Spec, body_digest: str) -> str:
    """One folder per content: the job's ProcessingInput downloads all of it (run.sh + the scones source)."""
    return f"deploy/{spec.stack}/monitoring/{body_digest}/"


def monitoring_source_key(spec: Spec, body_digest: str) -> str:
    return monitoring_source_prefix(spec, body_digest) + MONITOR_TARBALL


def capture_uri(spec: Spec) -> str:
    return f"s3://{spec.bucket}/{spec.capture_prefix}/{spec.endpoint}"


def monitor_out_uri(spec: Spec) -> str:
    return f"s3://{spec.bucket}/{settings.MONITORING_PREFIX}/{spec.endpoint}"


# --- IAM documents -----------------------------------------------------------------------------------


def scheduler_trust_policy() -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }


def scheduler_role_policy(spec: Spec, account: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sagemaker:CreateProcessingJob", "sagemaker:AddTags"],
                "Resource": f"arn:aws:sagemaker:{spec.region}:{account}:processing-job/{monitor_job_prefix(spec)}-*",
            },
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": role_arn(spec, account),
                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            },
            {  # the scheduler delivers a start it could not make to the dead-letter queue with this role
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": monitor_dlq_arn(spec, account),
            },
        ],
    }
