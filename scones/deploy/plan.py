"""What `scones deploy --target aws` does, as data: every AWS call with its parameters, in order.

The same plan is printed by `--dry-run` and executed by `scones.deploy.sagemaker`, so what is shown is what
runs. Building it calls nothing: no credentials, no network. Names that depend on content carry a short
hash of that content (training code and settings, serving code, endpoint configuration), which is what
makes a re-run find what it made last time and change nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scones.core import settings
from scones.deploy import images
from scones.deploy.package import ROOT

TAG_PROJECT = ("project", "scones")
TAG_STACK = "scones:stack"
VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
SCHEDULER_TARGET = "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"
MONITOR_CODE = "/opt/ml/processing/input/code"  # the processing job's code input (run.sh + the scones tarball)
MONITOR_OUTPUT = "/opt/ml/processing/output"  # uploaded to monitor_out_uri when the job ends
MONITOR_SCRIPT = "run.sh"  # scones/monitoring/run.sh
MONITOR_TARBALL = "scones-src.tar.gz"
ALERT_TOPIC_PLACEHOLDER = "<the workflow stack's AlertTopicArn>"  # known once the stack is deployed
TRAINING_DIR = ROOT / "training"  # ModelTrainer's SourceCode.source_dir: every file in it is uploaded (training_files)
SOURCE_CODE = {"entry_script": "train.py", "requirements": "requirements.txt"}  # SourceCode's other fields
# SourceCode's default ignore_patterns, for dry runs without the SDK (a test holds it equal to the SDK's)
SDK_IGNORE_PATTERNS = (".env", ".git", "__pycache__", ".DS_Store", ".cache", ".ipynb_checkpoints")
SDK_CODE_CHANNEL, SDK_DRIVERS_CHANNEL = "code", "sm_drivers"  # the channels ModelTrainer adds for SourceCode
UNKNOWN_TIMESTAMP = "<timestamp>"  # ModelTrainer appends the time of the call to the base name
INFERENCE_FILE = ROOT / "services" / "endpoint" / "inference.py"
# train.py prints `METRICS epoch=3 train_loss=0.21 …` (or the same keys as JSON): one regex per metric.
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_s")
UNKNOWN_ACCOUNT = "<account-id>"
UNKNOWN_HASH = "<hash of the trained artifact>"
BUILTIN_HYPERPARAMETERS = {  # the course's built-in image-classification settings, for 32x32 CIFAR images
    "image_shape": "3,32,32",
    "num_layers": "18",
    "use_pretrained_model": "1",
    "epochs": "30",
    "mini_batch_size": "32",
    "learning_rate": "0.001",
    "optimizer": "sgd",
}


@dataclass(frozen=True)
class Spec:
    """Everything a user can choose about the AWS deployment (the CLI fills it from flags and settings)."""

    stack: str = "scones-workflow"
    bucket: str = "scones-unlimited"
    prefix: str = "data"
    endpoint: str = "scones-endpoint"
    region: str = "us-east-1"
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
    classes: tuple[str, ...] = ("bicycle", "motorcycle")
    epochs: int | None = None
    hyperparameters: tuple[tuple[str, str], ...] = ()
    model_uri: str | None = None  # deploy this model.tar.gz instead of training one
    capture_prefix: str = "datacapture"
    threshold: float = 0.93
    alert_email: str = ""
    monitor_instance_type: str = "ml.m5.large"
    monitor_schedule: str = "rate(1 hour)"

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


@dataclass
class Call:
    """One AWS API call: boto3's service and method names and the exact keyword arguments."""

    service: str
    operation: str
    params: dict
    note: str = ""


@dataclass
class Step:
    key: str  # preflight | stage | train | package | model | endpoint-config | endpoint | scaling | stack | monitor
    title: str
    calls: list[Call] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Facts:
    """What only the cloud knows; placeholders in a dry run."""

    account: str = UNKNOWN_ACCOUNT
    model_data: str | None = None  # the artifact the model serves
    num_training_samples: int | None = None  # builtin: lines of train.lst
    outliers: bool = True  # the staged prefix holds the training outliers (deploy always stages them)


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


# --- training ----------------------------------------------------------------------------------------


def training_hyperparameters(spec: Spec, num_training_samples: int | None) -> dict[str, str]:
    if spec.algorithm == "builtin":
        hps = dict(BUILTIN_HYPERPARAMETERS)
        hps["num_classes"] = str(len(spec.classes))
        hps["num_training_samples"] = (
            str(num_training_samples) if num_training_samples else "<lines of train.lst, read after staging>"
        )
        if spec.epochs is not None:
            hps["epochs"] = str(spec.epochs)
        hps.update(dict(spec.hyperparameters))  # the built-in algorithm's own names, underscored
        return hps
    hps = {"classes": ",".join(spec.classes)}
    if spec.epochs is not None:
        hps["epochs"] = str(spec.epochs)
    # The SDK's basic script driver passes each as `--<name> <value>`, name verbatim, and train.py's options are
    # dashed (`--oe-weight`): `oe_weight` would reach it as an unknown option, which it ignores.
    hps.update({name.replace("_", "-"): value for name, value in spec.hyperparameters})
    return hps


def sdk_ignore_patterns() -> list[str]:
    """What SourceCode leaves out of the code channel: the SDK's own default (its copy when the SDK is absent)."""
    try:
        from sagemaker.core.training.configs import SourceCode
    except ImportError:
        return list(SDK_IGNORE_PATTERNS)
    return list(SourceCode.model_fields["ignore_patterns"].default)


def training_files(source_dir: Path = TRAINING_DIR) -> list[Path]:
    """Every file ModelTrainer uploads as the `code` channel: the source dir copied with the SDK's own filter
    (`shutil.copytree(..., ignore=shutil.ignore_patterns(*SourceCode.ignore_patterns))`), relative paths."""
    ignore = shutil.ignore_patterns(*sdk_ignore_patterns())
    found: list[Path] = []

    def walk(folder: Path) -> None:
        names = sorted(p.name for p in folder.iterdir())
        for name in sorted(set(names) - ignore(str(folder), names)):
            path = folder / name
            if path.is_dir():
                walk(path)
            else:
                found.append(path.relative_to(source_dir))

    walk(source_dir)
    return found


def training_fingerprint(spec: Spec, source_dir: Path = TRAINING_DIR) -> str:
    """Same code, data selection and settings → same fingerprint → the finished job is reused. The code is every
    file the job uploads (names and bytes), so a change to any of them makes a new job."""
    code = []
    if spec.algorithm == "script":
        for name in training_files(source_dir):
            code += [str(name), (source_dir / name).read_bytes()]
    chosen = [
        spec.algorithm,
        spec.instance_type,
        spec.spot,
        spec.max_run_s,
        spec.max_wait,
        spec.source,
        list(spec.classes),
        spec.bucket,
        spec.prefix,
        training_hyperparameters(spec, None),
    ]
    return digest(*code, chosen)


def training_base_name(spec: Spec) -> str:
    return f"{spec.name_prefix}-train-{training_fingerprint(spec)}"


def data_channels(spec: Spec, outliers: bool = True) -> list[dict[str, str]]:
    """The staged data each channel reads (name, S3 prefix, content type): what `scones train` downloads. The
    script's job also gets the training outliers (staged by `scones stage` and by deploy) for outlier exposure."""
    from scones.data.staging import OUTLIER_SPLITS

    data = f"s3://{spec.bucket}/{spec.prefix}"
    if spec.algorithm == "builtin":
        kind = "application/x-image"
        return [
            {"ChannelName": "train", "S3Uri": f"{data}/train/", "ContentType": kind},
            {"ChannelName": "validation", "S3Uri": f"{data}/test/", "ContentType": kind},
            {"ChannelName": "train_lst", "S3Uri": f"{data}/train.lst", "ContentType": kind},
            {"ChannelName": "validation_lst", "S3Uri": f"{data}/test.lst", "ContentType": kind},
        ]
    splits = ("train", "test", OUTLIER_SPLITS["train"]) if outliers else ("train", "test")
    images = [{"ChannelName": split, "S3Uri": f"{data}/{split}/"} for split in splits]
    lists = [{"ChannelName": f"{split}_lst", "S3Uri": f"{data}/{split}.lst"} for split in splits]
    return images + lists


def channel(name: str, s3_uri: str, content_type: str | None = None) -> dict:
    """One InputDataConfig entry as ModelTrainer sends it for an S3 URI."""
    entry: dict = {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s3_uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "InputMode": "File",
    }
    if content_type:
        entry["ContentType"] = content_type
    return entry


def staging_prefix(spec: Spec) -> str:
    """Where ModelTrainer uploads the code and its drivers (the SDK session's default bucket and prefix)."""
    return f"{settings.DEPLOY_PREFIX}/{spec.stack}/training"


def sdk_container_command() -> tuple[list[str], list[str]]:
    """ContainerEntrypoint and ContainerArguments ModelTrainer sets for SourceCode: its drivers' sm_train.sh."""
    try:
        from sagemaker.core.training import constants
    except ImportError:
        unknown = "<the SDK's sm_train.sh command: needs the aws extra>"
        return [unknown], [unknown]
    return list(constants.DEFAULT_CONTAINER_ENTRYPOINT), list(constants.DEFAULT_CONTAINER_ARGUMENTS)


def metric_definitions() -> list[dict[str, str]]:
    return [{"Name": name, "Regex": rf"METRICS.*?\b{name}\"?\s*[=:]\s*([-+0-9.eE]+)"} for name in METRICS]


def training_request(spec: Spec, facts: Facts, image: Callable[..., str]) -> dict:
    """CreateTrainingJob exactly as sagemaker.train.ModelTrainer sends it (aws_training.py builds the trainer
    from this); only the job's timestamp, and so its code and driver URIs, are known after the call."""
    stopping = {"MaxRuntimeInSeconds": spec.max_run_s}
    if spec.spot:
        stopping["MaxWaitTimeInSeconds"] = spec.max_wait
    algorithm: dict = {
        "TrainingInputMode": "File",
        "TrainingImage": image(
            "builtin" if spec.algorithm == "builtin" else "training", spec.region, spec.instance_type
        ),
    }
    base = training_base_name(spec)
    job = f"{base}-{UNKNOWN_TIMESTAMP}"
    inputs = [channel(c["ChannelName"], c["S3Uri"], c.get("ContentType")) for c in data_channels(spec, facts.outliers)]
    if spec.algorithm == "script":
        algorithm["MetricDefinitions"] = metric_definitions()
        algorithm["ContainerEntrypoint"], algorithm["ContainerArguments"] = sdk_container_command()
        uploaded = f"s3://{spec.bucket}/{staging_prefix(spec)}/{base}/{job}/input"
        inputs += [channel(name, f"{uploaded}/{name}") for name in (SDK_CODE_CHANNEL, SDK_DRIVERS_CHANNEL)]
    return {
        "TrainingJobName": job,
        "HyperParameters": training_hyperparameters(spec, facts.num_training_samples),
        "AlgorithmSpecification": algorithm,
        "RoleArn": role_arn(spec, facts.account),
        "InputDataConfig": inputs,
        "OutputDataConfig": {"S3OutputPath": f"s3://{spec.bucket}/models", "CompressionType": "GZIP"},
        "ResourceConfig": {"InstanceType": spec.instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": stopping,
        "Tags": spec.tags(),
        "EnableManagedSpotTraining": spec.spot,
    }


# --- serving -----------------------------------------------------------------------------------------


def serving_key(job_or_model: str) -> str:
    """Where the artifact with code/inference.py is uploaded (content-addressed by the serving code)."""
    return f"models/{job_or_model}/serving/model-{digest(INFERENCE_FILE.read_bytes())}.tar.gz"


def serving_environment(region: str) -> dict[str, str]:
    """The PyTorch inference container's environment (`scones endpoint serve --runtime sagemaker` uses it too)."""
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
    }


def model_request(spec: Spec, facts: Facts, image: Callable[..., str]) -> dict:
    if spec.algorithm == "builtin":
        container = {"Image": image("builtin", spec.region, spec.endpoint_instance_type)}
        model_data = facts.model_data or f"s3://{spec.bucket}/models/<training job>/output/model.tar.gz"
        serving_code = ""
    else:
        container = {
            "Image": image("inference", spec.region, spec.endpoint_instance_type),
            "Environment": serving_environment(spec.region),
        }
        model_data = facts.model_data or f"s3://{spec.bucket}/{serving_key('<training job>')}"
        serving_code = INFERENCE_FILE.read_bytes()
    container["ModelDataUrl"] = model_data
    # Models are immutable: the name hashes everything the model is, so a new artifact makes a new model.
    # Before training (a dry run) the artifact is unknown, and so is the hash.
    known = facts.model_data is not None
    content = digest(model_data, spec.algorithm, container["Image"], serving_code) if known else UNKNOWN_HASH
    name = f"{spec.name_prefix}-model-{content}"
    return {
        "ModelName": name,
        "PrimaryContainer": container,
        "ExecutionRoleArn": role_arn(spec, facts.account),
        "Tags": spec.tags(),
    }


def endpoint_config_request(spec: Spec, model_name: str) -> dict:
    variant: dict = {"VariantName": VARIANT, "ModelName": model_name}
    request: dict = {"ProductionVariants": [variant]}
    if spec.serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": spec.serverless_memory_mb,
            "MaxConcurrency": spec.serverless_max_concurrency,
        }
    else:
        variant.update({"InstanceType": spec.endpoint_instance_type, "InitialInstanceCount": 1})
        request["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{spec.bucket}/{spec.capture_prefix}",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }
    name = f"{spec.name_prefix}-config-{UNKNOWN_HASH if UNKNOWN_HASH in model_name else digest(request)}"
    return {"EndpointConfigName": name, **request, "Tags": spec.tags()}


def scaling_resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def scaling_policy_name(endpoint: str) -> str:
    return f"{endpoint}-invocations-per-instance"


def scaling_calls(spec: Spec, account: str) -> list[Call]:
    resource = scaling_resource_id(spec.endpoint)
    base = {"ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION}
    return [
        Call(
            "application-autoscaling",
            "register_scalable_target",
            {
                **base,
                "MinCapacity": 1,
                "MaxCapacity": spec.max_instances,
                "Tags": {t["Key"]: t["Value"] for t in spec.tags()},
            },
        ),
        Call(
            "application-autoscaling",
            "put_scaling_policy",
            {
                **base,
                "PolicyName": scaling_policy_name(spec.endpoint),
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": float(spec.invocations_per_instance),
                    "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
            },
        ),
    ]


# --- the workflow stack and monitoring ---------------------------------------------------------------


def stack_parameters(spec: Spec) -> dict[str, str]:
    return {
        "NamePrefix": spec.name_prefix,
        "CodeBucket": spec.bucket,
        "DataBucket": spec.bucket,
        "EndpointName": spec.endpoint,
        "Labels": ",".join(spec.classes),
        "Threshold": str(spec.threshold),
        "SageMakerRuntimeUrl": "",
        "AlertEmail": spec.alert_email,
    }


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
    return f"s3://{spec.bucket}/monitoring/{spec.endpoint}"


def monitoring_environment(spec: Spec) -> dict[str, str]:
    """What `python -m scones.monitoring` reads in the job (settings.py's names): which bucket, endpoint, stack."""
    return {
        settings.TARGET: "aws",
        settings.AWS_REGION: spec.region,
        settings.BUCKET: spec.bucket,
        settings.PREFIX: spec.prefix,
        settings.SCONES_ENDPOINT_NAME: spec.endpoint,
        settings.STACK_NAME: spec.stack,
        settings.CAPTURE_BUCKET: spec.bucket,
        settings.CAPTURE_PREFIX: spec.capture_prefix,
        settings.THRESHOLD: str(spec.threshold),
    }


def processing_job_request(spec: Spec, account: str, source_key: str, image: Callable[..., str]) -> dict:
    """CreateProcessingJob as the schedule sends it; the job name gets the scheduler's execution id.

    The container runs `sh run.sh --out <dated folder> --threshold <deployed> --alert`: run.sh (downloaded
    beside the source tarball) installs scones with its pinned job requirements and runs
    `python -m scones.monitoring`; SageMaker uploads /opt/ml/processing/output to monitor_out_uri at the end.
    """
    source_prefix = source_key.rsplit("/", 1)[0] + "/"
    return {
        "ProcessingJobName": f"{monitor_job_prefix(spec)}-<aws.scheduler.execution-id>",
        "RoleArn": role_arn(spec, account),
        "AppSpecification": {
            "ImageUri": image("processing", spec.region, spec.monitor_instance_type),
            "ContainerEntrypoint": ["/bin/sh", f"{MONITOR_CODE}/{MONITOR_SCRIPT}"],
            # Model Monitor's own layout: one folder per hourly run under the output prefix (strftime codes).
            # The deployed threshold is passed, not looked up: the SageMaker role may not describe the stack.
            "ContainerArguments": [
                *("--out", f"{MONITOR_OUTPUT}/%Y/%m/%d/%H"),
                *("--threshold", str(spec.threshold)),
                "--alert",
            ],
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{spec.bucket}/{source_prefix}",
                    "LocalPath": MONITOR_CODE,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "report",
                    "S3Output": {
                        "S3Uri": monitor_out_uri(spec),
                        "LocalPath": MONITOR_OUTPUT,
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": spec.monitor_instance_type, "VolumeSizeInGB": 10}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
        "Environment": monitoring_environment(spec),
        "Tags": spec.tags(),
    }


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


def monitor_dlq_alarm(spec: Spec, topic_arn: str) -> dict:
    """Anything in the dead-letter queue is an hour without monitoring: tell the alert topic."""
    return {
        "AlarmName": monitor_alarm_name(spec),
        "AlarmDescription": f"the hourly monitoring job of {spec.endpoint} could not be started (see the DLQ)",
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": monitor_dlq_name(spec)}],
        "Statistic": "Maximum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [topic_arn],
        "Tags": spec.tags(),
    }


def monitoring_calls(
    spec: Spec, account: str, source_key: str, image: Callable[..., str], topic_arn: str = ALERT_TOPIC_PLACEHOLDER
) -> list[Call]:
    role = f"arn:aws:iam::{account}:role/{scheduler_role_name(spec)}"
    job = processing_job_request(spec, account, source_key, image)
    script_key = source_key.rsplit("/", 1)[0] + "/" + MONITOR_SCRIPT
    return [
        Call("s3", "put_object", {"Bucket": spec.bucket, "Key": source_key}, "the scones source, for the job"),
        Call("s3", "put_object", {"Bucket": spec.bucket, "Key": script_key}, "the job's command (scones/monitoring)"),
        Call(
            "sqs",
            "create_queue",
            {
                "QueueName": monitor_dlq_name(spec),
                "Attributes": {"MessageRetentionPeriod": str(14 * 24 * 3600), "SqsManagedSseEnabled": "true"},
                "tags": dict(t.values() for t in spec.tags()),
            },
            "the schedule's dead-letter queue",
        ),
        Call("cloudwatch", "put_metric_alarm", monitor_dlq_alarm(spec, topic_arn), "a dead letter alerts the topic"),
        Call(
            "iam",
            "create_role",
            {
                "RoleName": scheduler_role_name(spec),
                "AssumeRolePolicyDocument": scheduler_trust_policy(),
                "Tags": spec.tags(),
            },
            "assumed by EventBridge Scheduler",
        ),
        Call(
            "iam",
            "put_role_policy",
            {
                "RoleName": scheduler_role_name(spec),
                "PolicyName": "start-monitoring-jobs",
                "PolicyDocument": scheduler_role_policy(spec, account),
            },
        ),
        Call("scheduler", "create_schedule_group", {"Name": schedule_group(spec), "Tags": spec.tags()}),
        Call(
            "scheduler",
            "create_schedule",
            {
                "Name": schedule_name(spec),
                "GroupName": schedule_group(spec),
                "ScheduleExpression": spec.monitor_schedule,
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED",
                "Target": {
                    "Arn": SCHEDULER_TARGET,
                    "RoleArn": role,
                    "Input": job,
                    # a throttled or refused start is retried for up to an hour, then lands in the DLQ
                    "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
                    "DeadLetterConfig": {"Arn": monitor_dlq_arn(spec, account)},
                },
            },
            "starts `python -m scones.monitoring` as a SageMaker Processing job",
        ),
    ]


def bucket_calls(spec: Spec) -> list[Call]:
    """A bucket of the project's own: private, encrypted at rest, tagged."""
    return [
        Call("s3", "create_bucket", {"Bucket": spec.bucket}, "only if absent"),
        Call(
            "s3",
            "put_public_access_block",
            {
                "Bucket": spec.bucket,
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            },
            "only if created",
        ),
        Call(
            "s3",
            "put_bucket_encryption",
            {
                "Bucket": spec.bucket,
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            },
            "only if created",
        ),
        Call(
            "s3",
            "put_bucket_tagging",
            {"Bucket": spec.bucket, "Tagging": {"TagSet": spec.tags()}},
            "only if created",
        ),
    ]


# --- the whole plan ----------------------------------------------------------------------------------


def build(spec: Spec, facts: Facts | None = None, image: Callable[..., str] | None = None) -> list[Step]:
    facts = facts or Facts(account=account_of(spec))
    image = image or images.retrieve
    account = facts.account
    steps: list[Step] = []

    pre = Step("preflight", "preflight: credentials, region, role, bucket, quota")
    pre.calls = [
        Call("sts", "get_caller_identity", {}),
        Call(
            "iam", "get_role", {"RoleName": role_arn(spec, account).rsplit("/", 1)[-1]}, "exists, trusted by sagemaker"
        ),
        Call(
            "iam",
            "simulate_principal_policy",
            {
                "PolicySourceArn": role_arn(spec, account),
                "ActionNames": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                "ResourceArns": [f"arn:aws:s3:::{spec.bucket}", f"arn:aws:s3:::{spec.bucket}/*"],
            },
            "the role can read and write the bucket",
        ),
        Call("service-quotas", "list_service_quotas", {"ServiceCode": "sagemaker"}, f"{spec.instance_type} quota"),
        Call("s3", "head_bucket", {"Bucket": spec.bucket}),
        *bucket_calls(spec),
    ]
    steps.append(pre)

    if spec.model_uri is None:
        steps.append(
            Step(
                "stage",
                f"stage: `scones stage --source {spec.source} --classes {','.join(spec.classes)}`",
                [Call("s3", "put_object", {"Bucket": spec.bucket, "Key": f"{spec.prefix}/…"}, "only changed files")],
            )
        )
        what = (
            "built-in image-classification" if spec.algorithm == "builtin" else "training/train.py, PyTorch container"
        )
        train = Step("train", f"training job ({what})")
        train.calls = [
            Call("sagemaker", "list_training_jobs", {"NameContains": training_base_name(spec)}, "reuse a finished one"),
            Call(
                "sagemaker",
                "create_training_job",
                training_request(spec, facts, image),
                "through sagemaker.train.ModelTrainer; then waits, streaming status and METRICS",
            ),
        ]
        if spec.spot:
            train.notes.append(f"spot: MaxWaitTimeInSeconds {spec.max_wait} >= MaxRuntimeInSeconds {spec.max_run_s}")
        steps.append(train)
    model = model_request(spec, facts, image)
    if spec.algorithm == "script":
        steps.append(
            Step(
                "package",
                "serving artifact: model.tar.gz + code/inference.py (the file the local server runs)",
                [
                    Call(
                        "s3",
                        "put_object",
                        {"Bucket": spec.bucket, "Key": model["PrimaryContainer"]["ModelDataUrl"].split("/", 3)[3]},
                    )
                ],
            )
        )
    steps.append(Step("model", "model", [Call("sagemaker", "create_model", model, "only if absent")]))
    config = endpoint_config_request(spec, model["ModelName"])
    cfg = Step("endpoint-config", "endpoint configuration", [Call("sagemaker", "create_endpoint_config", config)])
    if spec.serverless:
        cfg.notes.append("serverless endpoints do not capture data: `scones monitor` will have nothing to read")
    else:
        cfg.notes.append(f"data capture: 100 % of requests, Input and Output, to {capture_uri(spec)}/")
    steps.append(cfg)
    steps.append(
        Step(
            "endpoint",
            "endpoint (bills per hour until `scones clean --target aws`)",
            [
                Call(
                    "sagemaker",
                    "create_endpoint",
                    {
                        "EndpointName": spec.endpoint,
                        "EndpointConfigName": config["EndpointConfigName"],
                        "Tags": spec.tags(),
                    },
                    "update_endpoint when it exists with another config; waits until InService",
                )
            ],
        )
    )
    if not spec.serverless:
        steps.append(Step("scaling", "autoscaling", scaling_calls(spec, account)))
    steps.append(
        Step(
            "stack",
            f"workflow stack {spec.stack} (template.yaml: 3 Lambdas, 2 state machines, SNS alerts)",
            [
                Call(
                    "cloudformation",
                    "create_stack",
                    {
                        "StackName": spec.stack,
                        "TemplateBody": "<template.yaml>",
                        "Parameters": stack_parameters(spec),
                        "Capabilities": ["CAPABILITY_NAMED_IAM"],
                        "Tags": spec.tags(),
                    },
                    "update_stack when it differs; Lambda zips and definitions go to s3 first",
                )
            ],
        )
    )
    source_key = monitoring_source_key(spec, "<hash>")
    mon = Step("monitor", "monitoring: hourly `python -m scones.monitoring` as a Processing job")
    mon.calls = monitoring_calls(spec, account, source_key, image)
    if spec.serverless:
        mon.notes.append("serverless: no captured data, so the hourly job will report nothing to read")
    steps.append(mon)
    return steps


# --- printing ----------------------------------------------------------------------------------------


def _flatten(value: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            return [(path, "{}")]
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            out += _flatten(item, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and set(v) == {"Key", "Value"} for v in value):
            return [(path, ", ".join(f"{v['Key']}={v['Value']}" for v in value))]
        out = []
        for i, item in enumerate(value):
            out += _flatten(item, f"{path}[{i}]")
        return out or [(path, "[]")]
    return [(path, json.dumps(value) if not isinstance(value, str) else value)]


def render(steps: list[Step], spec: Spec, account: str) -> str:
    lines = [
        f"scones deploy --target aws --dry-run: the calls it would make (nothing is called now); "
        f"account {account}, region {spec.region}",
        f"tags on everything: {TAG_PROJECT[0]}={TAG_PROJECT[1]}, {TAG_STACK}={spec.stack}",
    ]
    for number, step in enumerate(steps, 1):
        lines.append("")
        lines.append(f"{number}. {step.title}")
        for call in step.calls:
            lines.append(f"   {call.service}.{call.operation}" + (f"   # {call.note}" if call.note else ""))
            for key, value in _flatten(call.params) if call.params else []:
                if "Tags" in key.replace("[", ".").split("."):
                    continue  # the same on every call: shown once above
                lines.append(f"       {key} = {value}")
        for note in step.notes:
            lines.append(f"   note: {note}")
    return "\n".join(lines) + "\n"
