"""`scones deploy --target aws`: run the plan (scones.deploy.plan) step by step, each idempotent and resumable.

A step looks first: what exists and matches is left alone ("unchanged"), a training job still running is
waited for, an endpoint on another configuration is updated. SageMaker models and endpoint configurations
are immutable, so their names carry a hash of their content and a change makes a new one. The training job
runs through the SageMaker Python SDK v3 (aws_training.py); the monitoring schedule is aws_monitoring.py;
everything else is a plain boto3 call, exactly as the dry run prints it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from scones import rollout
from scones.core import aws, settings
from scones.core.errors import NotReadyError, SconesError
from scones.core.files import write_atomic
from scones.data import staging
from scones.deploy import aws_monitoring, aws_training, images, naming, preflight, requests, stack
from scones.deploy.checks import Report, contains, exists, missing
from scones.deploy.spec import Spec
from scones.models import serving_archive

# --- stage -------------------------------------------------------------------------------------------


def stage(spec: Spec, log=print) -> dict:
    """`scones stage`, unchanged: build the local folder and send what differs. Returns the manifest."""
    source = staging.resolve_source(spec.source, list(spec.classes))
    workdir = staging.default_workdir(source, list(spec.classes))
    manifest = staging.build(source, list(spec.classes), workdir)
    result = staging.upload(workdir, manifest, spec.bucket, spec.prefix)
    log(
        f"{'stage':<16} {'unchanged' if not result.uploaded else 'uploaded':<10} "
        f"s3://{spec.bucket}/{spec.prefix}/ ({result.uploaded} sent, {result.unchanged} unchanged)"
    )
    return manifest


# --- serve -------------------------------------------------------------------------------------------


def package_for_serving(spec: Spec, model_data: str, source: str, report: Report, log=print) -> str:
    """The trained artifact plus code/inference.py (the same file the local server runs), content-addressed."""
    s3 = aws.client("s3")
    key = naming.serving_key(source)
    if exists(s3, spec.bucket, key):
        report.add("package", "unchanged", f"s3://{spec.bucket}/{key}", log)
        return f"s3://{spec.bucket}/{key}"
    src_bucket, src_key = model_data[5:].split("/", 1)
    if not exists(s3, src_bucket, src_key):
        raise NotReadyError(
            f"the model artifact {model_data} is missing",
            next_step="check the training job's output, then `scones deploy --target aws` again",
        )
    body = s3.get_object(Bucket=src_bucket, Key=src_key)["Body"].read()
    s3.put_object(Bucket=spec.bucket, Key=key, Body=serving_archive(body))
    report.add("package", "created", f"s3://{spec.bucket}/{key}", log)
    return f"s3://{spec.bucket}/{key}"


def ensure_model(request: dict, report: Report, log=print) -> None:
    sm = aws.client("sagemaker")
    try:
        sm.describe_model(ModelName=request["ModelName"])
        report.add("model", "unchanged", request["ModelName"], log)
    except sm.exceptions.ClientError as exc:
        if not missing(exc):
            raise
        sm.create_model(**request)
        report.add("model", "created", request["ModelName"], log)


def ensure_endpoint_config(request: dict, report: Report, log=print) -> None:
    sm = aws.client("sagemaker")
    name = request["EndpointConfigName"]
    try:
        sm.describe_endpoint_config(EndpointConfigName=name)
        report.add("endpoint-config", "unchanged", name, log)
    except sm.exceptions.ClientError as exc:
        if not missing(exc):
            raise
        sm.create_endpoint_config(**request)
        report.add("endpoint-config", "created", name, log)


def _wait_in_service(name: str, poll_s: float, log=print) -> None:
    sm = aws.client("sagemaker")
    last = None
    while True:
        described = sm.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status != last:
            log(f"  endpoint {name}: {status}")
            last = status
        if status == "InService":
            return
        if status in ("Failed", "OutOfService", "Deleting"):
            raise SconesError(
                f"endpoint {name} is {status}: {described.get('FailureReason', 'no reason given')}",
                next_step="`scones clean --target aws`, then `scones deploy --target aws`",
            )
        time.sleep(poll_s)


def ensure_endpoint(spec: Spec, config_name: str, report: Report, poll_s: float, log=print) -> None:
    sm = aws.client("sagemaker")
    try:
        current = sm.describe_endpoint(EndpointName=spec.endpoint)
    except sm.exceptions.ClientError as exc:
        if not missing(exc):
            raise
        current = None
    if current is None:
        sm.create_endpoint(EndpointName=spec.endpoint, EndpointConfigName=config_name, Tags=spec.tags())
        report.add("endpoint", "created", f"{spec.endpoint} ({config_name})", log)
    elif current["EndpointConfigName"] == config_name:
        report.add("endpoint", "unchanged", f"{spec.endpoint} ({config_name})", log)
    else:
        _deregister_scaling(spec.endpoint)  # an update that changes the instance type fails while scaling is on
        sm.update_endpoint(EndpointName=spec.endpoint, EndpointConfigName=config_name)
        report.add("endpoint", "updated", f"{spec.endpoint}: {current['EndpointConfigName']} -> {config_name}", log)
    _wait_in_service(spec.endpoint, poll_s, log)


def serving_model(endpoint: str) -> str:
    """The model the endpoint's production variant serves now (what --shadow keeps in production)."""
    sm = aws.client("sagemaker")
    try:
        config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except sm.exceptions.ClientError as exc:
        if not missing(exc):
            raise
        raise NotReadyError(
            f"--shadow and --rollout try a model on the deployed endpoint {endpoint}, and there is none",
            next_step="scones deploy --target aws (without --shadow or --rollout) first",
        ) from None
    variants = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    return next((v for v in variants if v["VariantName"] == naming.VARIANT), variants[0])["ModelName"]


def ensure_alarms(spec: Spec, report: Report, log=print) -> None:
    """A rollout's alarms exist before any traffic moves: the variant's own are (re)made, named ones checked."""
    cloudwatch = aws.client("cloudwatch")
    if spec.rollout_alarms:
        found = {
            a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNames=list(spec.rollout_alarms))["MetricAlarms"]
        }
        absent = [name for name in spec.rollout_alarms if name not in found]
        if absent:
            raise NotReadyError(
                f"no CloudWatch alarm named {', '.join(absent)}: the rollout would have nothing to roll back on",
                next_step="create it, or leave out --alarm to use the variant's 5xx and latency alarms",
            )
        report.add("alarms", "unchanged", ", ".join(spec.rollout_alarms), log)
        return
    for request in requests.rollout_alarms(spec):
        cloudwatch.put_metric_alarm(**request)  # the same request again changes nothing
        report.add("alarms", "created", request["AlarmName"], log)


def roll_out(spec: Spec, config_name: str, report: Report, poll_s: float, log=print) -> None:
    """UpdateEndpoint with the rollout's DeploymentConfig; SageMaker shifts traffic and rolls back on an alarm.
    Rolled back: the endpoint is still on its old configuration once InService again (RolledBackError)."""
    sm = aws.client("sagemaker")
    current = sm.describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"]
    if current == config_name:
        report.add("endpoint", "unchanged", f"{spec.endpoint} ({config_name})", log)
        return
    _deregister_scaling(spec.endpoint)
    sm.update_endpoint(**requests.update_endpoint_request(spec, config_name))
    report.add("endpoint", "updated", f"{spec.endpoint}: {current} -> {config_name} by {spec.rollout}", log)
    _wait_in_service(spec.endpoint, poll_s, log)
    now = sm.describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"]
    if now != config_name:
        raise rollout.RolledBackError(f"rollout {spec.rollout} of endpoint {spec.endpoint} rolled back: {now} serves")


def _deregister_scaling(endpoint: str) -> None:
    scaling = aws.client("application-autoscaling")
    resource = naming.scaling_resource_id(endpoint)
    found = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    if found.get("ScalableTargets"):
        for policy in scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource).get(
            "ScalingPolicies", []
        ):
            scaling.delete_scaling_policy(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=naming.SCALABLE_DIMENSION,
                PolicyName=policy["PolicyName"],
            )
        scaling.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=naming.SCALABLE_DIMENSION
        )


def ensure_scaling(spec: Spec, account: str, report: Report, log=print) -> None:
    scaling = aws.client("application-autoscaling")
    register, policy = requests.scaling_calls(spec, account)
    resource = register.params["ResourceId"]
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    current = next(iter(targets.get("ScalableTargets", [])), None)
    wanted = (register.params["MinCapacity"], register.params["MaxCapacity"])
    if current and (current["MinCapacity"], current["MaxCapacity"]) == wanted:
        report.add("scaling", "unchanged", f"{resource}: {wanted[0]}..{wanted[1]} instances", log)
    else:
        scaling.register_scalable_target(**register.params)
        report.add("scaling", "updated" if current else "created", f"{resource}: {wanted[0]}..{wanted[1]}", log)
    policies = scaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource, PolicyNames=[policy.params["PolicyName"]]
    ).get("ScalingPolicies", [])
    config = policy.params["TargetTrackingScalingPolicyConfiguration"]
    same = bool(policies) and contains(policies[0].get("TargetTrackingScalingPolicyConfiguration"), config)
    if same:
        report.add("scaling", "unchanged", f"policy {policy.params['PolicyName']}", log)
    else:
        scaling.put_scaling_policy(**policy.params)
        report.add(
            "scaling",
            "updated" if policies else "created",
            f"policy {policy.params['PolicyName']}: {config['TargetValue']:g} {naming.SCALING_METRIC}",
            log,
        )


# --- the workflow stack and monitoring ---------------------------------------------------------------


def ensure_stack(spec: Spec, report: Report, log=print) -> dict[str, str]:
    result = stack.deploy(requests.stack_parameters(spec), name=spec.stack, log=lambda _m: None, tags=spec.tags())
    report.add("stack", result.action, f"{spec.stack} ({result.uploaded} artifacts uploaded)", log)
    return result.outputs


# --- the whole chain ---------------------------------------------------------------------------------


def record_path(stack: str) -> Path:
    return settings.aws_record_path(stack)


def _record(spec: Spec, report: Report) -> None:
    path = record_path(spec.stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(
        path, json.dumps({"stack": spec.stack, "region": spec.region, "bucket": spec.bucket, **report.names}, indent=2)
    )


def _source_name(uri: str) -> str:
    match = re.search(r"models/([^/]+)/output/model\.tar\.gz$", uri)
    return match.group(1) if match else f"external-{naming.digest(uri)}"


class NotConfirmed(SconesError):
    """The user answered no to the cost estimate: nothing was created."""


def deploy(spec: Spec, poll_s: float = 30.0, log=print, confirm: Callable[[str], bool] | None = None) -> Report:
    """The whole chain; every step skips what exists and matches.

    `confirm(account)` (the CLI's cost estimate and question) is asked once the credentials are known to work
    (a free, read-only call) and before anything is created; False stops here with NotConfirmed.
    """
    report = Report()
    images.require()  # before anything is created: the training step and the image URIs need the SDK
    if confirm is not None and not confirm(preflight.credentials()):
        raise NotConfirmed("nothing deployed: not confirmed")
    checked = preflight.run(spec, log)
    report.account = checked.account
    facts = requests.Facts(account=checked.account)
    if spec.model_uri is None:
        manifest = stage(spec, log)
        facts.num_training_samples = sum(manifest["counts"]["train"].values())
        job, artifact = aws_training.train(spec, facts, report, poll_s, log)
        report.names["training_job"] = job
        source = job
    else:
        artifact, source = spec.model_uri, _source_name(spec.model_uri)
    facts.model_data = (
        artifact if spec.algorithm == "builtin" else package_for_serving(spec, artifact, source, report, log)
    )
    if spec.shadow_percent is not None or spec.rollout:
        facts.production_model = serving_model(spec.endpoint)  # refused here when nothing is deployed yet
    model = requests.model_request(spec, facts, images.retrieve)
    ensure_model(model, report, log)
    config = requests.endpoint_config_request(spec, model["ModelName"], facts.production_model)
    if spec.serverless:
        log("note: serverless endpoints do not capture data: `scones monitor` will have nothing to read")
    ensure_endpoint_config(config, report, log)
    if spec.rollout:
        ensure_alarms(spec, report, log)
        roll_out(spec, config["EndpointConfigName"], report, poll_s, log)
    else:
        ensure_endpoint(spec, config["EndpointConfigName"], report, poll_s, log)
    report.names.update(model=model["ModelName"], endpoint_config=config["EndpointConfigName"], endpoint=spec.endpoint)
    report.names["model_data"] = facts.model_data  # the serving copy under models/…: scones clean --purge-data's
    if not spec.serverless:
        ensure_scaling(spec, checked.account, report, log)
    ensure_stack(spec, report, log)
    aws_monitoring.ensure_monitoring(spec, checked.account, report, log)
    report.names.update(
        schedule=naming.schedule_name(spec),
        schedule_group=naming.schedule_group(spec),
        scheduler_role=naming.scheduler_role_name(spec),
    )
    _record(spec, report)
    return report
