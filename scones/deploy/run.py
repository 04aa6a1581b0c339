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

from scones import endpoint, gate, localcloud, localstack, models, rollout
from scones.core import aws, settings
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.core.target import Target
from scones.deploy import requests, stack
from scones.deploy.spec import from_settings
from services.endpoint.variants import PRODUCTION, SHADOW, Variant


@dataclass
class Update:
    """How a new model reaches the local endpoint (docs/safe-updates.md)."""

    force: bool = False  # skip the quality gate
    shadow_percent: float | None = None  # mirror this share of live requests to it, answer with production
    rollout: str | None = None  # canary:P:S | linear:P:S, rolled back on `alarms`
    alarms: tuple[str, ...] = ()  # default: the candidate's 5xx and latency alarms, created here
    bucket: str = ""
    prefix: str = ""
    threshold: float = settings.DEFAULT_THRESHOLD


@dataclass
class Serving:
    """What the classify Lambda will call: the endpoint's name, its model, and (locally) its URL."""

    name: str
    model_uri: str
    model_dir: Path
    runtime_url: str  # where the classify Lambda reaches it


def update(name: str, model: str, how: Update, log: Callable[[str], None] = print) -> endpoint.EndpointStatus:
    """A new model onto the running endpoint: the gate first, then a shadow, a rollout, or a switch."""
    if how.rollout:
        plan = rollout.parse(how.rollout)  # a bad plan is refused before anything is downloaded
    rollout.recover(name, log)
    uri, candidate = endpoint.prepare_model(model, name)
    production = endpoint.record(name)
    if how.force:
        log("quality gate skipped (--force)")
    else:
        try:
            gate.check_staged(
                candidate,
                Path(production["model_dir"]),
                how.bucket,
                how.prefix,
                how.threshold,
                settings.gate_margins(),
                log,
            )
        except gate.GateError:
            raise
        except SconesError as exc:
            raise gate.GateError(
                f"the quality gate cannot score the models: {exc}", "scones stage, or scones deploy --force"
            ) from None
    old = Variant(PRODUCTION, Path(production["model_dir"]), 1.0, 0.0, production.get("model_uri", ""))
    if how.shadow_percent is not None:
        shadow = Variant(SHADOW, candidate, 0.0, how.shadow_percent, uri)
        log(f"shadow test: {how.shadow_percent:g}% of requests to endpoint {name} mirrored to {uri}")
        return endpoint.serve_variants(name, [old, shadow], log=log)
    if how.rollout:
        names = list(how.alarms) or rollout.ensure_alarms(rollout.default_alarms(name))
        log(rollout.run(name, str(candidate), plan, names, log))
        return endpoint.status(name)
    return endpoint.switch(str(candidate), name, log=log)  # the old model serves until the new one answers


def local_serving(
    name: str,
    model: str | None,
    host: str | None = None,
    log: Callable[[str], None] = print,
    how: Update | None = None,
) -> Serving:
    """The local endpoint, started (or updated when --model names another model, or restarted when it must bind
    elsewhere)."""
    how = how or Update(force=True)
    current = endpoint.status(name)
    moved = current.running and host is not None and f"//{host}:" not in (current.url or "")
    if current.running and moved:
        endpoint.stop(name, log=log)
        current = endpoint.status(name)
    elif current.running and model and endpoint.record(name).get("model_uri") != model:
        current = update(name, model, how, log)
    elif how.shadow_percent is not None or how.rollout:
        raise UsageError("--shadow and --rollout need --model NEW and a running endpoint", "scones deploy --model …")
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
    how: Update | None = None,
    prefix: str | None = None,
    workflow_type: str | None = None,
) -> stack.DeployResult:
    spec = from_settings(bucket=bucket, threshold=threshold, alert_email=alert_email, workflow_type=workflow_type)
    if not 0 <= spec.threshold <= 1:
        raise UsageError(f"--threshold {spec.threshold} is outside 0..1")
    if target.name == "local" and not (target.endpoint_url and localcloud.health(target.endpoint_url)):
        raise NotReadyError("the local cloud is not running", "scones up (or pass --target aws|localstack)")
    if target.name == "localstack":
        localstack.require(target.endpoint_url or "")
    aws.ensure_bucket(spec.bucket, log)
    how = how or Update(force=True)
    how.bucket, how.prefix, how.threshold = spec.bucket, (prefix or settings.prefix()).strip("/"), spec.threshold
    if target.name == "localstack":  # in Docker mode the endpoint binds the bridge, Lambdas use its host name
        serving = local_serving(spec.endpoint, model, localstack.endpoint_host(log), log, how)
        serving.runtime_url = localstack.url_for_lambdas(serving.runtime_url)
    else:
        serving = local_serving(spec.endpoint, model, log=log, how=how)
    served = replace(spec, classes=tuple(models.labels_of(serving.model_dir)))
    backfill = target.name != "localstack"  # LocalStack's Step Functions cannot parse the Distributed Map's ItemBatcher
    return stack.deploy(requests.stack_parameters(served, serving.runtime_url, backfill), log=log)
