"""`scones train --mode container`: the job ModelTrainer creates, run here by the SDK's own sm_train.sh and drivers
in a private /opt/ml, gives the artifact `scones train` gives, where `scones train` puts it.

Small synthetic data and one epoch: the point is the layout, the wiring and that the model serves, not accuracy.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import uuid
from pathlib import Path

import pytest

from scones import cli
from scones.core import aws, settings
from scones.data import staging

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLASSES = ["bicycle", "motorcycle"]


@pytest.fixture(scope="module")
def staged(local_cloud, tmp_path_factory):
    pytest.importorskip("sagemaker", reason="the job is ModelTrainer's: needs the aws extra")
    from scones.containers import optml

    try:
        optml.check()
    except Exception as exc:  # a machine without user namespaces cannot have a private /opt/ml
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("container")
    bucket = f"tc-{uuid.uuid4().hex[:8]}"
    source = staging.resolve_source("synthetic", CLASSES, 0, 12, 6, cache_dir=root / "cache")
    manifest = staging.build(source, CLASSES, root / "staged")
    aws.client("s3").create_bucket(Bucket=bucket)
    staging.upload(root / "staged", manifest, bucket, "data")
    return bucket, root


def train(capsys, bucket: str, *args: str) -> tuple[str, str]:
    """(model URI, what the command printed)."""
    assert cli.main(["train", "--bucket", bucket, "--prefix", "data", "--epochs", "1", *args]) == 0
    out = capsys.readouterr().out
    (uri,) = re.findall(r"^model: (s3://\S+)", out, re.MULTILINE)
    return uri, out


def artifact(uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_container_mode_makes_the_artifact_scones_train_makes(staged, capsys, tmp_path):
    bucket, _ = staged
    suffix = uuid.uuid4().hex[:6]
    host_opt_ml = sorted(Path("/opt/ml").iterdir())

    # a hyperparameter named with an underscore, as `--hp` takes it: the SDK's driver passes names verbatim
    oe = ["--hp", "oe_weight=0.5"]
    container_uri, out = train(capsys, bucket, "--mode", "container", "--job-name", f"c-{suffix}", *oe)
    local_uri, _ = train(capsys, bucket, "--job-name", f"l-{suffix}", *oe)

    # where scones train puts its artifact: models/<job>/output/model.tar.gz (the job named by ModelTrainer)
    assert re.fullmatch(
        rf"s3://{bucket}/{settings.MODELS_PREFIX}/c-{suffix}-\d{{14}}/output/model\.tar\.gz", container_uri
    )
    ours, theirs = artifact(container_uri), artifact(local_uri)
    assert sorted(ours) == sorted(theirs)
    assert ours["training_code/train.py"] == theirs["training_code/train.py"]
    metrics = json.loads(ours["metrics.json"])
    assert metrics["outlier_exposure"] is True and metrics["n_outliers"] > 0  # the outliers channel arrived
    assert metrics["oe_weight"] == 0.5 == json.loads(theirs["metrics.json"])["oe_weight"]  # and the --hp
    assert set(metrics) == set(json.loads(theirs["metrics.json"]))

    # progress: the drivers' own steps and the script's METRICS lines, streamed
    for shown in ("Running Basic Script driver", "Executing command:", "epoch 1/1", "test accuracy"):
        assert shown in out, shown
    # it ran under /opt/ml (the drivers hard-code it), and the host's /opt/ml is untouched
    job = re.search(r"/(c-\w+-\d{14})/output/", container_uri).group(1)
    log = (settings.state_dir() / "jobs" / job / "train.log").read_text()
    assert "/opt/ml/input/config/resourceconfig.json:" in log and "Requirement already satisfied" in log
    request = json.loads((settings.state_dir() / "jobs" / job / "request.json").read_text())
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    assert sorted(Path("/opt/ml").iterdir()) == host_opt_ml

    # the model loads and serves, and scones evaluate takes it
    from services.endpoint import inference

    model_dir = tmp_path / "model"
    for name, body in ours.items():
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_bytes(body)
    model = inference.model_fn(model_dir)
    image = next(p for p in (staged[1] / "staged" / "test").rglob("*.png"))
    probabilities = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(image.read_bytes(), "image/png"), model))
    )
    assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-4
    assert cli.main(["evaluate", "--bucket", bucket, "--prefix", "data", "--model", container_uri]) == 0


def test_a_failing_job_is_one_line_with_the_scripts_reason(staged, capsys):
    """train.py's own failure (/opt/ml/output/failure, SageMaker's FailureReason) reaches the user in one line."""
    bucket, _ = staged
    s3 = aws.client("s3")
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="data/", MaxKeys=1000)["Contents"]:
        key = "broken/" + obj["Key"].removeprefix("data/")
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": obj["Key"]})
    s3.put_object(Bucket=bucket, Key="broken/train.lst", Body=b"0\t0\tbicycle/missing.png\n")
    args = ["--bucket", bucket, "--prefix", "broken", "--mode", "container", "--epochs", "1"]
    assert cli.main(["train", *args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    (line,) = [x for x in err if x.startswith("scones train: error:")]
    assert "failed: TrainingInputError" in line and "missing.png" in line, line
    assert "Traceback" not in "\n".join(err)
