"""`scones deploy` on the local targets (local, localstack): make sure our model server serves, then create or
update the workflow stack. `--target aws` is scones/deploy/aws_command.py's SageMaker chain.

The stack (template.yaml) is the same on every target; only its parameters differ: here the classify Lambda
is told where our model server listens (SageMakerRuntimeUrl); on AWS that parameter is empty and the
SageMaker endpoint of the same name answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from scones import endpoint, localcloud, localstack, models
from scones.core import aws
from scones.core.errors import NotReadyError, UsageError
from scones.core.target import Target
from scones.deploy import requests, stack
from scones.deploy.spec import from_settings


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
    if current.running and moved:
        endpoint.stop(name, log=log)
        current = endpoint.status(name)
    elif current.running and model and endpoint.record(name).get("model_uri") != model:
        current = endpoint.switch(model, name, log=log)  # the old model serves until the new one answers
    if not current.running:
        current = endpoint.start(model, name, log=log, host=host)
    served = endpoint.record(name)
    log(f"endpoint {name} serves {served.get('model_uri')} at {current.url}")
    return Serving(name, served.get("model_uri", ""), Path(served["model_dir"]), current.url or "")


def deploy(
    target: Target,
    bucket: str,
    model: str | None = None,
    threshold: float | None = None,
    alert_email: str | None = None,
    log: Callable[[str], None] = print,
) -> stack.DeployResult:
    spec = from_settings(bucket=bucket, threshold=threshold, alert_email=alert_email)
    if not 0 <= spec.threshold <= 1:
        raise UsageError(f"--threshold {spec.threshold} is outside 0..1")
    if target.name == "local" and not (target.endpoint_url and localcloud.health(target.endpoint_url)):
        raise NotReadyError("the local cloud is not running", "scones up (or pass --target aws|localstack)")
    if target.name == "localstack":
        localstack.require(target.endpoint_url or "")
    aws.ensure_bucket(spec.bucket, log)
    if target.name == "localstack":  # in Docker mode the endpoint binds the bridge, Lambdas use its host name
        serving = local_serving(spec.endpoint, model, localstack.endpoint_host(log), log)
        serving.runtime_url = localstack.url_for_lambdas(serving.runtime_url)
    else:
        serving = local_serving(spec.endpoint, model, log=log)
    served = replace(spec, classes=tuple(models.labels_of(serving.model_dir)))
    return stack.deploy(requests.stack_parameters(served, serving.runtime_url), log=log)
