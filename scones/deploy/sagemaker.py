"""`scones deploy --target aws`: run the plan (scones.deploy.plan) step by step, each idempotent and resumable.

A step looks first: what exists and matches is left alone ("unchanged"), a training job still running is
waited for, an endpoint on another configuration is updated. SageMaker models and endpoint configurations
are immutable, so their names carry a hash of their content and a change makes a new one. The training job
runs through the SageMaker Python SDK v3 (`sagemaker.train.ModelTrainer`, the `aws` extra, imported here
only); everything else is a plain boto3 call, exactly as the dry run prints it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from scones.core import aws, settings
from scones.core.errors import NotReadyError, SconesError
from scones.deploy import images, plan, preflight
from scones.deploy.package import ROOT

FINISHED = ("Completed", "Failed", "Stopped")
MONITOR_SOURCES = ("pyproject.toml", "README.md", "scones", "services", "training")


@dataclass
class Report:
    account: str = ""
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (step, action, detail)
    names: dict[str, str] = field(default_factory=dict)

    def add(self, step: str, action: str, detail: str, log=print) -> None:
        self.actions.append((step, action, detail))
        log(f"{step:<16} {action:<10} {detail}")

    @property
    def changed(self) -> list[tuple[str, str, str]]:
        return [a for a in self.actions if a[1] not in ("unchanged", "reused")]


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _contains(current: object, wanted: object) -> bool:
    """Does what the cloud describes hold everything we asked for? (It adds defaults of its own.)"""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(_contains(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and all(map(_contains, current, wanted))
    return current == wanted


def _missing(exc: Exception) -> bool:
    text = str(exc)
    return _code(exc) in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException", "404") and (
        "not found" in text.lower() or "could not find" in text.lower() or "does not exist" in text.lower()
    )


# --- stage and train ---------------------------------------------------------------------------------


def stage(spec: plan.Spec, log=print) -> dict:
    """`scones stage`, unchanged: build the local folder and send what differs. Returns the manifest."""
    from scones.data import staging

    source = staging.resolve_source(spec.source, list(spec.classes))
    workdir = staging.default_workdir(source, list(spec.classes))
    manifest = staging.build(source, list(spec.classes), workdir)
    result = staging.upload(workdir, manifest, spec.bucket, spec.prefix)
    log(
        f"{'stage':<16} {'unchanged' if not result.uploaded else 'uploaded':<10} "
        f"s3://{spec.bucket}/{spec.prefix}/ ({result.uploaded} sent, {result.unchanged} unchanged)"
    )
    return manifest


def _training_jobs(base: str) -> list[dict]:
    sm = aws.client("sagemaker")
    found = sm.list_training_jobs(NameContains=base, SortBy="CreationTime", SortOrder="Descending", MaxResults=100)
    return found.get("TrainingJobSummaries", [])


def _log_lines(job: str, seen: dict[str, str]) -> list[str]:
    """New lines of the job's CloudWatch log streams (none where there are no logs yet)."""
    from botocore.exceptions import ClientError

    logs, group, lines = aws.client("logs"), "/aws/sagemaker/TrainingJobs", []
    try:
        streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/").get("logStreams", [])
        for stream in streams:
            name = stream["logStreamName"]
            kwargs = {"nextToken": seen[name]} if name in seen else {"startFromHead": True}
            events = logs.get_log_events(logGroupName=group, logStreamName=name, **kwargs)
            seen[name] = events["nextForwardToken"]
            lines += [e["message"] for e in events.get("events", [])]
    except ClientError:
        return []
    return lines


def wait_training(job: str, poll_s: float, log=print) -> str:
    """Follow a job to its end: status transitions and its METRICS lines. Returns the model artifact URI."""
    sm, seen, last = aws.client("sagemaker"), {}, None
    while True:
        described = sm.describe_training_job(TrainingJobName=job)
        status = (described["TrainingJobStatus"], described.get("SecondaryStatus"))
        if status != last:
            log(f"  {job}: {status[0]} ({status[1]})")
            last = status
        for line in _log_lines(job, seen):
            if line.startswith("METRICS") or "error" in line.lower():
                log(f"  {line.strip()}")
        if status[0] in FINISHED:
            break
        time.sleep(poll_s)
    if status[0] != "Completed":
        raise SconesError(
            f"training job {job} {status[0].lower()}: {described.get('FailureReason', 'no reason given')}",
            next_step="read its log in CloudWatch (/aws/sagemaker/TrainingJobs), then `scones deploy --target aws`",
        )
    for metric in described.get("FinalMetricDataList", []):
        log(f"  final {metric['MetricName']} = {metric['Value']:.4g}")
    if described.get("BillableTimeInSeconds"):
        log(f"  billable: {described['BillableTimeInSeconds']} s on {described['ResourceConfig']['InstanceType']}")
    return described["ModelArtifacts"]["S3ModelArtifacts"]


def _model_trainer(spec: plan.Spec, request: dict):
    """The SDK's ModelTrainer for the planned request (lazy import: the `aws` extra)."""
    images._sdk()
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import Compute, InputData, SourceCode, StoppingCondition
    from sagemaker.train import ModelTrainer

    session = Session(
        boto_session=boto3.session.Session(region_name=spec.region),
        default_bucket=spec.bucket,
        default_bucket_prefix=f"deploy/{spec.stack}/training",
    )
    stopping = request["StoppingCondition"]
    kwargs = {
        "training_image": request["AlgorithmSpecification"]["TrainingImage"],
        "compute": Compute(
            instance_type=request["ResourceConfig"]["InstanceType"],
            instance_count=1,
            volume_size_in_gb=request["ResourceConfig"]["VolumeSizeInGB"],
            enable_managed_spot_training=request["EnableManagedSpotTraining"],
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
            max_wait_time_in_seconds=stopping.get("MaxWaitTimeInSeconds"),
        ),
        "role": request["RoleArn"],
        "sagemaker_session": session,
        "base_job_name": request["TrainingJobName"].removesuffix("-<timestamp>"),
        "hyperparameters": request["HyperParameters"],
        "tags": [{"key": t["Key"], "value": t["Value"]} for t in request["Tags"]],
    }
    from sagemaker.core.training.configs import OutputDataConfig

    kwargs["output_data_config"] = OutputDataConfig(s3_output_path=request["OutputDataConfig"]["S3OutputPath"])
    if "SourceCode" in request:
        code = request["SourceCode"]
        kwargs["source_code"] = SourceCode(
            source_dir=str(ROOT / code["SourceDir"]),
            entry_script=code["EntryScript"],
            requirements=code["Requirements"],
        )
    # The SDK re-checks the role with iam:SimulatePrincipalPolicy and fails where that API is absent or denied;
    # preflight has made the same checks (reporting an unverifiable one as a note), so the SDK's is skipped.
    saved = os.environ.get(settings.SDK_VALIDATE_ROLE)
    os.environ[settings.SDK_VALIDATE_ROLE] = "false"
    try:
        trainer = ModelTrainer(**kwargs)
    finally:
        if saved is None:
            os.environ.pop(settings.SDK_VALIDATE_ROLE, None)
        else:
            os.environ[settings.SDK_VALIDATE_ROLE] = saved
    if "MetricDefinitions" in request["AlgorithmSpecification"]:
        from sagemaker.core.training.configs import MetricDefinition

        trainer = trainer.with_metric_definitions(
            [
                MetricDefinition(name=m["Name"], regex=m["Regex"])
                for m in request["AlgorithmSpecification"]["MetricDefinitions"]
            ]
        )
    channels = [
        InputData(
            channel_name=c["ChannelName"],
            data_source=c["S3Uri"],
            **({"content_type": c["ContentType"]} if "ContentType" in c else {}),
        )
        for c in request["InputDataConfig"]
    ]
    return trainer, channels


def train(spec: plan.Spec, facts: plan.Facts, report: Report, poll_s: float, log=print) -> tuple[str, str]:
    """(job name, model artifact URI): a finished job with the same fingerprint is reused, a running one awaited."""
    base = plan.training_base_name(spec)
    for job in _training_jobs(base):
        if job["TrainingJobStatus"] == "Completed":
            report.add("train", "reused", job["TrainingJobName"], log)
            return job["TrainingJobName"], wait_training(job["TrainingJobName"], poll_s, lambda _m: None)
        if job["TrainingJobStatus"] in ("InProgress", "Stopping"):
            report.add("train", "resumed", f"{job['TrainingJobName']} is running: waiting for it", log)
            return job["TrainingJobName"], wait_training(job["TrainingJobName"], poll_s, log)
    request = plan.training_request(spec, facts, images.retrieve)
    trainer, channels = _model_trainer(spec, request)
    trainer.train(input_data_config=channels, wait=False, logs=False)
    name = _training_jobs(base)[0]["TrainingJobName"]  # the newest: ModelTrainer appends a timestamp to the base
    report.add("train", "created", f"{name} on {spec.instance_type}{' (spot)' if spec.spot else ''}", log)
    return name, wait_training(name, poll_s, log)


# --- serve -------------------------------------------------------------------------------------------


def _exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def package_for_serving(spec: plan.Spec, model_data: str, source: str, report: Report, log=print) -> str:
    """The trained artifact plus code/inference.py (the same file the local server runs), content-addressed."""
    from scones.models import add_serving_code

    s3 = aws.client("s3")
    key = plan.serving_key(source)
    if _exists(s3, spec.bucket, key):
        report.add("package", "unchanged", f"s3://{spec.bucket}/{key}", log)
        return f"s3://{spec.bucket}/{key}"
    src_bucket, src_key = model_data[5:].split("/", 1)
    if not _exists(s3, src_bucket, src_key):
        raise NotReadyError(
            f"the model artifact {model_data} is missing",
            next_step="check the training job's output, then `scones deploy --target aws` again",
        )
    with tempfile.TemporaryDirectory(prefix="scones-serving-") as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        body = s3.get_object(Bucket=src_bucket, Key=src_key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            tar.extractall(model_dir, filter="data")
        add_serving_code(model_dir)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(model_dir.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    s3.put_object(Bucket=spec.bucket, Key=key, Body=buffer.getvalue())
    report.add("package", "created", f"s3://{spec.bucket}/{key}", log)
    return f"s3://{spec.bucket}/{key}"


def ensure_model(request: dict, report: Report, log=print) -> None:
    sm = aws.client("sagemaker")
    try:
        sm.describe_model(ModelName=request["ModelName"])
        report.add("model", "unchanged", request["ModelName"], log)
    except sm.exceptions.ClientError as exc:
        if not _missing(exc):
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
        if not _missing(exc):
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


def ensure_endpoint(spec: plan.Spec, config_name: str, report: Report, poll_s: float, log=print) -> None:
    sm = aws.client("sagemaker")
    try:
        current = sm.describe_endpoint(EndpointName=spec.endpoint)
    except sm.exceptions.ClientError as exc:
        if not _missing(exc):
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


def _deregister_scaling(endpoint: str) -> None:
    scaling = aws.client("application-autoscaling")
    resource = plan.scaling_resource_id(endpoint)
    found = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    if found.get("ScalableTargets"):
        for policy in scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource).get(
            "ScalingPolicies", []
        ):
            scaling.delete_scaling_policy(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=plan.SCALABLE_DIMENSION,
                PolicyName=policy["PolicyName"],
            )
        scaling.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=plan.SCALABLE_DIMENSION
        )


def ensure_scaling(spec: plan.Spec, account: str, report: Report, log=print) -> None:
    scaling = aws.client("application-autoscaling")
    register, policy = plan.scaling_calls(spec, account)
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
    same = bool(policies) and _contains(policies[0].get("TargetTrackingScalingPolicyConfiguration"), config)
    if same:
        report.add("scaling", "unchanged", f"policy {policy.params['PolicyName']}", log)
    else:
        scaling.put_scaling_policy(**policy.params)
        report.add(
            "scaling",
            "updated" if policies else "created",
            f"policy {policy.params['PolicyName']}: {config['TargetValue']:g} {plan.SCALING_METRIC}",
            log,
        )


# --- the workflow stack and monitoring ---------------------------------------------------------------


def ensure_stack(spec: plan.Spec, report: Report, log=print) -> dict[str, str]:
    from scones.deploy import stack

    result = stack.deploy(plan.stack_parameters(spec), name=spec.stack, log=lambda _m: None, tags=spec.tags())
    report.add("stack", result.action, f"{spec.stack} ({result.uploaded} artifacts uploaded)", log)
    return result.outputs


def monitoring_source() -> tuple[str, bytes]:
    """The scones package as a reproducible tarball (the Processing job pip-installs it)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,  # no timestamp in the header: same bytes
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        paths = []
        for name in MONITOR_SOURCES:
            path = ROOT / name
            paths += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            info = tarfile.TarInfo(str(path.relative_to(ROOT)))
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return plan.digest(raw), raw


def ensure_monitoring(spec: plan.Spec, account: str, report: Report, log=print) -> None:
    s3, iam, scheduler = aws.client("s3"), aws.client("iam"), aws.client("scheduler")
    source_digest, body = monitoring_source()
    key = plan.monitoring_source_key(spec, source_digest)
    upload, role, policy, group, schedule = plan.monitoring_calls(spec, account, key, images.retrieve)
    if _exists(s3, spec.bucket, key):
        report.add("monitor", "unchanged", f"s3://{spec.bucket}/{key}", log)
    else:
        s3.put_object(**upload.params, Body=body)
        report.add("monitor", "created", f"s3://{spec.bucket}/{key}", log)
    name = role.params["RoleName"]
    try:
        role_arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        report.add("monitor", "unchanged", f"role {name}", log)
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(
            **{**role.params, "AssumeRolePolicyDocument": json.dumps(role.params["AssumeRolePolicyDocument"])}
        )["Role"]["Arn"]
        report.add("monitor", "created", f"role {name}", log)
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=policy.params["PolicyName"])["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        current = None
    if isinstance(current, str):
        current = json.loads(current)
    if current == policy.params["PolicyDocument"]:
        report.add("monitor", "unchanged", f"role policy {policy.params['PolicyName']}", log)
    else:
        iam.put_role_policy(**{**policy.params, "PolicyDocument": json.dumps(policy.params["PolicyDocument"])})
        report.add(
            "monitor", "created" if current is None else "updated", f"role policy {policy.params['PolicyName']}", log
        )
    try:
        scheduler.get_schedule_group(Name=group.params["Name"])
        report.add("monitor", "unchanged", f"schedule group {group.params['Name']}", log)
    except scheduler.exceptions.ResourceNotFoundException:
        scheduler.create_schedule_group(**group.params)
        report.add("monitor", "created", f"schedule group {group.params['Name']}", log)
    wanted = dict(schedule.params)
    wanted["Target"] = {
        **wanted["Target"],
        "RoleArn": role_arn,
        "Input": json.dumps(wanted["Target"]["Input"], sort_keys=True),
    }
    try:
        current = scheduler.get_schedule(Name=wanted["Name"], GroupName=wanted["GroupName"])
    except scheduler.exceptions.ResourceNotFoundException:
        current = None
    if current is None:
        scheduler.create_schedule(**wanted)
        report.add("monitor", "created", f"schedule {wanted['Name']} ({spec.monitor_schedule})", log)
    elif _contains(current, {**wanted, "Target": {k: v for k, v in wanted["Target"].items() if k != "Input"}}) and (
        json.loads(current["Target"].get("Input") or "null") == json.loads(wanted["Target"]["Input"])
    ):
        report.add("monitor", "unchanged", f"schedule {wanted['Name']} ({spec.monitor_schedule})", log)
    else:
        scheduler.update_schedule(**wanted)
        report.add("monitor", "updated", f"schedule {wanted['Name']} ({spec.monitor_schedule})", log)


# --- the whole chain ---------------------------------------------------------------------------------


def record_path(stack: str) -> Path:
    return settings.state_dir() / f"aws-{stack}.json"


def _record(spec: plan.Spec, report: Report) -> None:
    path = record_path(spec.stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"stack": spec.stack, "region": spec.region, "bucket": spec.bucket, **report.names}, indent=2)
    )


def _source_name(uri: str) -> str:
    match = re.search(r"models/([^/]+)/output/model\.tar\.gz$", uri)
    return match.group(1) if match else f"external-{plan.digest(uri)}"


def deploy(spec: plan.Spec, poll_s: float = 30.0, log=print) -> Report:
    """The whole chain; every step skips what exists and matches."""
    report = Report()
    checked = preflight.run(spec, log)
    report.account = checked.account
    facts = plan.Facts(account=checked.account)
    if spec.model_uri is None:
        manifest = stage(spec, log)
        facts.num_training_samples = sum(manifest["counts"]["train"].values())
        job, artifact = train(spec, facts, report, poll_s, log)
        report.names["training_job"] = job
        source = job
    else:
        artifact, source = spec.model_uri, _source_name(spec.model_uri)
    facts.job_name = source
    facts.model_data = (
        artifact if spec.algorithm == "builtin" else package_for_serving(spec, artifact, source, report, log)
    )
    model = plan.model_request(spec, facts, images.retrieve)
    ensure_model(model, report, log)
    config = plan.endpoint_config_request(spec, model["ModelName"])
    if spec.serverless:
        log("note: serverless endpoints do not capture data: `scones monitor` will have nothing to read")
    ensure_endpoint_config(config, report, log)
    ensure_endpoint(spec, config["EndpointConfigName"], report, poll_s, log)
    report.names.update(model=model["ModelName"], endpoint_config=config["EndpointConfigName"], endpoint=spec.endpoint)
    if not spec.serverless:
        ensure_scaling(spec, checked.account, report, log)
    ensure_stack(spec, report, log)
    ensure_monitoring(spec, checked.account, report, log)
    report.names.update(
        schedule=plan.schedule_name(spec),
        schedule_group=plan.schedule_group(spec),
        scheduler_role=plan.scheduler_role_name(spec),
    )
    _record(spec, report)
    return report
