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
    time.sleep(event.get("sleep", 0))
    return {
        "slept": event.get("sleep", 0),
        "pid": os.getpid(),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
