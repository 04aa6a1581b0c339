"""Handlers the local-cloud tests deploy as a real zip (boto3 and the standard library only)."""

import os
import time

import boto3


class TransientError(Exception):
    """A named error so that Step Functions' ErrorEquals can match it."""


def ok(event, context):
    print("ok handler in", context.function_name)
    return {
        "n": event.get("n", 0) + 1,
        "greeting": os.environ.get("GREETING", ""),
        "items": event.get("items"),
    }


def double(event, context):
    return event * 2


def flaky(event, context):
    raise TransientError(f"transient failure for {event.get('key', '?')}")


def put_s3(event, context):
    boto3.client("s3").put_object(Bucket=event["bucket"], Key=event["key"], Body=event.get("body", "x").encode())
    return {"written": f"s3://{event['bucket']}/{event['key']}"}


def sleepy(event, context):
    started = time.time()
    time.sleep(event.get("sleep", 0))
    return {
        "slept": event.get("sleep", 0),
        "pid": os.getpid(),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "started": started,
        "ended": time.time(),
    }


def passthrough(event, context):
    return event


def transient(event, context):
    """Fail with the error named `event["error"]` (e.g. Lambda.ServiceException) on the first
    `event["fail_times"]` calls for this key, then succeed with inferences. Attempts are counted in S3."""
    s3, bucket, counter = boto3.client("s3"), event["s3_bucket"], f"attempts/{event['s3_key']}"
    try:
        attempts = int(s3.get_object(Bucket=bucket, Key=counter)["Body"].read()) + 1
    except s3.exceptions.NoSuchKey:
        attempts = 1
    s3.put_object(Bucket=bucket, Key=counter, Body=str(attempts).encode())
    if attempts <= event.get("fail_times", 0):
        raise type(event["error"], (Exception,), {})(f"attempt {attempts} failed on purpose")
    return dict(event, inferences=[0.99, 0.01], labels=["bicycle", "motorcycle"], attempts=attempts)


def transient_by_key(event, context):
    """`transient` for a Map item, which carries only s3_bucket and s3_key: the key's file name names the error
    (img/Lambda.ServiceException.png), and the first two calls for that key fail with it."""
    error = event["s3_key"].rsplit("/", 1)[-1].removesuffix(".png")
    return transient(dict(event, error=error, fail_times=2), context)
