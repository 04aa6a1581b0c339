"""Classify: send `image_data` to the SageMaker endpoint ENDPOINT_NAME; fill `inferences` (and `labels`).

The endpoint answers a JSON list of probabilities in class order; LABELS (comma-separated, set at deploy
from the model's labels.json) names them. Where the endpoint lives is the environment's business
(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME locally), never this code's.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from scones_event import InvalidEventError, require, unwrap

__all__ = ["EndpointUnavailableError", "InvalidEventError", "InvalidImageError", "lambda_handler"]
_runtime = None


class EndpointUnavailableError(Exception):
    """The endpoint could not be reached or was not ready: transient, Step Functions retries it."""


class InvalidImageError(Exception):
    """The model refused the image (a 4xx from the model): retrying cannot help."""


def runtime():
    global _runtime
    if _runtime is None:
        config = Config(connect_timeout=2, read_timeout=20, retries={"max_attempts": 1})  # Step Functions retries
        _runtime = boto3.client("sagemaker-runtime", config=config)
    return _runtime


def content_type(image: bytes) -> str:
    if image.startswith(b"\x89PNG"):
        return "image/png"
    if image.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return "application/x-image"


def classify(event: dict, endpoint_name: str, labels: list[str]) -> dict:
    encoded = require(event, "image_data", str)
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEventError("event field 'image_data' is not base64") from None
    try:
        response = runtime().invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type(image), Accept="application/json", Body=image
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("OriginalStatusCode") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode"
        )
        if error.get("Code") == "ModelError" and status and int(status) < 500:
            raise InvalidImageError(exc.response.get("OriginalMessage") or str(exc)) from None
        raise EndpointUnavailableError(
            f"endpoint {endpoint_name}: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except BotoCoreError as exc:  # connection refused, timeouts: the endpoint is down or starting
        raise EndpointUnavailableError(f"endpoint {endpoint_name} unreachable: {exc}") from None
    inferences = json.loads(response["Body"].read())
    event["inferences"] = [float(p) for p in inferences]
    event["labels"] = labels if len(labels) == len(inferences) else [f"class_{i}" for i in range(len(inferences))]
    return event


def lambda_handler(event: dict, context: object) -> dict:
    labels = [name for name in os.environ.get("LABELS", "").split(",") if name]
    return classify(unwrap(event), os.environ["ENDPOINT_NAME"], labels)
