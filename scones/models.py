"""Trained models in S3: find the newest, fetch and unpack one."""

from __future__ import annotations

import tarfile
from pathlib import Path

from scones.core.errors import NotReadyError


class ModelNotFoundError(NotReadyError):
    """No usable model at the given place."""


def latest_model_uri(bucket: str) -> str:
    """The newest `models/<job>/output/model.tar.gz` in the bucket."""
    from scones.core import aws, settings

    newest = None
    pages = (
        aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{settings.MODELS_PREFIX}/")
    )
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/output/model.tar.gz") and (newest is None or obj["LastModified"] > newest[1]):
                newest = (obj["Key"], obj["LastModified"])
    if newest is None:
        raise ModelNotFoundError(f"no trained model in s3://{bucket}/{settings.MODELS_PREFIX}/", "scones train")
    return f"s3://{bucket}/{newest[0]}"


def fetch_model(uri: str, dest: Path) -> Path:
    """Unpack a model.tar.gz (s3:// URI or local file) or take a model folder as it is."""
    local = Path(uri)
    if local.is_dir():
        return local
    dest.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        from scones.core import aws

        bucket, key = uri[5:].split("/", 1)
        archive = dest / "model.tar.gz"
        try:
            aws.client("s3").download_file(bucket, key, str(archive))
        except Exception as exc:
            raise ModelNotFoundError(f"cannot download {uri}: {exc}") from exc
    elif local.is_file():
        archive = local
    else:
        raise ModelNotFoundError(f"--model {uri!r}: not an s3:// URI, a model.tar.gz or a model folder")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def labels_of(model_dir: Path) -> list[str]:
    """The class names of a model folder, in output order."""
    import json

    labels_file = model_dir / "labels.json"
    if not labels_file.is_file():
        raise ModelNotFoundError(f"{model_dir} has no labels.json: is it a scones model?")
    return json.loads(labels_file.read_text())


SERVING_REQUIREMENTS = "numpy\nPillow\nonnxruntime\n"


def add_serving_code(model_dir: Path) -> None:
    """code/inference.py + code/requirements.txt, as the SageMaker PyTorch inference container expects them."""
    import shutil

    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    source = Path(__file__).resolve().parent.parent / "services" / "endpoint" / "inference.py"
    shutil.copy2(source, code / "inference.py")
    (code / "requirements.txt").write_text(SERVING_REQUIREMENTS)
