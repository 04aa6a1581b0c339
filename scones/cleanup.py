"""`scones clean`: remove what the project created on a target, and say what was removed.

The local targets (the embedded cloud and LocalStack): every endpoint this state dir started, the workflow stack,
the objects under the project's S3 prefixes (scones.storage), the bucket too with --delete-bucket, then the local
cloud itself. `--target aws` is scones.deploy.aws_clean's, which lists what it will delete first. Files on disk are
`make clean`'s business.
"""

from __future__ import annotations

from scones import endpoint, localcloud, stacks, storage
from scones.core import aws, settings
from scones.core.target import Target


def clean(target: Target, delete_bucket: bool = False) -> list[str]:
    """Remove the project's resources on `target`; returns one line per thing done."""
    from botocore.exceptions import BotoCoreError, ClientError

    done: list[str] = []
    for name in endpoint.recorded_names():
        if endpoint.stop(name, log=lambda _m: None):
            done.append(f"stopped endpoint {name}")
    if target.name == "local" and not localcloud.status().running:
        done.append("local cloud not running: nothing in it to remove")
        return done
    try:
        if stacks.delete(log=lambda _m: None):
            done.append(f"deleted stack {settings.stack_name()}")
        bucket = settings.bucket()
        wanted = storage.project_prefixes()
        removed = storage.delete_prefixes(bucket, wanted)
        done.append(f"deleted {removed} objects under s3://{bucket}/{{{','.join(wanted)}}}")
        if delete_bucket:
            aws.client("s3").delete_bucket(Bucket=bucket)
            done.append(f"deleted bucket {bucket}")
    except (ClientError, BotoCoreError) as exc:
        done.append(f"cloud cleanup incomplete: {exc}")
    if target.name == "local":
        localcloud.down(log=lambda _m: None)
        done.append("stopped the local cloud")
    return done
