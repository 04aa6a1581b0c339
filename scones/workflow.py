"""Run the deployed workflow and read it back: start executions and wait for them, their result rows and alerts,
and the result table. `scones graph` draws them; `scones invoke` starts them."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass
class Row:
    key: str
    status: str  # as Step Functions names it: SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    label: str = ""
    confidence: float | None = None
    error: str = ""
    cause: str = ""
    alerted: bool = False
    execution: str = ""


def wait(sfn, arn: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {arn} still RUNNING after {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def history(sfn, arn: str) -> list[dict]:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return [event for page in pages for event in page["events"]]


def best(inferences: list[float], labels: list[str]) -> tuple[str, float]:
    best = max(range(len(inferences)), key=inferences.__getitem__)
    label = labels[best] if best < len(labels) else f"class_{best}"
    return label, float(inferences[best])


def _inferences_from_history(events: list[dict]) -> tuple[list[float], list[str]] | None:
    """The classify step's output, found in a successful lambda task's result (for failed executions)."""
    for event in reversed(events):
        details = event.get("taskSucceededEventDetails") or event.get("lambdaFunctionSucceededEventDetails")
        if not details or "output" not in details:
            continue
        try:
            output = json.loads(details["output"])
        except ValueError:
            continue
        payload = output.get("Payload", output) if isinstance(output, dict) else None
        if isinstance(payload, dict) and payload.get("inferences"):
            return payload["inferences"], payload.get("labels") or []
    return None


@dataclass
class Alert:
    """An SNS publish that succeeded, as the execution history records it."""

    message_id: str
    s3_key: str | None  # from the published message
    item: int | None  # the Map iteration that sent it (None outside a Map)


def alerts_sent(events: list[dict]) -> list[Alert]:
    """Every sns:publish task that succeeded, traced back through previousEventId to the message it sent
    and, inside a Map, to the iteration (item index) that sent it: the alert column is observed, not inferred."""
    by_id = {e["id"]: e for e in events}
    found = []
    for event in events:
        details = event.get("taskSucceededEventDetails") or {}
        if event["type"] != "TaskSucceeded" or details.get("resourceType") != "sns":
            continue
        try:
            message_id = json.loads(details.get("output") or "{}").get("MessageId", "")
        except ValueError:
            message_id = ""
        key, item, previous, seen = None, None, event.get("previousEventId"), set()
        while previous and previous in by_id and previous not in seen:
            seen.add(previous)
            before = by_id[previous]
            scheduled = before.get("taskScheduledEventDetails") or {}
            if key is None and before["type"] == "TaskScheduled" and scheduled.get("resourceType") == "sns":
                key = _alert_key(scheduled.get("parameters", ""))
            if before["type"] == "MapIterationStarted":
                item = before["mapIterationStartedEventDetails"]["index"]
                break
            previous = before.get("previousEventId")
        found.append(Alert(message_id, key, item))
    return found


def _alert_key(parameters: str) -> str | None:
    """The S3 key an alert names: the batch's item alert is the item; the single alert carries the input."""
    try:
        message = json.loads(json.loads(parameters).get("Message", ""))
    except (ValueError, TypeError, AttributeError):
        return None
    if not isinstance(message, dict):
        return None
    nested = message.get("input") if isinstance(message.get("input"), dict) else {}
    return message.get("s3_key") or nested.get("s3_key")


def row_for_execution(sfn, described: dict, key: str) -> Row:
    row = Row(key, described["status"], execution=described["executionArn"])
    if described["status"] == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        if output.get("inferences"):
            row.label, row.confidence = best(output["inferences"], output.get("labels") or [])
        return row
    row.error, row.cause = described.get("error", ""), described.get("cause", "")
    events = history(sfn, described["executionArn"])
    found = _inferences_from_history(events)
    if found:
        row.label, row.confidence = best(*found)
    row.alerted = bool(alerts_sent(events))
    return row


def run_single(sfn, machine_arn: str, bucket: str, keys: list[str], concurrency: int = 8) -> list[Row]:
    """One execution of the single-image machine per key, `concurrency` at a time."""

    def one(key: str) -> Row:
        name = f"scones-{uuid.uuid4().hex[:12]}"
        arn = sfn.start_execution(
            stateMachineArn=machine_arn, name=name, input=json.dumps({"s3_bucket": bucket, "s3_key": key})
        )["executionArn"]
        return row_for_execution(sfn, wait(sfn, arn), key)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, keys))


def run_sync(sfn, machine_arn: str, bucket: str, keys: list[str], concurrency: int = 8) -> list[Row]:
    """One StartSyncExecution of the (Express) single-image machine per key, `concurrency` at a time: each answers
    with its outcome, no polling. Raises the client's StateMachineTypeNotSupported on a Standard machine."""

    def one(key: str) -> Row:
        answer = sfn.start_sync_execution(
            stateMachineArn=machine_arn,
            name=f"scones-{uuid.uuid4().hex[:12]}",
            input=json.dumps({"s3_bucket": bucket, "s3_key": key}),
        )
        return row_for_sync(answer, key)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, keys))


def row_for_sync(answer: dict, key: str) -> Row:
    """A row from StartSyncExecution's answer. An Express execution has no history to read, so the alert column
    follows from classify_image.asl.json's shape: every Lambda step catches into Alert (sns:publish), and only a
    published alert leads on to the Fail state that ends the execution with the step's error; a publish that
    itself failed ends it with the SNS task's error (`SNS.*`) instead."""
    row = Row(key, answer["status"], execution=answer["executionArn"])
    if answer["status"] == "SUCCEEDED":
        output = json.loads(answer.get("output") or "{}")
        if output.get("inferences"):
            row.label, row.confidence = best(output["inferences"], output.get("labels") or [])
        return row
    row.error, row.cause = answer.get("error", ""), answer.get("cause", "")
    row.alerted = row.status == "FAILED" and bool(row.error) and not row.error.startswith("SNS.")
    if row.error == "LowConfidenceError":  # no history to read the inferences from: the error names the best class
        found = LOW_CONFIDENCE.search(readable_cause(row.cause))
        if found:
            confidence, limit = float(found["confidence"]), float(found["threshold"])
            # printed to four decimals: one just under the threshold may print as the threshold; it was below it
            row.label, row.confidence = found["label"], min(confidence, math.nextafter(limit, 0.0))
    return row


# lambdas/filter_inferences' LowConfidenceError message: "best class motorcycle at 0.5900 is below the threshold 0.93
# for img/x.png"
LOW_CONFIDENCE = re.compile(
    r"best class (?P<label>\S+) at (?P<confidence>\d+(?:\.\d+)?) is below the threshold (?P<threshold>\d+(?:\.\d+)?)"
)


def run_batch(sfn, machine_arn: str, bucket: str, keys: list[str]) -> tuple[dict, list[Row]]:
    """One execution of the Map machine over all keys; a row per item from its summary."""
    name = f"scones-batch-{uuid.uuid4().hex[:12]}"
    arn = sfn.start_execution(
        stateMachineArn=machine_arn, name=name, input=json.dumps({"s3_bucket": bucket, "keys": keys})
    )["executionArn"]
    described = wait(sfn, arn)
    return described, batch_rows(sfn, described, keys)


def batch_rows(sfn, described: dict, keys: list[str]) -> list[Row]:
    """A row per item of a finished Map execution, its alert column read from the history."""
    arn = described["executionArn"]
    if described["status"] != "SUCCEEDED":
        return [
            Row(
                k,
                described["status"],
                error=described.get("error", ""),
                cause=described.get("cause", ""),
                execution=arn,
            )
            for k in keys
        ]
    output = json.loads(described["output"])
    alerted = {a.item for a in alerts_sent(history(sfn, arn)) if a.item is not None}
    rows = []
    for index, item in enumerate(output["results"]):  # results are in input order, like the iterations
        row = Row(
            item["s3_key"],
            item["status"],
            error=item.get("error", ""),
            cause=item.get("cause", ""),
            alerted=index in alerted,
            execution=arn,
        )
        if item.get("inferences"):
            row.label, row.confidence = best(item["inferences"], item.get("labels") or [])
        rows.append(row)
    return rows


def readable_cause(cause: str) -> str:
    """A Lambda error's cause is its JSON error object: show the message."""
    try:
        parsed = json.loads(cause)
    except (ValueError, TypeError):
        return cause
    return parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause


def table(rows: list[Row]) -> str:
    width = max([len(r.key) for r in rows] + [3])
    lines = [f"{'key':<{width}}  {'class':<12} {'confidence':>10}  {'status':<9}  error"]
    for r in rows:
        confidence = f"{r.confidence:.4f}" if r.confidence is not None else "-"
        error = f"{r.error}: {readable_cause(r.cause)[:100]}" if r.error else ""
        if r.alerted:
            error += "  [SNS alert sent]"
        lines.append(f"{r.key:<{width}}  {r.label or '-':<12} {confidence:>10}  {r.status:<9}  {error}")
    succeeded = sum(r.status == "SUCCEEDED" for r in rows)
    lines.append(f"total {len(rows)}: {succeeded} SUCCEEDED, {len(rows) - succeeded} FAILED")
    for error in sorted({r.error for r in rows if r.error}):
        lines.append(f"  {error}: {NEXT_STEPS.get(error, 'see the execution with: scones graph --status FAILED')}")
    return "\n".join(lines)


# What to do about each named error of the workflow (lambdas/*: the classes Step Functions matches).
NEXT_STEPS = {
    "LowConfidenceError": "below the threshold, as images of neither class should be; "
    "scones deploy --threshold T changes the threshold",
    "ImageNotFoundError": "no such object in the bucket; scones invoke --batch N picks staged images",
    "ImageTooLargeError": "the image exceeds the workflow's payload limit; send a smaller image",
    "InvalidImageError": "the object is not a PNG or JPEG image",
    "EndpointUnavailableError": "the endpoint did not answer (retried); run scones endpoint status, then scones deploy",
    "InvalidEventError": "the execution input lacks s3_bucket/s3_key; start it with scones invoke",
    "States.Timeout": "a step ran out of time; scones status, then retry",
}
