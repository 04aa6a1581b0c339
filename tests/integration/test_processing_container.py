"""The hourly monitoring job, run as SageMaker's processing container runs it, against the local cloud.

`scones deploy --target aws` (its monitoring part) creates the schedule on the local cloud; the test reads back
the CreateProcessingJob request the schedule would send and runs exactly that: its ProcessingInputs downloaded
to their LocalPath under a private /opt/ml, its ContainerEntrypoint + ContainerArguments with its Environment,
in a Python that has only what the processing image has (python, boto3, numpy: the job installs the rest itself),
then its ProcessingOutputs uploaded. The bucket holds a trained model (tests/helpers.py's brightness model), the
staged test split and captured traffic that drifted dark; the stack named in the Environment holds the alert
topic.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
from helpers import deployment_env, environ, make_brightness_model, subscribe_queue
from monitoring_fixtures import held_out_images, traffic_records

from scones import cli
from scones.containers import optml, processing, venv
from scones.core import aws, settings
from scones.deploy import aws_monitoring, naming
from scones.deploy.checks import Report
from scones.deploy.spec import Spec
from scones.monitoring import baseline, capture, monitor
from services.endpoint.capture import object_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACCOUNT = "123456789012"  # moto's
EXECUTION_ID = "d32c5kddcf5bb8c3"  # what EventBridge Scheduler puts for <aws.scheduler.execution-id> (AWS's example)
# What the processing image (the PyTorch 2.8 training image) brings that the job uses: Python, boto3, numpy.
IMAGE_PACKAGES = [f"{name}=={metadata.version(name)}" for name in ("boto3", "numpy")]
IMAGE_PYTHON = "3.12"
# A stack as small as the alert part of template.yaml: the topic the job alerts and the threshold it reads.
ALERT_STACK = {
    "Parameters": {"Threshold": {"Type": "String", "Default": "0.93"}},
    "Resources": {"AlertTopic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"AlertTopicArn": {"Value": {"Ref": "AlertTopic"}}},
}


def put_capture(s3, bucket: str, prefix: str, endpoint: str, records: list[dict], per_file: int = 25) -> None:
    """Capture files as the endpoint writes them (SageMaker's key layout, JSON lines)."""
    for start in range(0, len(records), per_file):
        chunk = records[start : start + per_file]
        when = datetime.fromisoformat(chunk[0]["eventMetadata"]["inferenceTime"].replace("Z", "+00:00"))
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in chunk)
        s3.put_object(Bucket=bucket, Key=object_key(prefix, endpoint, naming.VARIANT, when), Body=body.encode())


@pytest.fixture(scope="module")
def scheduled(local_cloud, tmp_path_factory):
    """A trained model, its staged test split and 120 dark-drifted captured requests in a bucket; the alert
    stack; and the monitoring schedule as the AWS deploy creates it. Yields the spec and the schedule's job."""
    suffix, env = deployment_env("proc")
    env[settings.DATA_DIR] = str(tmp_path_factory.mktemp("data"))
    with environ(env):
        spec = Spec(
            stack=env[settings.STACK_NAME],
            bucket=env[settings.BUCKET],
            endpoint=env[settings.SCONES_ENDPOINT_NAME],
            region=settings.region(),
            role=f"arn:aws:iam::{ACCOUNT}:role/sm-{suffix}",
        )
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=spec.bucket)
        model = make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for path in model.iterdir():
                tar.add(path, arcname=path.name)
        s3.put_object(Bucket=spec.bucket, Key="models/brightness-job/output/model.tar.gz", Body=archive.getvalue())
        images = held_out_images(n_per_class=30)
        for name, body in images:
            s3.put_object(Bucket=spec.bucket, Key=f"{spec.prefix}/test/{name}", Body=body)
        lst = "".join(f"{i}\t{int(name.startswith('motorcycle'))}\t{name}\n" for i, (name, _) in enumerate(images))
        s3.put_object(Bucket=spec.bucket, Key=f"{spec.prefix}/test.lst", Body=lst.encode())
        records = traffic_records(model, images, 120, "dark", seed=5)
        put_capture(s3, spec.bucket, spec.capture_prefix, spec.endpoint, records)
        aws.client("cloudformation").create_stack(StackName=spec.stack, TemplateBody=json.dumps(ALERT_STACK))
        topic = aws.client("cloudformation").describe_stacks(StackName=spec.stack)["Stacks"][0]["Outputs"][0]
        alerts = subscribe_queue(topic["OutputValue"], f"proc-alerts-{suffix}")
        aws_monitoring.ensure_monitoring(spec, ACCOUNT, Report(), log=lambda _m: None)
        schedule = aws.client("scheduler").get_schedule(
            Name=naming.schedule_name(spec), GroupName=naming.schedule_group(spec)
        )
        job = json.loads(schedule["Target"]["Input"].replace("<aws.scheduler.execution-id>", EXECUTION_ID))
        yield {"spec": spec, "job": job, "alerts": alerts, "records": len(records)}
        aws.client("cloudformation").delete_stack(StackName=spec.stack)


def image_python(tmp_path) -> Path:
    """A fresh copy of the image's Python (built once, cached): what the job installs goes into the copy only."""
    import shutil

    python = venv.find_python(IMAGE_PYTHON) or sys.executable  # the image's Python version where this machine has it
    base = venv.ensure("processing-image", IMAGE_PACKAGES, python=python).parent.parent
    copy = tmp_path / "image"
    shutil.copytree(base, copy, symlinks=True)
    return venv.python_of(copy)


def test_python_m_scones_monitoring_is_a_command():
    # today's main: "No module named scones.monitoring.__main__"
    done = subprocess.run([sys.executable, "-m", "scones.monitoring", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout and "strftime" in done.stdout


@pytest.mark.timeout(1200)
def test_the_scheduled_job_runs_in_the_processing_container_and_its_outputs_reach_s3(scheduled, tmp_path):
    optml.check()
    spec, job = scheduled["spec"], scheduled["job"]
    # Given the image's Python, which cannot run the model yet (the job must install onnxruntime itself)
    python = image_python(tmp_path)
    assert subprocess.run([str(python), "-c", "import onnxruntime"], capture_output=True).returncode != 0
    version = subprocess.run([str(python), "-V"], capture_output=True, text=True).stdout.strip()
    print(f"the image's Python here: {version}")
    # and no baseline yet: the job's first run must build it through the serving handlers
    s3 = aws.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=spec.bucket, Prefix="models/brightness-job/monitoring/")
    # When the schedule's exact request runs as SageMaker runs it (its role and network: the local cloud)
    started = datetime.now(UTC)
    network = {settings.AWS_ENDPOINT_URL: aws_endpoint(), **settings.FAKE_CREDENTIALS}
    run = processing.run_job(job, tmp_path / "opt-ml", python, network, timeout=1100)
    # Then it succeeded, read the inputs it was given, and judged the dark traffic a drift
    assert run.returncode == 0, run.output[-4000:]
    assert sorted(run.downloaded) == [
        f"{naming.MONITOR_CODE}/{naming.MONITOR_SCRIPT}",
        f"{naming.MONITOR_CODE}/scones-src.tar.gz",
    ]
    assert "verdict: DRIFT" in run.output, run.output[-4000:]
    # its outputs are in S3 under the hour it ran, as the ProcessingOutput declares
    hour = f"{naming.monitor_out_uri(spec)}/{started:%Y/%m/%d/%H}/"
    names = {uri.removeprefix(hour) for uri in run.uploaded if uri.startswith(hour)}
    assert {"report.html", "statistics.json", "constraints.json", "constraint_violations.json"} <= names, run.uploaded
    where = capture.Location.parse(hour)
    summary = json.loads(s3.get_object(Bucket=where.bucket, Key=f"{where.prefix}/summary.json")["Body"].read())
    assert summary["records"] == scheduled["records"] and summary["verdict"] == "DRIFT"
    assert summary["capture"] == naming.capture_uri(spec)  # the capture prefix came from the Environment
    violations = json.loads(
        s3.get_object(Bucket=where.bucket, Key=f"{where.prefix}/constraint_violations.json")["Body"].read()
    )
    assert violations["violations"]
    # the first run built the baseline through the serving handlers (onnxruntime) and stored it beside the model
    kept = s3.list_objects_v2(Bucket=spec.bucket, Prefix="models/brightness-job/monitoring/baseline/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[-1] for o in kept} == set(baseline.FILES)
    # the metrics carry the endpoint named in the Environment, and the stack named there got the alert
    metrics = aws.client("cloudwatch").list_metrics(Namespace=monitor.NAMESPACE, MetricName=monitor.DRIFT_METRIC)
    assert [{"Name": "EndpointName", "Value": spec.endpoint}] in [m["Dimensions"] for m in metrics["Metrics"]]
    messages = aws.client("sqs").receive_message(
        QueueUrl=scheduled["alerts"], MaxNumberOfMessages=10, WaitTimeSeconds=2
    )
    subjects = [json.loads(m["Body"])["Subject"] for m in messages.get("Messages", [])]
    assert f"scones: drift on {spec.endpoint}" in subjects


def test_monitor_out_s3_uploads_the_report_instead_of_making_a_local_folder(scheduled, tmp_path, monkeypatch):
    # Given captured records and a model in the bucket
    spec = scheduled["spec"]
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"  # where tempfile puts its folders during this run
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = f"s3://{spec.bucket}/reports/by-hand"
    env = {settings.BUCKET: spec.bucket, settings.SCONES_ENDPOINT_NAME: spec.endpoint, settings.STACK_NAME: spec.stack}
    with environ({**env, settings.DATA_DIR: str(tmp_path / "data")}):
        # When `scones monitor --out s3://…` runs
        code = cli.main(["monitor", "--out", out, "--no-metrics"])
    # Then the files are in S3 (today's main: a local folder named "s3:" and nothing in the bucket)
    assert code == 0
    listed = aws.client("s3").list_objects_v2(Bucket=spec.bucket, Prefix="reports/by-hand/").get("Contents", [])
    names = {o["Key"].rsplit("/", 1)[-1] for o in listed}
    assert {"report.html", "statistics.json", "constraints.json", "constraint_violations.json"} <= names
    assert not (tmp_path / "s3:").exists()
    assert not list(scratch.iterdir())  # and the folder the files were written in before the upload is gone


def aws_endpoint() -> str:
    import os

    return os.environ[settings.AWS_ENDPOINT_URL]
