"""Trained models in S3: find the newest, fetch and unpack one."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from scones.core import aws, settings
from scones.core.errors import NotReadyError, UsageError


class ModelNotFoundError(NotReadyError):
    """No usable model at the given place."""


def latest_model_uri(bucket: str, log=print) -> str:
    """The newest `models/<job>/output/model.tar.gz` in the bucket; else the newest local training job's
    model, uploaded again (a restarted local cloud forgot its objects, the state dir did not)."""
    newest = None
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{settings.MODELS_PREFIX}/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/output/model.tar.gz") and (newest is None or obj["LastModified"] > newest[1]):
                newest = (obj["Key"], obj["LastModified"])
    if newest is not None:
        return f"s3://{bucket}/{newest[0]}"
    jobs = sorted(settings.state_dir().glob("jobs/*/model.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not jobs:
        raise ModelNotFoundError(f"no trained model in s3://{bucket}/{settings.MODELS_PREFIX}/", "scones train")
    archive = jobs[-1]
    key = f"{settings.MODELS_PREFIX}/{archive.parent.name}/output/model.tar.gz"
    s3.upload_file(str(archive), bucket, key)
    log(f"no model in s3://{bucket}/{settings.MODELS_PREFIX}/: uploaded the newest local job's, {archive}")
    return f"s3://{bucket}/{key}"


def deployed_model_uri(target: str, stack: str | None = None, endpoint: str | None = None) -> tuple[str, str] | None:
    """(the model the deployed endpoint serves, where that was read), or None when nothing is deployed on `target`.

    Local targets: the running endpoint's record (`scones endpoint start` / `scones deploy` write it). aws: the
    record `scones deploy --target aws` writes for the stack (the serving artifact, else its training job's model).
    `scones evaluate` defaults to it, and the monitor can (its baseline should be the served model's)."""
    if target == "aws":
        stack = stack or settings.stack_name()
        record = _json_record(settings.aws_record_path(stack))
        if record.get("model_data"):
            return str(record["model_data"]), f"the model stack {stack} serves on AWS"
        if record.get("training_job") and record.get("bucket"):
            uri = f"s3://{record['bucket']}/{settings.MODELS_PREFIX}/{record['training_job']}/output/model.tar.gz"
            return uri, f"the model stack {stack} was deployed with on AWS"
        return None
    endpoint = endpoint or settings.endpoint_name()
    uri = _json_record(settings.endpoint_record_path(endpoint)).get("model_uri")
    return (str(uri), f"the model endpoint {endpoint} serves") if uri else None


def served_or_newest(bucket: str, target: str, log=print) -> tuple[str, str]:
    """(the model deployed on `target`, where that was read), else (the newest trained model, saying so): what
    `scones evaluate` and `scones monitor` judge when no model is named."""
    deployed = deployed_model_uri(target)
    if deployed:
        return deployed
    return latest_model_uri(bucket, log), "nothing is deployed, so the newest trained model"


def _json_record(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def local_jobs() -> list[str]:
    """The training jobs this state dir ran (`scones train`, any --mode): their models/<job>/ is the project's."""
    return sorted(p.name for p in (settings.state_dir() / "jobs").glob("*") if p.is_dir())


def job_of(uri: str) -> str:
    """The job of s3://…/models/<job>/output/model.tar.gz, else the model file's or folder's own name."""
    parts = uri.rstrip("/").split("/")
    if uri.startswith("s3://") and len(parts) >= 4 and parts[-2] == "output":
        return parts[-3]
    path = Path(uri)
    name = path.name.removesuffix(".tar.gz") if path.name.endswith(".tar.gz") else path.name
    return path.parent.name if name == "model" and path.parent.name else name


def reports_dir(uri: str) -> Path:
    """Where a model's reports go (evaluation, its monitoring baseline): data/reports/<job>/."""
    return settings.data_dir() / "reports" / job_of(uri)


class InvalidModelError(UsageError):
    """The model artifact is not a readable scones model (the message says what is wrong with it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "pass a model.tar.gz or model folder made by `scones train`")


REQUIRED = ("model.onnx", "labels.json", "config.json")


def validate(model_dir: Path, origin: str | None = None) -> list[str]:
    """Check a model folder (members, labels, config agree); returns its labels."""
    origin = origin or str(model_dir)
    missing = [name for name in REQUIRED if not (model_dir / name).is_file()]
    if missing:
        raise InvalidModelError(f"{origin} lacks {', '.join(missing)}: it is not a scones model")
    try:
        labels = json.loads((model_dir / "labels.json").read_text())
        config = json.loads((model_dir / "config.json").read_text())
    except ValueError as exc:
        raise InvalidModelError(f"{origin}: labels.json or config.json is not JSON ({exc})") from None
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)):
        raise InvalidModelError(f"{origin}: labels.json must list at least two class names, found {labels!r}")
    if len(set(labels)) != len(labels):
        raise InvalidModelError(f"{origin}: labels.json repeats a class name: {labels}")
    trained = (config.get("hyperparameters") or {}).get("classes") if isinstance(config, dict) else None
    if trained is not None and list(trained) != labels:
        raise InvalidModelError(f"{origin}: labels.json {labels} differs from the classes it was trained on {trained}")
    return labels


def _unpack(archive: Path, dest: Path, origin: str) -> None:
    """Extract into a sibling folder, validate, then rename: nothing half-extracted is ever left at `dest`."""
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive) as tar:
                names = {Path(n).as_posix().removeprefix("./") for n in tar.getnames()}
                missing = [name for name in REQUIRED if name not in names]
                if missing:
                    raise InvalidModelError(f"{origin} lacks {', '.join(missing)}: it is not a scones model.tar.gz")
                tar.extractall(partial, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise InvalidModelError(f"{origin} is not a readable model.tar.gz ({exc})") from None
        validate(partial, origin)
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def fetch_model(uri: str, dest: Path) -> Path:
    """Unpack a model.tar.gz (s3:// URI or local file) into `dest`, or take a model folder as it is; validated."""
    local = Path(uri)
    if local.is_dir():
        validate(local)
        return local
    if dest.exists():
        raise FileExistsError(f"{dest} exists: models are unpacked into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        with tempfile.TemporaryDirectory(prefix=".download-", dir=dest.parent) as tmp:
            archive = Path(tmp) / "model.tar.gz"
            try:
                aws.client("s3").download_file(bucket, key, str(archive))
            except Exception as exc:
                raise ModelNotFoundError(f"cannot download {uri}: {exc}", "scones train (or pass --model)") from exc
            _unpack(archive, dest, uri)
    elif local.is_file():
        _unpack(local, dest, uri)
    else:
        raise InvalidModelError(f"--model {uri!r}: not an s3:// URI, a model.tar.gz or a model folder")
    return dest


def labels_of(model_dir: Path) -> list[str]:
    """The class names of a model folder, in output order."""
    labels_file = model_dir / "labels.json"
    if not labels_file.is_file():
        raise InvalidModelError(f"{model_dir} has no labels.json: is it a scones model?")
    return json.loads(labels_file.read_text())


SERVING_REQUIREMENTS = "numpy\nPillow\nonnxruntime\n"
SERVING_CODE = Path(__file__).resolve().parent.parent / "services" / "endpoint" / "inference.py"  # copied, not imported


def add_serving_code(model_dir: Path) -> None:
    """code/inference.py + code/requirements.txt, as the SageMaker PyTorch inference container expects them."""
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    shutil.copy2(SERVING_CODE, code / "inference.py")
    (code / "requirements.txt").write_text(SERVING_REQUIREMENTS)


def serving_archive(trained: bytes) -> bytes:
    """The model.tar.gz `deploy --target aws` uploads for the PyTorch inference container: the trained artifact's
    members plus code/inference.py and code/requirements.txt (`scones endpoint serve --runtime sagemaker` serves
    exactly these bytes)."""
    import io

    with tempfile.TemporaryDirectory(prefix="scones-serving-") as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        with tarfile.open(fileobj=io.BytesIO(trained)) as tar:
            tar.extractall(model_dir, filter="data")
        add_serving_code(model_dir)
        return archive_of(model_dir)


def archive_of(model_dir: Path) -> bytes:
    """A model folder as a model.tar.gz (members at the top level, as training writes them)."""
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return buffer.getvalue()
