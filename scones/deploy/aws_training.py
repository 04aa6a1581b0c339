"""The SageMaker training job of `scones deploy --target aws`, through the SDK v3's ModelTrainer.

A finished job with the same fingerprint (training code, data selection, settings) is reused; a running one
is followed to its end. The SDK (the `aws` extra) is imported here, lazily.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from scones.core import aws, settings
from scones.core.errors import SconesError
from scones.deploy import images, naming, requests
from scones.deploy.checks import Report
from scones.deploy.spec import Spec

FINISHED = ("Completed", "Failed", "Stopped")


def _training_jobs(base: str) -> list[dict]:
    sm = aws.client("sagemaker")
    found = sm.list_training_jobs(NameContains=base, SortBy="CreationTime", SortOrder="Descending", MaxResults=100)
    return found.get("TrainingJobSummaries", [])


def _listed_job(base: str, poll_s: float, tries: int = 20) -> str:
    """The newest job of `base` once ListTrainingJobs shows it (eventually consistent): a bounded wait. Only used
    where the sent request was not seen (an SDK that sends it through a client made before the hook)."""
    for _ in range(tries):
        found = _training_jobs(base)
        if found:
            return found[0]["TrainingJobName"]
        time.sleep(poll_s)
    raise SconesError(
        f"a training job {base}-… was created but ListTrainingJobs does not show it after {tries} tries",
        next_step="`scones deploy --target aws` again in a minute: it finds and follows the running job",
    )


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
            if "METRICS " in line or "error" in line.lower():
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


def model_trainer(spec: Spec, request: dict, local: bool = False):
    """The SDK's ModelTrainer for the planned request (lazy import: the `aws` extra); `local`: in Docker here.

    The request is ModelTrainer's own shape (requests.training_request); the channels it adds for SourceCode (the
    code and its drivers) are left to it, everything else is read back from the request.
    """
    images._sdk()
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig, SourceCode, StoppingCondition
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    session = Session(
        boto_session=boto3.session.Session(region_name=spec.region),
        default_bucket=spec.bucket,
        default_bucket_prefix=naming.staging_prefix(spec),
    )
    stopping, algorithm = request["StoppingCondition"], request["AlgorithmSpecification"]
    kwargs = {
        "training_image": algorithm["TrainingImage"],
        "compute": Compute(
            instance_type=request["ResourceConfig"]["InstanceType"],
            instance_count=request["ResourceConfig"]["InstanceCount"],
            volume_size_in_gb=request["ResourceConfig"]["VolumeSizeInGB"],
            enable_managed_spot_training=request["EnableManagedSpotTraining"],
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
            max_wait_time_in_seconds=stopping.get("MaxWaitTimeInSeconds"),
        ),
        "role": None if local else request["RoleArn"],  # local containers assume no role
        "training_mode": Mode.LOCAL_CONTAINER if local else Mode.SAGEMAKER_TRAINING_JOB,
        "sagemaker_session": session,
        "base_job_name": request["TrainingJobName"].removesuffix(f"-{naming.UNKNOWN_TIMESTAMP}"),
        "hyperparameters": request["HyperParameters"],
        "tags": [{"key": t["Key"], "value": t["Value"]} for t in request["Tags"]],
        "output_data_config": OutputDataConfig(
            s3_output_path=request["OutputDataConfig"]["S3OutputPath"],
            compression_type=request["OutputDataConfig"]["CompressionType"],
        ),
    }
    if "ContainerEntrypoint" in algorithm:  # script mode: the SDK uploads the code and runs it with its drivers
        kwargs["source_code"] = SourceCode(source_dir=str(requests.TRAINING_DIR), **requests.SOURCE_CODE)
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
    if "MetricDefinitions" in algorithm:
        from sagemaker.core.training.configs import MetricDefinition

        trainer = trainer.with_metric_definitions(
            [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in algorithm["MetricDefinitions"]]
        )
    sdk_channels = (requests.SDK_CODE_CHANNEL, requests.SDK_DRIVERS_CHANNEL)
    channels = [
        InputData(
            channel_name=c["ChannelName"],
            data_source=c["DataSource"]["S3DataSource"]["S3Uri"],
            **({"content_type": c["ContentType"]} if "ContentType" in c else {}),
        )
        for c in request["InputDataConfig"]
        if c["ChannelName"] not in sdk_channels
    ]
    return trainer, channels


@contextlib.contextmanager
def sent_request(trainer, answer_here: bool = False) -> Iterator[dict]:
    """The CreateTrainingJob parameters the trainer's client really sends (filled in when it sends them).

    A botocore hook on the trainer's own boto3 session records them as the client receives them. With
    `answer_here`, the call (and the DescribeTrainingJob that ModelTrainer makes after it) is answered here and
    nothing is created in any SageMaker: `scones train --mode container` then runs that job on this machine.
    """
    from botocore.awsrequest import AWSResponse

    sent: dict = {}
    events = trainer.sagemaker_session.boto_session.events

    def record(params, **_kwargs):
        sent.clear()
        sent.update(copy.deepcopy(params))

    def answer(model, **_kwargs):
        name = sent.get("TrainingJobName", "")
        region = trainer.sagemaker_session.boto_region_name
        arn = f"arn:aws:sagemaker:{region}:{naming.UNKNOWN_ACCOUNT}:training-job/{name}"
        if model.name == "CreateTrainingJob":
            return AWSResponse("local://", 200, {}, None), {"TrainingJobArn": arn}
        described = {**sent, "TrainingJobArn": arn, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"}
        return AWSResponse("local://", 200, {}, None), {**described, "CreationTime": datetime.now(UTC)}

    handlers = [("provide-client-params.sagemaker.CreateTrainingJob", record)]
    if answer_here:
        handlers += [(f"before-call.sagemaker.{op}", answer) for op in ("CreateTrainingJob", "DescribeTrainingJob")]
    for event, handler in handlers:
        events.register(event, handler)
    try:
        yield sent
    finally:
        for event, handler in handlers:
            events.unregister(event, handler)


def train(spec: Spec, facts: requests.Facts, report: Report, poll_s: float, log=print) -> tuple[str, str]:
    """(job name, model artifact URI): a finished job with the same fingerprint is reused, a running one awaited."""
    base = requests.training_base_name(spec)
    for job in _training_jobs(base):
        if job["TrainingJobStatus"] == "Completed":
            report.add("train", "reused", job["TrainingJobName"], log)
            return job["TrainingJobName"], wait_training(job["TrainingJobName"], poll_s, lambda _m: None)
        if job["TrainingJobStatus"] in ("InProgress", "Stopping"):
            report.add("train", "resumed", f"{job['TrainingJobName']} is running: waiting for it", log)
            return job["TrainingJobName"], wait_training(job["TrainingJobName"], poll_s, log)
    request = requests.training_request(spec, facts, images.retrieve)
    trainer, channels = model_trainer(spec, request)
    with sent_request(trainer) as sent:
        trainer.train(input_data_config=channels, wait=False, logs=False)
    # The name the SDK sent (it appends a timestamp to the base); ListTrainingJobs may not show the job yet.
    name = sent.get("TrainingJobName") or _listed_job(base, poll_s)
    report.add("train", "created", f"{name} on {spec.instance_type}{' (spot)' if spec.spot else ''}", log)
    try:
        return name, wait_training(name, poll_s, log)
    except KeyboardInterrupt:
        log(
            f"training job {name} keeps running on SageMaker (and billing): `scones deploy --target aws` "
            "resumes waiting for it, `scones clean --target aws` stops it"
        )
        raise
