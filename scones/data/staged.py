"""What `scones stage` left in S3, read back: the test images and the channels a job downloads.

Train, evaluate and the monitor's baseline download the same channels; load, invoke and the benches pick
from the same test images. A key that would land outside the destination folder is refused, never written.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scones.core import aws
from scones.core.errors import NotReadyError, UsageError
from scones.core.progress import Progress


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
    progress = Progress(f"downloading channels from s3://{bucket}/{prefix}/").start(len(jobs))

    def fetch(job: tuple[str, Path]) -> None:
        key, dest = job
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        progress.advance()

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(fetch, jobs))
    progress.finish()
    return channels
