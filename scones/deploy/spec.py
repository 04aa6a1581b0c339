"""What a user chooses about the AWS deployment: one frozen Spec, built once from the flags and settings.

Each choice has one default, here or (for what the environment can set) in scones.core.settings. The CLI's
flags default to None and `from_settings` fills what was not given; a variation of a spec is
`dataclasses.replace(spec, …)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from scones.core import settings
from scones.data.classes import DEFAULT_CLASSES

TAG_PROJECT = ("project", "scones")
TAG_STACK = "scones:stack"


@dataclass(frozen=True)
class Spec:
    """Everything a user can choose about the AWS deployment. Spec() alone reads no environment."""

    stack: str = settings.DEFAULT_STACK_NAME
    bucket: str = settings.DEFAULT_BUCKET
    prefix: str = settings.DEFAULT_PREFIX
    endpoint: str = settings.DEFAULT_ENDPOINT_NAME
    region: str = settings.DEFAULT_REGION
    role: str | None = None  # the SageMaker execution role: ARN or name
    algorithm: str = "script"  # script: training/train.py in the PyTorch container; builtin: image-classification
    instance_type: str = "ml.g4dn.xlarge"  # training
    spot: bool = False
    max_run_s: int = 3600  # MaxRuntimeInSeconds, always set
    max_wait_s: int | None = None  # spot only; default 2 x max_run_s
    endpoint_instance_type: str = "ml.m5.large"
    serverless: bool = False
    serverless_memory_mb: int = 3072
    serverless_max_concurrency: int = 5
    max_instances: int = 4
    invocations_per_instance: int = 70
    source: str = "synthetic"  # what `scones stage` stages
    classes: tuple[str, ...] = DEFAULT_CLASSES
    epochs: int | None = None
    hyperparameters: tuple[tuple[str, str], ...] = ()
    model_uri: str | None = None  # deploy this model.tar.gz instead of training one
    capture_prefix: str = settings.DEFAULT_CAPTURE_PREFIX
    threshold: float = settings.DEFAULT_THRESHOLD
    alert_email: str = ""
    workflow_type: str = settings.DEFAULT_WORKFLOW_TYPE  # the single-image machine: standard | express
    monitor_instance_type: str | None = None  # None: sized from monitor_records (requests.monitor_instance_type)
    monitor_schedule: str = "rate(1 hour)"
    monitor_records: int = 360_000  # capture records one monitoring run reads: 100 images/s for an hour
    # trying --model on the deployed endpoint (docs/safe-updates.md): a blue/green rollout or a shadow variant
    rollout: str | None = None  # canary:P:S | linear:P:S: UpdateEndpoint's DeploymentConfig
    rollout_alarms: tuple[str, ...] = ()  # roll back on these; none: the variant's 5xx and latency p95, created
    shadow_percent: float | None = None  # --shadow: --model as a shadow variant sent this share of requests

    @property
    def name_prefix(self) -> str:
        return self.stack.removesuffix("-workflow")

    @property
    def max_wait(self) -> int | None:
        if not self.spot:
            return None
        return self.max_wait_s if self.max_wait_s is not None else 2 * self.max_run_s

    def tags(self) -> list[dict[str, str]]:
        return [{"Key": TAG_PROJECT[0], "Value": TAG_PROJECT[1]}, {"Key": TAG_STACK, "Value": self.stack}]


FIELDS = tuple(f.name for f in fields(Spec))
# The choices the environment can make (scones.core.settings reads them; its defaults are Spec's above).
ENVIRONMENT: dict[str, Callable[[], object]] = {
    "stack": settings.stack_name,
    "bucket": settings.bucket,
    "prefix": settings.prefix,
    "endpoint": settings.endpoint_name,
    "region": settings.region,
    "role": settings.sagemaker_role,
    "capture_prefix": settings.capture_prefix,
    "threshold": settings.threshold,
    "workflow_type": settings.workflow_type,
}


def default(name: str) -> object:
    """A choice's default when neither a flag nor the environment sets it (the CLI's help text shows it)."""
    return Spec.__dataclass_fields__[name].default


def from_settings(**chosen: object) -> Spec:
    """The spec for this environment: a choice given (not None) wins, else its setting, else Spec's default."""
    unknown = set(chosen) - set(FIELDS)
    if unknown:
        raise TypeError(f"not a choice of the deployment: {', '.join(sorted(unknown))}")
    values = {name: value for name, value in chosen.items() if value is not None}
    for name, setting in ENVIRONMENT.items():
        if name not in values:  # read only what is not chosen: a bad variable behind a flag does not matter
            values[name] = setting()
    return Spec(**values)
