"""`scones deploy` on the local targets (local, localstack): make sure our model server serves, then create or
update the workflow stack. `--target aws` is scones/deploy/aws_command.py's SageMaker chain.

The stack (template.yaml) is the same on every target; only its parameters differ: here the classify Lambda
is told where our model server listens (SageMakerRuntimeUrl); on AWS that parameter is empty and the
SageMaker endpoint of the same name answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones import endpoint, localcloud, localstack, models
from scones.core import aws, settings
from scones.core.errors import NotReadyError, UsageError
from scones.core.target import Target
from scones.deploy import stack


@dataclass
class Serving:
    """What the classify Lambda will call: the endpoint's name, its model, and (locally) its URL."""

    name: str
    model_uri: str
    model_dir: Path
    runtime_url: str  # where the classify Lambda reaches it


def local_serving(name: str, model: str | None, host: str | None = None, log: Callable[[str], None] = print) -> Serving:
    """The local endpoint, started (or restarted when --model names another model, or it must bind elsewhere)."""
    current = endpoint.status(name)
    moved = current.running and host is not None and f"//{host}:" not in (current.url or "")
    if current.running and (moved or (model and endpoint.record(name).get("model_uri") != model)):
        endpoint.stop(name, log=log)
        current = endpoint.status(name)
    if not current.running:
        current = endpoint.start(model, name, log=log, host=host)
    served = endpoint.record(name)
    log(f"endpoint {name} serves {served.get('model_uri')} at {current.url}")
    return Serving(name, served.get("model_uri", ""), Path(served["model_dir"]), current.url or "")


def stack_parameters(serving: Serving, bucket: str, threshold: float, alert_email: str | None) -> dict[str, str]:
    return {
        "NamePrefix": settings.stack_name().removesuffix("-workflow"),
        "CodeBucket": bucket,
        "DataBucket": bucket,
        "EndpointName": serving.name,
        "Labels": ",".join(models.labels_of(serving.model_dir)),
        "Threshold": str(threshold),
        "SageMakerRuntimeUrl": serving.runtime_url,
        "AlertEmail": alert_email or "",
    }


def deploy(
    target: Target,
    bucket: str,
    model: str | None = None,
    threshold: float | None = None,
    alert_email: str | None = None,
    log: Callable[[str], None] = print,
) -> stack.DeployResult:
    threshold = settings.threshold() if threshold is None else threshold
    if not 0 <= threshold <= 1:
        raise UsageError(f"--threshold {threshold} is outside 0..1")
    if target.name == "local" and not (target.endpoint_url and localcloud.health(target.endpoint_url)):
        raise NotReadyError("the local cloud is not running", "scones up (or pass --target aws|localstack)")
    if target.name == "localstack":
        localstack.require(target.endpoint_url or "")
    aws.ensure_bucket(bucket, log)
    name = settings.endpoint_name()
    if target.name == "localstack":  # in Docker mode the endpoint binds the bridge, Lambdas use its host name
        serving = local_serving(name, model, localstack.endpoint_host(log), log)
        serving.runtime_url = localstack.url_for_lambdas(serving.runtime_url)
    else:
        serving = local_serving(name, model, log=log)
    return stack.deploy(stack_parameters(serving, bucket, threshold, alert_email), log=log)
