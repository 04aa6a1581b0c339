"""What `scones deploy --target aws` does, as data: the steps of the chain, each with its AWS calls, in order.

The dry run prints this plan (scones.deploy.render) and scones.deploy.sagemaker runs the same requests
(scones.deploy.requests), so what is shown is what runs. Building it calls nothing: no credentials, no network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from scones import rollout
from scones.deploy import images
from scones.deploy.naming import account_of, capture_uri, monitoring_source_key
from scones.deploy.requests import (
    Call,
    Facts,
    alarm_calls,
    endpoint_config_request,
    endpoint_request,
    model_request,
    monitoring_calls,
    package_calls,
    preflight_calls,
    scaling_calls,
    stack_calls,
    stage_calls,
    training_calls,
    update_endpoint_request,
)
from scones.deploy.spec import Spec


@dataclass
class Step:
    key: str  # preflight | stage | train | package | model | endpoint-config | endpoint | scaling | stack | monitor
    title: str
    calls: list[Call] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build(spec: Spec, facts: Facts | None = None, image: Callable[..., str] | None = None) -> list[Step]:
    facts = facts or Facts(account=account_of(spec))
    image = image or images.retrieve
    account = facts.account
    steps = [Step("preflight", "preflight: credentials, region, role, bucket, quota", preflight_calls(spec, account))]
    if spec.model_uri is None:
        classes = ",".join(spec.classes)
        steps.append(
            Step("stage", f"stage: `scones stage --source {spec.source} --classes {classes}`", stage_calls(spec))
        )
        what = (
            "built-in image-classification" if spec.algorithm == "builtin" else "training/train.py, PyTorch container"
        )
        train = Step("train", f"training job ({what})", training_calls(spec, facts, image))
        if spec.spot:
            train.notes.append(f"spot: MaxWaitTimeInSeconds {spec.max_wait} >= MaxRuntimeInSeconds {spec.max_run_s}")
        steps.append(train)
    model = model_request(spec, facts, image)
    if spec.algorithm == "script":
        title = "serving artifact: model.tar.gz + code/inference.py (the file the local server runs)"
        steps.append(Step("package", title, package_calls(spec, model)))
    steps.append(Step("model", "model", [Call("sagemaker", "create_model", model, "only if absent")]))
    config = endpoint_config_request(spec, model["ModelName"], facts.production_model)
    cfg = Step("endpoint-config", "endpoint configuration", [Call("sagemaker", "create_endpoint_config", config)])
    if spec.shadow_percent is not None:
        cfg.notes.append(
            f"shadow: {spec.shadow_percent:g} % of requests copied to --model as variant Shadow; production "
            "keeps the endpoint's model and alone answers; compare with `scones monitor --compare production,shadow`"
        )
    if spec.serverless:
        cfg.notes.append("serverless endpoints do not capture data: `scones monitor` will have nothing to read")
    else:
        cfg.notes.append(f"data capture: 100 % of requests, Input and Output, to {capture_uri(spec)}/")
    steps.append(cfg)
    endpoint = Call(
        "sagemaker",
        "create_endpoint",
        endpoint_request(spec, config["EndpointConfigName"]),
        "update_endpoint when it exists with another config; waits until InService",
    )
    if spec.rollout:
        steps.append(Step("alarms", "rollout alarms (rolled back when one is in ALARM)", alarm_calls(spec)))
        update = update_endpoint_request(spec, config["EndpointConfigName"])
        endpoint = Call("sagemaker", "update_endpoint", update, "blue/green; waits until InService")
    steps.append(Step("endpoint", "endpoint (bills per hour until `scones clean --target aws`)", [endpoint]))
    if spec.rollout:
        stages = " then ".join(f"{p} %" for p in rollout.parse(spec.rollout).stages())
        steps[-1].notes.append(f"rollout {spec.rollout}: the new fleet gets {stages}; an alarm rolls it all back")
    if not spec.serverless:
        steps.append(Step("scaling", "autoscaling", scaling_calls(spec, account)))
    title = f"workflow stack {spec.stack} (template.yaml: 3 Lambdas, 2 state machines, SNS alerts)"
    steps.append(Step("stack", title, stack_calls(spec)))
    mon = Step("monitor", "monitoring: hourly `python -m scones.monitoring` as a Processing job")
    mon.calls = monitoring_calls(spec, account, monitoring_source_key(spec, "<hash>"), image)
    if spec.serverless:
        mon.notes.append("serverless: no captured data, so the hourly job will report nothing to read")
    steps.append(mon)
    return steps
