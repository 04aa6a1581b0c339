"""The project's S3 prefixes, and deleting under them: `scones clean` and `scones clean --target aws
--purge-data` both ask here, so the two never disagree about what is the project's."""

from __future__ import annotations

from scones.core import aws, settings
from scones.core.errors import UsageError


def project_prefixes(data: str | None = None, capture: str | None = None) -> tuple[str, ...]:
    """Staged data, trained models (with their monitoring baselines), Lambda/ASL artifacts, captured
    inferences, the AWS monitoring reports and the backfills' results; `data` and `capture` default to the settings."""
    own = (
        data if data is not None else settings.prefix(),
        settings.MODELS_PREFIX,
        settings.DEPLOY_PREFIX,
        capture if capture is not None else settings.capture_prefix(),
        settings.MONITORING_PREFIX,
        settings.BACKFILL_PREFIX,
    )
    return tuple(f"{p.strip('/')}/" for p in own)


def delete_prefixes(bucket: str, wanted: tuple[str, ...]) -> int:
    """Delete every object under each prefix; returns how many. A bare `/` or empty prefix is refused."""
    for prefix in wanted:
        if not prefix.strip("/") or ".." in prefix.split("/"):
            raise UsageError(f"refusing to delete under the prefix {prefix!r}: it is not one of the project's")
    s3, removed = aws.client("s3"), 0
    for prefix in wanted:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                removed += len(keys)
    return removed
