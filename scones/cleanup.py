"""`scones clean`: remove what the project created on the current target, and say what was removed.

Local targets: every endpoint this state dir started, the workflow stack, the project's S3 prefixes, then the
local cloud itself. AWS: the stack and the project's S3 prefixes (data, models, deploy, captured inferences);
the bucket too with --delete-bucket. Files on disk are `make clean`'s business.
"""

from __future__ import annotations

from scones.core import settings

PREFIXES = ("data/", "models/", "deploy/", "datacapture/")


def _delete_prefixes(bucket: str, prefixes: tuple[str, ...]) -> int:
    from scones.core import aws

    s3, removed = aws.client("s3"), 0
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                removed += len(keys)
    return removed


def clean(delete_bucket: bool = False) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    from scones import endpoint, localcloud
    from scones.deploy import stack

    done: list[str] = []
    target = settings.target()
    if target != "aws":
        for name in endpoint.recorded_names():
            if endpoint.stop(name, log=lambda _m: None):
                done.append(f"stopped endpoint {name}")
        if target == "local" and not localcloud.status().running:
            done.append("local cloud not running: nothing in it to remove")
            return done
    settings.apply_target_env()
    try:
        if stack.delete(log=lambda _m: None):
            done.append(f"deleted stack {settings.stack_name()}")
        bucket = settings.bucket()
        removed = _delete_prefixes(bucket, PREFIXES)
        done.append(f"deleted {removed} objects under s3://{bucket}/{{{','.join(PREFIXES)}}}")
        if delete_bucket:
            from scones.core import aws

            aws.client("s3").delete_bucket(Bucket=bucket)
            done.append(f"deleted bucket {bucket}")
    except (ClientError, BotoCoreError) as exc:
        done.append(f"cloud cleanup incomplete: {exc}")
    if target == "local":
        localcloud.down(log=lambda _m: None)
        done.append("stopped the local cloud")
    return done
