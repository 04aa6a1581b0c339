"""Classify a batch of S3 keys (a Distributed Map child, statemachine/classify_prefix.asl.json): read every image,
classify them all with ONE invoke_endpoint call (the endpoint's batch body: a JSON list of base64 images), then
judge each against the threshold. Image bytes never leave this function: Step Functions caps a state's payload
at 256 KiB, and a batch of 100 images would pass it.

Input (ItemBatcher's): {"Items": [{"Key": str, "Size": int, ...}, ...], "BatchInput": {"s3_bucket": str}}
Output: {"s3_bucket", "results": [{"s3_key", "status", "label", "confidence", "inferences", "error", "cause"}],
         "counts": {status: n}, "alerts": [s3_key, ...]}
status: SUCCEEDED | FAILED (error names why: LowConfidenceError, ImageNotFoundError, ImageTooLargeError,
InvalidImageError) | SKIPPED (not an image: counted, never a failed batch). A batch fails as a whole only when the
endpoint is unavailable (EndpointUnavailableError: Step Functions retries it, then the Map counts the child failed).
"""

from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from scones_event import InvalidEventError, require, unwrap

__all__ = ["EndpointUnavailableError", "InvalidEventError", "lambda_handler"]
# scones.core.settings' names and defaults (this file cannot import it); tests check that they agree.
THRESHOLD, DEFAULT_THRESHOLD = "SCONES_THRESHOLD", 0.93
MAX_IMAGE_BYTES = 180 * 1024  # as serialize_image_data's: one image the single workflow could carry
MAX_BODY_BYTES = 5 * 1024 * 1024  # a request body under the endpoint's 6 MB (SCONES_MAX_PAYLOAD_MB) with room to spare
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
MAGIC = (b"\x89PNG", b"\xff\xd8", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")  # + RIFF....WEBP below
_clients: dict[str, object] = {}


class EndpointUnavailableError(Exception):
    """The endpoint could not be reached or failed on its side: transient, Step Functions retries the batch."""


def client(service: str):
    if service not in _clients:  # created once per warm container
        config = Config(connect_timeout=2, read_timeout=60, retries={"max_attempts": 1}, max_pool_connections=16)
        _clients[service] = boto3.client(service, config=config)
    return _clients[service]


def threshold() -> float:
    raw = os.environ.get(THRESHOLD, "")
    try:
        value = float(raw) if raw else DEFAULT_THRESHOLD
    except ValueError:
        raise InvalidEventError(f"{THRESHOLD}={raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise InvalidEventError(f"{THRESHOLD}={value} is outside 0..1")
    return value


def is_image(data: bytes) -> bool:
    return data.startswith(MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def outcome(key: str, status: str, error: str = "", cause: str = "", **fields) -> dict:
    return {"s3_key": key, "status": status, "error": error, "cause": cause, **fields}


def read(bucket: str, item: dict) -> tuple[str, bytes | None, dict | None]:
    """(key, image bytes, None), or (key, None, the outcome that ends this key here)."""
    key = item.get("Key", "") if isinstance(item, dict) else str(item)
    if not key or key.endswith("/") or not key.lower().endswith(IMAGE_SUFFIXES):
        return key, None, outcome(key, "SKIPPED", cause="not an image file name")
    if isinstance(item, dict) and item.get("Size", 1) > MAX_IMAGE_BYTES:
        return (
            key,
            None,
            outcome(key, "FAILED", "ImageTooLargeError", f"{item['Size']} bytes; the limit is {MAX_IMAGE_BYTES}"),
        )
    try:
        data = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return key, None, outcome(key, "FAILED", "ImageNotFoundError", f"s3://{bucket}/{key} does not exist")
        raise  # AccessDenied, NoSuchBucket: the whole batch cannot be read, and says so
    if len(data) > MAX_IMAGE_BYTES:
        return (
            key,
            None,
            outcome(key, "FAILED", "ImageTooLargeError", f"{len(data)} bytes; the limit is {MAX_IMAGE_BYTES}"),
        )
    if not is_image(data):
        return (
            key,
            None,
            outcome(key, "SKIPPED", cause="not an image (its bytes are no PNG, JPEG, GIF, BMP, WebP, TIFF)"),
        )
    return key, data, None


def chunks(images: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    """One chunk (one endpoint call) unless the bodies would pass the endpoint's payload limit."""
    out, size = [[]], 0
    for key, data in images:
        encoded = (len(data) + 2) // 3 * 4 + 4
        if out[-1] and size + encoded > MAX_BODY_BYTES:
            out.append([])
            size = 0
        out[-1].append((key, data))
        size += encoded
    return [c for c in out if c]


def invoke(endpoint_name: str, chunk: list[tuple[str, bytes]]) -> list[list[float]] | str:
    """The endpoint's answer for a chunk (a list per image), or the model's message when it refused the chunk."""
    body = json.dumps([base64.b64encode(data).decode() for _, data in chunk]).encode()
    try:
        response = client("sagemaker-runtime").invoke_endpoint(
            EndpointName=endpoint_name, ContentType="application/json", Accept="application/json", Body=body
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("OriginalStatusCode") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode"
        )
        if error.get("Code") == "ModelError" and status and int(status) < 500:
            return exc.response.get("OriginalMessage") or str(exc)
        raise EndpointUnavailableError(
            f"endpoint {endpoint_name}: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except BotoCoreError as exc:
        raise EndpointUnavailableError(f"endpoint {endpoint_name} unreachable: {exc}") from None
    rows = json.loads(response["Body"].read())
    if not isinstance(rows, list) or len(rows) != len(chunk) or not all(isinstance(r, list) for r in rows):
        raise EndpointUnavailableError(f"endpoint {endpoint_name} answered {len(rows)} rows for {len(chunk)} images")
    return rows


def judge(key: str, inferences: list[float], labels: list[str], limit: float) -> dict:
    names = labels if len(labels) == len(inferences) else [f"class_{i}" for i in range(len(inferences))]
    best = max(range(len(inferences)), key=inferences.__getitem__)
    found = {"label": names[best], "confidence": float(inferences[best]), "inferences": [float(p) for p in inferences]}
    if inferences[best] < limit:
        cause = f"best class {names[best]} at {inferences[best]:.4f} is below the threshold {limit} for {key}"
        return outcome(key, "FAILED", "LowConfidenceError", cause, **found)
    return outcome(key, "SUCCEEDED", **found)


def classify_batch(event: dict, endpoint_name: str, labels: list[str], limit: float) -> dict:
    batch_input = event.get("BatchInput") if isinstance(event.get("BatchInput"), dict) else {}
    bucket = require({**event, **batch_input}, "s3_bucket", str)
    items = require(event, "Items", list)
    with ThreadPoolExecutor(max_workers=8) as pool:
        read_all = list(pool.map(lambda item: read(bucket, item), items))
    results: dict[int, dict] = {i: done for i, (_, _, done) in enumerate(read_all) if done is not None}
    images = [(i, data) for i, (_, data, done) in enumerate(read_all) if done is None]
    for chunk in chunks([(str(i), data) for i, data in images]):
        answer = invoke(endpoint_name, chunk)
        for n, (index, _) in enumerate(chunk):
            key = read_all[int(index)][0]
            if isinstance(answer, str):
                results[int(index)] = outcome(key, "FAILED", "InvalidImageError", answer)
            else:
                results[int(index)] = judge(key, answer[n], labels, limit)
    ordered = [results[i] for i in range(len(items))]
    counts: dict[str, int] = {}
    for r in ordered:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    alerts = [r["s3_key"] for r in ordered if r["status"] == "FAILED"]
    return {"s3_bucket": bucket, "results": ordered, "counts": counts, "alerts": alerts}


def lambda_handler(event: dict, context: object) -> dict:
    labels = [name for name in os.environ.get("LABELS", "").split(",") if name]
    return classify_batch(unwrap(event), os.environ["ENDPOINT_NAME"], labels, threshold())
