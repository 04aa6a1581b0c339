"""Serialize: read the image at s3://{s3_bucket}/{s3_key} and put it, base64-encoded, into `image_data`."""

from __future__ import annotations

import base64
import os

import boto3
from botocore.exceptions import ClientError
from scones_event import InvalidEventError, require, unwrap

# Step Functions caps a state's payload at 256 KiB; base64 grows bytes by 4/3.
MAX_IMAGE_BYTES = int(os.environ.get("MAX_IMAGE_BYTES", str(180 * 1024)))
_s3 = None

__all__ = ["ImageNotFoundError", "ImageTooLargeError", "InvalidEventError", "lambda_handler"]


class ImageNotFoundError(Exception):
    """No object at the given bucket and key."""


class ImageTooLargeError(Exception):
    """The image would not fit in a Step Functions payload."""


def s3():
    global _s3
    if _s3 is None:  # created once per warm container
        _s3 = boto3.client("s3")
    return _s3


def serialize(event: dict) -> dict:
    bucket = require(event, "s3_bucket", str)
    key = require(event, "s3_key", str)
    try:
        obj = s3().get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
            raise ImageNotFoundError(f"s3://{bucket}/{key} does not exist ({code})") from None
        raise
    if obj.get("ContentLength", 0) > MAX_IMAGE_BYTES:
        raise ImageTooLargeError(f"s3://{bucket}/{key} is {obj['ContentLength']} bytes; the limit is {MAX_IMAGE_BYTES}")
    event["image_data"] = base64.b64encode(obj["Body"].read()).decode()
    return event


def lambda_handler(event: dict, context: object) -> dict:
    return serialize(unwrap(event))
