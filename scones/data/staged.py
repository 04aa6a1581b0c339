"""What `scones stage` left in S3, read back: its manifest, the test images and the channels a job downloads.

Train, evaluate and the monitor's baseline download the same channels; load, invoke and the benches pick
from the same test images. A key that would land outside the destination folder is refused, never written.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from botocore.exceptions import ClientError

from scones.core import aws
from scones.core.errors import NotReadyError, UsageError
from scones.core.progress import Progress


def read_manifest(bucket: str, prefix: str) -> dict:
    """The manifest.json `scones stage` wrote beside the data: classes, counts, outlier channels."""
    try:
        body = aws.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise NotReadyError(
                f"nothing staged at s3://{bucket}/{prefix}/ (no manifest.json)", "scones stage"
            ) from None
        if code == "NoSuchBucket":
            raise NotReadyError(f"bucket {bucket!r} does not exist", "scones up, or pass --bucket") from None
        raise
    return json.loads(body)


MANIFEST = "manifest.json"
JOURNAL = ".staging.json"  # an upload in progress: the files it may leave, should it stop before the manifest lands


def _listed_files(document: dict) -> set[str]:
    """The relative names a manifest (`files`: name → md5) or a journal (`files`: [name]) lists; a name that would
    climb out of the prefix is not ours to touch."""
    return {
        name
        for name in document.get("files") or ()
        if isinstance(name, str) and name and not name.startswith("/") and ".." not in name.split("/")
    }


def staged_files(bucket: str, prefix: str) -> set[str]:
    """Every file `scones stage` wrote under s3://bucket/prefix/, relative to it: what the manifest lists, what an
    unfinished upload's journal lists, and those two files themselves. Nothing else under the prefix is ours."""
    s3, found = aws.client("s3"), set()
    for name in (MANIFEST, JOURNAL):
        try:
            document = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404", "NoSuchBucket"):
                continue
            raise
        except ValueError:  # not JSON: not a file of ours to read, but still the name stage writes
            document = {}
        found |= _listed_files(document if isinstance(document, dict) else {}) | {name}
    return found


def outliers_staged(manifest: dict) -> bool:
    """Whether the training outliers were staged beside the data."""
    return (manifest.get("outliers") or {}).get("mode") == "auto"


def channel_splits(manifest: dict) -> tuple[str, ...]:
    """The channels a training job gets: train and test, plus the training outliers when they are staged."""
    if outliers_staged(manifest):
        return ("train", "test", manifest["outliers"]["train"]["channel"])
    return ("train", "test")


def staged_classes(manifest: dict, classes: list[str] | None, bucket: str, prefix: str) -> list[str]:
    """The staged classes; `--classes`, when given, must be them."""
    staged = manifest["classes"]
    if classes and classes != staged:
        raise UsageError(
            f"--classes {','.join(classes)} differs from what is staged at s3://{bucket}/{prefix}/ "
            f"({','.join(staged)})",
            f"scones stage --classes {','.join(classes)}",
        )
    return staged


def test_images(bucket: str, prefix: str) -> list[str]:
    """Every staged test PNG's key; refused in one line when there is none."""
    keys = []
    for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/test/"):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].lower().endswith(".png")]
    if not keys:
        raise NotReadyError(f"no staged test image under s3://{bucket}/{prefix}/test/", "scones stage")
    return keys


def test_sample(bucket: str, prefix: str, n: int) -> list[str]:
    """The first n staged test images, alternating classes so that a small batch shows both."""
    by_class: dict[str, list[str]] = {}
    for key in test_images(bucket, prefix):
        by_class.setdefault(key.rsplit("/", 1)[-1].split("_s_")[0], []).append(key)
    columns = [sorted(keys) for _, keys in sorted(by_class.items())]
    return [k for group in zip(*columns, strict=False) for k in group][:n]


def inside(folder: Path, relative: str) -> Path:
    """`folder / relative`, refused when it resolves outside `folder` (`../`, an absolute part, a link out)."""
    root = folder.resolve()
    dest = (root / relative).resolve()
    if not relative or not dest.is_relative_to(root) or dest == root:
        raise UsageError(
            f"refusing S3 key part {relative!r}: it would be written outside {folder}",
            "remove that object from the bucket, then rerun",
        )
    return dest


def download_channels(
    bucket: str, prefix: str, data_dir: Path, splits: tuple[str, ...] = ("train", "test")
) -> dict[str, Path]:
    """Download each split and its .lst into SageMaker's channel layout under `data_dir`; returns channel → folder."""
    s3 = aws.client("s3", max_pool_connections=32)
    jobs: list[tuple[str, Path]] = []
    channels = {}
    for split in splits:
        channels[split] = data_dir / split
        channels[split].mkdir(parents=True, exist_ok=True)
        channels[f"{split}_lst"] = data_dir / f"{split}_lst"
        channels[f"{split}_lst"].mkdir(parents=True, exist_ok=True)
        jobs.append((f"{prefix}/{split}.lst", channels[f"{split}_lst"] / f"{split}.lst"))
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/{split}/"):
            for obj in page.get("Contents", []):
                jobs.append((obj["Key"], inside(channels[split], obj["Key"][len(prefix) + len(split) + 2 :])))
    fetch_all(s3, [(bucket, key, dest) for key, dest in jobs], f"downloading channels from s3://{bucket}/{prefix}/")
    return channels


def fetch_all(s3, jobs: list[tuple[str, str, Path]], what: str) -> None:
    """Download every (bucket, key, destination) on 16 threads, with one progress line; destinations are the
    caller's, already checked with `inside`."""
    progress = Progress(what).start(len(jobs))

    def fetch(job: tuple[str, str, Path]) -> None:
        bucket, key, dest = job
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        progress.advance()

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(fetch, jobs))
    progress.finish()
