"""`scones train --mode container`: the job SageMaker would run for `scones deploy --target aws`, run here.

    scones train --mode container [--epochs N] [--job-name BASE] [--hp NAME=VALUE ...]

1. The SDK v3's ModelTrainer gets the same request as the AWS deploy (requests.training_request, on a CPU instance
   type): it uploads the training code (`code` channel) and its own drivers (`sm_drivers`: sm_train.sh and the
   basic script driver) to S3 and sends CreateTrainingJob. That call is recorded and answered on this machine
   (aws_training.sent_request): no SageMaker, local or real, creates anything.
2. A private /opt/ml is laid out for that request as SageMaker lays it out: `input/data/<channel>/` downloaded
   from each channel's S3 URI, `input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`, `model/`,
   `output/`.
3. The request's own container command (ContainerEntrypoint + ContainerArguments: bash running the SDK's
   sm_train.sh) runs with that tree bound at /opt/ml (scones.containers.optml). The container's `python` is this
   machine's project environment, seen through a scratch venv layered on it, so that the job's
   `pip install -r requirements.txt` installs into the scratch venv, never into the project's.
4. `model/` is packed and uploaded where `scones train` puts it (s3://<bucket>/models/<job>/output/model.tar.gz,
   which is also the request's S3OutputPath/<job>/output/), so `scones evaluate` and `scones deploy` use it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scones import training_job
from scones.containers import optml, venv
from scones.core import aws, settings, target
from scones.core.errors import UsageError
from scones.data import staged
from scones.deploy import aws_training, images, naming, requests
from scones.deploy.spec import Spec
from scones.training_job import TrainingJobError, TrainingResult

CPU_INSTANCE = "ml.m5.large"  # what resourceconfig.json names; its image is the CPU build of the training image
HOST = "algo-1"
GROUP = "homogeneousCluster"
# What the drivers print that is worth showing as the job runs (everything goes to the job's log).
SHOWN = (
    "Starting training script",
    "Installing requirements",
    "Running Basic Script driver",
    "Executing command:",
    "training on",
    "outlier exposure",
    "error:",
    "An error occurred",
    "Command failed",
    "Training Container Execution Completed",
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --- 1. the request ModelTrainer sends ------------------------------------------------------------------


def spec_for(bucket: str, prefix: str, classes: list[str], hps: dict):
    """The deploy's Spec for this data, on a CPU instance (the image and resourceconfig.json follow from it)."""
    epochs = hps.pop("epochs", None)
    return Spec(
        stack=settings.stack_name(),
        bucket=bucket,
        prefix=prefix,
        region=target.current().region,
        role=settings.sagemaker_role() or "scones-container-here",  # assumed by nothing: the job runs here
        instance_type=CPU_INSTANCE,
        classes=tuple(classes),
        epochs=None if epochs is None else int(epochs),
        hyperparameters=tuple((k, str(v)) for k, v in hps.items()),
    )


def sent_request(spec, outliers: bool, job_base: str | None, log) -> dict:
    """What ModelTrainer sends for this spec (its uploads done), answered here."""
    from botocore.exceptions import EndpointConnectionError

    request = requests.training_request(
        spec, requests.Facts(account=naming.account_of(spec), outliers=outliers), images.retrieve
    )
    if job_base:
        request["TrainingJobName"] = f"{job_base}-{naming.UNKNOWN_TIMESTAMP}"
    trainer, channels = aws_training.model_trainer(spec, request)
    log("ModelTrainer: uploading the code and its drivers, then CreateTrainingJob (answered here) ...")
    # SageMaker's calls are answered by the hook; should one get past it, it meets a closed port, not a SageMaker.
    closed = f"{settings.SERVICE_ENDPOINT_PREFIX}SAGEMAKER"
    saved = os.environ.get(closed)
    os.environ[closed] = "http://127.0.0.1:9"
    missed = TrainingJobError(
        "ModelTrainer's CreateTrainingJob got past the hook that answers it here (has the SageMaker SDK changed "
        "how it calls it?); nothing was created",
        "scones train (the same script without the SDK's drivers)",
    )
    try:
        with aws_training.sent_request(trainer, answer_here=True) as sent:
            trainer.train(input_data_config=channels, wait=False, logs=False)
    except EndpointConnectionError:
        raise missed from None
    finally:
        if saved is None:
            os.environ.pop(closed, None)
        else:
            os.environ[closed] = saved
    if "TrainingJobName" not in sent:
        raise missed
    return dict(sent)


# --- 2. /opt/ml as SageMaker lays it out -----------------------------------------------------------------


def channel_objects(s3, uri: str) -> list[tuple[str, str]]:
    """(key, path under the channel folder) for an S3Prefix URI, as the SDK's local mode resolves one
    (sagemaker.core.common_utils.download_folder): an exact object lands under its own name, a prefix keeps
    the keys' paths below it."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key == prefix:
                return [(key, os.path.basename(key))]
            if not key.endswith("/"):
                found.append((key, key[len(prefix) :].lstrip("/")))
    return found


def input_data_config(request: dict) -> dict:
    """inputdataconfig.json: per channel what SageMaker's training platform writes."""
    mode = request["AlgorithmSpecification"].get("TrainingInputMode", "File")
    config = {}
    for c in request["InputDataConfig"]:
        entry = {
            "TrainingInputMode": c.get("InputMode", mode),
            "S3DistributionType": c["DataSource"]["S3DataSource"].get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": c.get("RecordWrapperType", "None"),
        }
        if "ContentType" in c:
            entry["ContentType"] = c["ContentType"]
        config[c["ChannelName"]] = entry
    return config


def resource_config(request: dict) -> dict:
    """resourceconfig.json of a one-instance job."""
    instance = request["ResourceConfig"]["InstanceType"]
    return {
        "current_host": HOST,
        "current_instance_type": instance,
        "current_group_name": GROUP,
        "hosts": [HOST],
        "instance_groups": [{"instance_group_name": GROUP, "instance_type": instance, "hosts": [HOST]}],
        "network_interface_name": "eth0",
    }


def layout(request: dict, tree: Path, log=print) -> dict[str, int]:
    """The job's /opt/ml under `tree`; returns the number of files per channel. A channel with nothing under its
    URI fails here, as SageMaker fails the job."""
    s3 = aws.client("s3", max_pool_connections=32)
    config, data = tree / "input" / "config", tree / "input" / "data"
    for folder in (config, data, tree / "model", tree / "output" / "data"):
        folder.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, str, Path]] = []
    counts = {}
    for c in request["InputDataConfig"]:
        uri = c["DataSource"]["S3DataSource"]["S3Uri"]
        objects = channel_objects(s3, uri)
        if not objects:
            raise TrainingJobError(
                f"channel {c['ChannelName']!r}: no objects under {uri} (SageMaker fails the job the same way)",
                "scones stage, then scones train --mode container again",
            )
        counts[c["ChannelName"]] = len(objects)
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        jobs += [(bucket, key, staged.inside(data / c["ChannelName"], rel)) for key, rel in objects]
    (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
    (config / "inputdataconfig.json").write_text(json.dumps(input_data_config(request)))
    (config / "resourceconfig.json").write_text(json.dumps(resource_config(request)))
    staged.fetch_all(s3, jobs, f"downloading {len(counts)} channels into /opt/ml/input/data")
    return counts


# --- 3. the container's command --------------------------------------------------------------------------


def container_python(log=print) -> Path:
    """The container's python: a scratch venv layered on this environment's packages (torch, onnx, ...)."""
    paths = sysconfig.get_paths()
    layers = [Path(p) for p in dict.fromkeys([paths["purelib"], paths["platlib"]])]
    return venv.ensure("training-container", [], log=log, layered_on=layers)


def container_environment(request: dict, python: Path, region: str) -> dict[str, str]:
    """What the platform gives the container: its PATH (python first), the job's name and ARN, the region;
    pip's own settings pass through so the job's `pip install` uses this machine's index."""
    name = request["TrainingJobName"]
    env = {
        "PATH": f"{python.parent}:{SYSTEM_PATH}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TRAINING_JOB_NAME": name,
        "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{region}:<account-id>:training-job/{name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") or k == "TMPDIR"})
    return env


def show(line: str, log: Callable[[str], None]) -> None:
    parsed = training_job.parse_line(line)
    if parsed and parsed[0] == "METRICS":
        log("  " + training_job.format_metrics(parsed[1]))
    elif parsed:
        log("  result: " + training_job._format(parsed[1]))
    elif line.startswith(SHOWN):
        log("  " + line)


def execute(request: dict, tree: Path, python: Path, region: str, log_path: Path, log=print) -> int:
    """Run the request's container command with `tree` at /opt/ml; stream its output; returns its exit code.
    The job is stopped at the request's MaxRuntimeInSeconds, as SageMaker stops it."""
    algorithm = request["AlgorithmSpecification"]
    argv = [*algorithm.get("ContainerEntrypoint", []), *algorithm.get("ContainerArguments", [])]
    if not argv:
        raise TrainingJobError(
            "the request names no container command (no ContainerEntrypoint): only script-mode jobs run here",
            "scones deploy --target aws --algorithm builtin runs the built-in algorithm on SageMaker",
        )
    proc = optml.popen(
        tree,
        argv,
        env=container_environment(request, python, region),
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: a stop ends the driver and the script under it
    )

    stopped = threading.Event()

    def stop() -> None:
        if proc.poll() is None:
            stopped.set()
            os.killpg(proc.pid, signal.SIGKILL)

    limit = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    timer = threading.Timer(limit, stop)
    timer.start()
    try:
        with open(log_path, "w") as job_log:
            assert proc.stdout is not None
            for raw in proc.stdout:
                job_log.write(raw)
                show(raw.strip(), log)
        code = proc.wait()
    except BaseException:  # Ctrl-C included: the job's processes end with this command
        stop()
        raise
    finally:
        timer.cancel()
    if stopped.is_set():
        raise TrainingJobError(
            f"training job {request['TrainingJobName']} stopped at MaxRuntimeInSeconds ({limit} s), as SageMaker "
            "stops it",
            "fewer --epochs, or a larger max runtime",
        )
    return code


def failure_reason(failure: Path, log_path: Path, code: int) -> str:
    """One line: the script's own /opt/ml/output/failure (what SageMaker shows as FailureReason); where only the
    driver wrote one (its traceback of the script's exit), the script's last `error:` line in the job's log."""
    text = failure.read_text().strip() if failure.exists() else ""
    if text and "Traceback" not in text:
        return text.splitlines()[-1]
    errors = (
        [line.strip() for line in log_path.read_text().splitlines() if "error:" in line] if log_path.exists() else []
    )
    return errors[-1] if errors else (text.splitlines()[-1] if text else f"exit status {code}")


# --- the whole job ---------------------------------------------------------------------------------------


def run(
    bucket: str,
    prefix: str,
    job_name: str | None = None,
    epochs: int | None = None,
    classes: list[str] | None = None,
    hyperparameters: dict | None = None,
    log=print,
    allow_unknown: bool = False,
) -> TrainingResult:
    """`scones train --mode container`; `job_name` is the base ModelTrainer appends its timestamp to."""
    started = time.perf_counter()
    if job_name and not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,47}", job_name):
        raise UsageError(
            f"--job-name {job_name!r}: 1-48 letters, digits and hyphens (ModelTrainer appends -YYYYmmddHHMMSS, "
            "and SageMaker allows 63 characters)",
            "pass another --job-name",
        )
    optml.check()  # before any upload: this machine must allow a private /opt/ml
    hps = dict(hyperparameters or {})
    if epochs is not None:
        hps["epochs"] = epochs
    training_job.check_hyperparameters(hps, allow_unknown)
    manifest = staged.read_manifest(bucket, prefix)
    trained_classes = staged.staged_classes(manifest, classes, bucket, prefix)
    spec = spec_for(bucket, prefix, trained_classes, hps)
    outliers = staged.outliers_staged(manifest)
    request = sent_request(spec, outliers, job_name, log)
    job = request["TrainingJobName"]
    job_dir = training_job.job_folder(job)
    tree = job_dir / "opt_ml"
    counts = layout(request, tree, log)
    files = ", ".join(f"{name} {n}" for name, n in counts.items())
    log(f"training job {job}, as SageMaker runs it, here; files per channel: {files}")
    python = container_python(log)
    (job_dir / "request.json").write_text(json.dumps(request, indent=1, default=str))
    log_path = job_dir / "train.log"
    code = execute(request, tree, python, spec.region, log_path, log)
    if code != 0:
        reason = failure_reason(tree / "output" / "failure", log_path, code)
        raise TrainingJobError(
            f"training job {job} failed: {reason}", f"see {log_path}, fix, run scones train --mode container again"
        )
    uri = training_job.package(tree / "model", job_dir / "model.tar.gz", bucket, job)
    metrics = json.loads((tree / "model" / "metrics.json").read_text())
    return TrainingResult(job, uri, tree / "model", metrics, time.perf_counter() - started)
