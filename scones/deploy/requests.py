"""Every AWS call `scones deploy --target aws` makes, with its parameters, in the order the chain runs.

These builders are the one source of the requests: the dry run prints them (scones.deploy.plan,
scones.deploy.render) and the real chain sends them (scones.deploy.sagemaker). Building a request calls nothing:
no credentials, no network; what only the cloud knows (Facts) is a placeholder until it is known.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones import rollout
from scones.core import settings
from scones.core.settings import ROOT
from scones.data.staging import OUTLIER_SPLITS
from scones.deploy.naming import (
    ALERT_TOPIC_PLACEHOLDER,
    INFERENCE_FILE,
    MONITOR_CODE,
    MONITOR_OUTPUT,
    MONITOR_SCRIPT,
    SCALABLE_DIMENSION,
    SCALING_METRIC,
    SCHEDULER_TARGET,
    UNKNOWN_ACCOUNT,
    UNKNOWN_HASH,
    UNKNOWN_PRODUCTION_MODEL,
    UNKNOWN_TIMESTAMP,
    VARIANT,
    digest,
    monitor_alarm_name,
    monitor_dlq_arn,
    monitor_dlq_name,
    monitor_job_prefix,
    monitor_out_uri,
    role_arn,
    scaling_policy_name,
    scaling_resource_id,
    schedule_group,
    schedule_name,
    scheduler_role_name,
    scheduler_role_policy,
    scheduler_trust_policy,
    serving_key,
    staging_prefix,
)
from scones.deploy.spec import Spec
from services.endpoint.variants import SHADOW

TRAINING_DIR = ROOT / "training"  # ModelTrainer's SourceCode.source_dir: every file in it is uploaded (training_files)
SOURCE_CODE = {"entry_script": "train.py", "requirements": "requirements.txt"}  # SourceCode's other fields
# SourceCode's default ignore_patterns, for dry runs without the SDK (a test holds it equal to the SDK's)
SDK_IGNORE_PATTERNS = (".env", ".git", "__pycache__", ".DS_Store", ".cache", ".ipynb_checkpoints")
SDK_CODE_CHANNEL, SDK_DRIVERS_CHANNEL = "code", "sm_drivers"  # the channels ModelTrainer adds for SourceCode
# train.py prints `METRICS epoch=3 train_loss=0.21 …` (or the same keys as JSON): one regex per metric.
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_s")
BUILTIN_HYPERPARAMETERS = {  # the course's built-in image-classification settings, for 32x32 CIFAR images
    "image_shape": "3,32,32",
    "num_layers": "18",
    "use_pretrained_model": "1",
    "epochs": "30",
    "mini_batch_size": "32",
    "learning_rate": "0.001",
    "optimizer": "sgd",
}


@dataclass
class Call:
    """One AWS API call: boto3's service and method names and the exact keyword arguments."""

    service: str
    operation: str
    params: dict
    note: str = ""


@dataclass
class Facts:
    """What only the cloud knows; placeholders in a dry run."""

    account: str = UNKNOWN_ACCOUNT
    model_data: str | None = None  # the artifact the model serves
    num_training_samples: int | None = None  # builtin: lines of train.lst
    outliers: bool = True  # the staged prefix holds the training outliers (deploy always stages them)
    production_model: str = UNKNOWN_PRODUCTION_MODEL  # --shadow: the model the endpoint serves now, kept


# --- preflight: credentials, role, bucket ------------------------------------------------------------


def preflight_calls(spec: Spec, account: str) -> list[Call]:
    """What preflight reads before anything is made (scones.deploy.preflight), then the bucket it makes."""
    return [
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


# --- stage and train ---------------------------------------------------------------------------------


def stage_calls(spec: Spec) -> list[Call]:
    return [Call("s3", "put_object", {"Bucket": spec.bucket, "Key": f"{spec.prefix}/…"}, "only changed files")]


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


def training_calls(spec: Spec, facts: Facts, image: Callable[..., str]) -> list[Call]:
    return [
        Call("sagemaker", "list_training_jobs", {"NameContains": training_base_name(spec)}, "reuse a finished one"),
        Call(
            "sagemaker",
            "create_training_job",
            training_request(spec, facts, image),
            "through sagemaker.train.ModelTrainer; then waits, streaming status and METRICS",
        ),
    ]


# --- serving: package, model, endpoint configuration, endpoint, scaling ------------------------------


def serving_environment(region: str) -> dict[str, str]:
    """The PyTorch inference container's environment (`scones endpoint serve --runtime sagemaker` uses it too)."""
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
    }


def package_calls(spec: Spec, model: dict) -> list[Call]:
    """The serving artifact (the trained one + code/inference.py) goes where the model request reads it."""
    return [
        Call(
            "s3",
            "put_object",
            {"Bucket": spec.bucket, "Key": model["PrimaryContainer"]["ModelDataUrl"].split("/", 3)[3]},
        )
    ]


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


def endpoint_config_request(spec: Spec, model_name: str, production_model: str = UNKNOWN_PRODUCTION_MODEL) -> dict:
    """One production variant serving `model_name`; with --shadow, production keeps `production_model` and
    `model_name` is the shadow variant, sent spec.shadow_percent % of requests (its weight over production's 1)."""
    variant: dict = {"VariantName": VARIANT, "ModelName": model_name}
    request: dict = {"ProductionVariants": [variant]}
    if spec.shadow_percent is not None:
        shadow = {
            "VariantName": SHADOW,
            "ModelName": model_name,
            "InitialVariantWeight": spec.shadow_percent / 100,
            "InstanceType": spec.endpoint_instance_type,
            "InitialInstanceCount": 1,
        }
        variant.update(ModelName=production_model, InitialVariantWeight=1.0)
        request["ShadowProductionVariants"] = [shadow]
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
    unknown = UNKNOWN_HASH in model_name or UNKNOWN_PRODUCTION_MODEL in str(request)
    name = f"{spec.name_prefix}-config-{UNKNOWN_HASH if unknown else digest(request)}"
    return {"EndpointConfigName": name, **request, "Tags": spec.tags()}


def endpoint_request(spec: Spec, config_name: str) -> dict:
    return {"EndpointName": spec.endpoint, "EndpointConfigName": config_name, "Tags": spec.tags()}


# --- a rollout: UpdateEndpoint's blue/green traffic shifting, rolled back on alarms (docs/safe-updates.md) ----


def rollout_alarms(spec: Spec) -> list[dict]:
    """PutMetricAlarm requests for the variant's Invocation5XXErrors and ModelLatency p95 (scones.rollout's, on
    AWS's variant: during a blue/green update both fleets answer as it); none when --alarm names the alarms.
    Not the low-confidence and drift alarms: on AWS nothing puts their metrics (docs/safe-updates.md)."""
    if spec.rollout_alarms:
        return []
    made = rollout.default_alarms(spec.endpoint, VARIANT, answers=False)
    return [{**request, "Tags": spec.tags()} for request in made]


def alarm_calls(spec: Spec) -> list[Call]:
    """Before the update: the alarms made, or those named checked to exist (a rollout without them is refused)."""
    if spec.rollout_alarms:
        names = list(spec.rollout_alarms)
        return [Call("cloudwatch", "describe_alarms", {"AlarmNames": names}, "each must exist, else nothing moves")]
    return [Call("cloudwatch", "put_metric_alarm", request) for request in rollout_alarms(spec)]


def update_endpoint_request(spec: Spec, config_name: str) -> dict:
    """UpdateEndpoint with the rollout's DeploymentConfig: BlueGreenUpdatePolicy (CANARY or LINEAR traffic
    routing) and AutoRollbackConfiguration naming the alarms."""
    plan = rollout.parse(spec.rollout)
    names = list(spec.rollout_alarms) or [a["AlarmName"] for a in rollout_alarms(spec)]
    return {
        "EndpointName": spec.endpoint,
        "EndpointConfigName": config_name,
        "DeploymentConfig": rollout.deployment_config(plan, names),
    }


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


def stack_parameters(spec: Spec, runtime_url: str = "", backfill: bool = True) -> dict[str, str]:
    """template.yaml's parameters, on every target: locally the classify Lambda is told where our model server
    listens (runtime_url); on AWS that is empty and the SageMaker endpoint of the same name answers. `backfill`
    False leaves the Distributed Map machine out (LocalStack cannot parse its ItemBatcher)."""
    return {
        "NamePrefix": spec.name_prefix,
        "CodeBucket": spec.bucket,
        "DataBucket": spec.bucket,
        "EndpointName": spec.endpoint,
        "Labels": ",".join(spec.classes),
        "Threshold": str(spec.threshold),
        "SageMakerRuntimeUrl": runtime_url,
        "AlertEmail": spec.alert_email,
        "WorkflowType": spec.workflow_type.upper(),  # the template's AllowedValues: STANDARD | EXPRESS
        "Backfill": "true" if backfill else "false",
    }


def stack_calls(spec: Spec) -> list[Call]:
    return [
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
    ]


def monitoring_environment(spec: Spec, topic_arn: str = "") -> dict[str, str]:
    """What `python -m scones.monitoring` reads in the job (settings.py's names): which bucket, endpoint, stack, and
    the alert topic (the job's role may not describe the stack, so `--alert` is told where to publish)."""
    alert = {settings.ALERT_TOPIC_ARN: topic_arn} if topic_arn else {}
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
        **alert,
    }


# The monitoring job's sizing. `scones monitor` reads ~8,000 capture records per second per core (the target of
# bench/bench_monitor.py: 1,000,000 in 60 s on 2 cores) in under 2 GB whatever the count; a run should end well
# inside its MaxRuntimeInSeconds (MONITOR_MAX_RUNTIME_S), after ~5 minutes of container start and pip install.
MONITOR_RECORDS_PER_VCPU_S = 8_000
MONITOR_MAX_RUNTIME_S = 1800
MONITOR_READ_BUDGET_S = 900  # what is left for reading, with room to spare
MONITOR_INSTANCES = (  # (ProcessingInstanceType, vCPUs), smallest first; every one in the service model's enum
    ("ml.m5.large", 2),
    ("ml.m5.xlarge", 4),
    ("ml.m5.2xlarge", 8),
    ("ml.m5.4xlarge", 16),
)


def monitor_instance_type(records: int) -> str:
    """The smallest instance that reads `records` capture records in MONITOR_READ_BUDGET_S; the largest above."""
    for kind, vcpus in MONITOR_INSTANCES:
        if records <= vcpus * MONITOR_RECORDS_PER_VCPU_S * MONITOR_READ_BUDGET_S:
            return kind
    return MONITOR_INSTANCES[-1][0]


def monitor_instance(spec: Spec) -> str:
    """The monitoring job's instance: the one chosen, else sized from the records a run reads."""
    return spec.monitor_instance_type or monitor_instance_type(spec.monitor_records)


def processing_job_request(
    spec: Spec, account: str, source_key: str, image: Callable[..., str], topic_arn: str = ""
) -> dict:
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
            "ImageUri": image("processing", spec.region, monitor_instance(spec)),
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
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": monitor_instance(spec), "VolumeSizeInGB": 10}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": MONITOR_MAX_RUNTIME_S},
        "Environment": monitoring_environment(spec, topic_arn),
        "Tags": spec.tags(),
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
    job = processing_job_request(spec, account, source_key, image, topic_arn)
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
