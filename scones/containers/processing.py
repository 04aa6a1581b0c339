"""A CreateProcessingJob request run here as SageMaker runs it, without Docker.

SageMaker downloads each ProcessingInput's S3 objects to its LocalPath, runs ContainerEntrypoint +
ContainerArguments with the request's Environment in the image, then uploads each ProcessingOutput's LocalPath
to its S3Uri. Here the image is a Python (a scratch venv: `scones.containers.venv`), `/opt/ml` is a private
folder (`scones.containers.optml`), and S3 is whichever cloud the environment points at.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from scones.containers import optml
from scones.core import aws
from scones.core.errors import UsageError

PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")


@dataclass
class JobRun:
    returncode: int
    output: str  # the container's stdout and stderr, interleaved (CloudWatch's log stream)
    downloaded: list[str] = field(default_factory=list)  # local paths, as the container sees them
    uploaded: list[str] = field(default_factory=list)  # s3:// URIs


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise UsageError(f"{uri}: only s3:// URIs are handed to a processing job here")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _in_tree(tree: Path, local_path: str) -> Path:
    path = PurePosixPath(local_path)
    if not path.is_relative_to(PROCESSING_ROOT):  # SageMaker refuses any other LocalPath too
        raise UsageError(f"LocalPath {local_path} is not under {PROCESSING_ROOT}")
    return tree / path.relative_to(optml.MOUNT_POINT.as_posix())


def download_inputs(request: dict, tree: Path) -> list[str]:
    """Every ProcessingInput's objects (S3Prefix: all keys under the prefix) to its LocalPath under `tree`."""
    s3, done = aws.client("s3"), []
    for item in request.get("ProcessingInputs", []):
        source = item["S3Input"]
        bucket, prefix = _split(source["S3Uri"])
        local = _in_tree(tree, source["LocalPath"])
        keys = [prefix]
        if source.get("S3DataType", "S3Prefix") == "S3Prefix":
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            keys = [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if not keys:
            raise UsageError(f"ProcessingInput {item['InputName']}: nothing under {source['S3Uri']}")
        for key in keys:
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            target = local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            done.append(f"{source['LocalPath'].rstrip('/')}/{relative}")
    return done


def upload_outputs(request: dict, tree: Path) -> list[str]:
    """Every file under each ProcessingOutput's LocalPath to its S3Uri, keeping relative paths."""
    s3, done = aws.client("s3"), []
    for item in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
        target = item["S3Output"]
        bucket, prefix = _split(target["S3Uri"])
        local = _in_tree(tree, target["LocalPath"])
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(local).as_posix()]))
            s3.upload_file(str(path), bucket, key)
            done.append(f"s3://{bucket}/{key}")
    return done


def run_job(request: dict, tree: Path, python: Path, extra_env: dict[str, str], timeout: float) -> JobRun:
    """The request's container command with `python`'s folder first on PATH (the image), the request's
    Environment plus `extra_env` (what the container's network and role give it: endpoint URL, credentials)."""
    for sub in ("input", "output"):
        (tree / "processing" / sub).mkdir(parents=True, exist_ok=True)
    downloaded = download_inputs(request, tree)
    for output in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
        _in_tree(tree, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
    config = tree / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "processingjobconfig.json").write_text(json.dumps(request, indent=2))  # as SageMaker leaves it
    app = request["AppSpecification"]
    argv = [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])]
    env = {
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},  # this machine's package index
        **request.get("Environment", {}),
        **extra_env,
    }
    done = optml.run(tree, argv, env=env, cwd=tree, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = JobRun(done.returncode, done.stdout.decode(errors="replace"), downloaded)
    if run.returncode == 0:  # SageMaker uploads the outputs of a job that completed
        run.uploaded = upload_outputs(request, tree)
    return run
