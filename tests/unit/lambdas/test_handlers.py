"""Each Lambda handler with recorded events (tests/events/) and a fake context; every named error."""

from __future__ import annotations

import base64
import io
import json

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from helpers import load_lambda

serialize = load_lambda("serialize_image_data")
classify = load_lambda("classify_image")
filter_ = load_lambda("filter_inferences")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


@pytest.fixture
def s3(monkeypatch):
    import boto3

    client = boto3.client("s3", region_name="us-east-1")
    monkeypatch.setattr(serialize, "_s3", client)
    with Stubber(client) as stubber:
        yield stubber


@pytest.fixture
def runtime(monkeypatch):
    import boto3

    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    monkeypatch.setattr(classify, "_runtime", client)
    monkeypatch.setenv("ENDPOINT_NAME", "scones-endpoint")
    monkeypatch.setenv("LABELS", "bicycle,motorcycle")
    with Stubber(client) as stubber:
        yield stubber


def test_serialize_reads_the_image(s3, event, context):
    s3.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(PNG), len(PNG)), "ContentLength": len(PNG)},
        {"Bucket": "scones-unlimited", "Key": "data/test/bicycle_s_000513.png"},
    )
    out = serialize.lambda_handler(event("serialize_input"), context)
    assert base64.b64decode(out["image_data"]) == PNG
    assert out["s3_key"] == "data/test/bicycle_s_000513.png"
    assert "statusCode" not in out and "body" not in out  # never the wrapped shape


def test_serialize_accepts_the_starters_wrapped_event(s3, event, context):
    s3.add_response("get_object", {"Body": StreamingBody(io.BytesIO(PNG), len(PNG)), "ContentLength": len(PNG)})
    out = serialize.lambda_handler(event("serialize_input_wrapped"), context)
    assert out["image_data"] and "body" not in out


def test_serialize_missing_object_is_image_not_found(s3, event, context):
    s3.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    with pytest.raises(serialize.ImageNotFoundError, match="does not exist"):
        serialize.lambda_handler(event("serialize_input"), context)


def test_serialize_too_large_image(s3, event, context, monkeypatch):
    monkeypatch.setattr(serialize, "MAX_IMAGE_BYTES", 10)
    s3.add_response("get_object", {"Body": StreamingBody(io.BytesIO(PNG), len(PNG)), "ContentLength": len(PNG)})
    with pytest.raises(serialize.ImageTooLargeError):
        serialize.lambda_handler(event("serialize_input"), context)


@pytest.mark.parametrize("bad", [{}, {"s3_bucket": "b"}, {"s3_bucket": "b", "s3_key": ""}, [1, 2], "not json"])
def test_serialize_invalid_event(bad, context):
    with pytest.raises(serialize.InvalidEventError):
        serialize.lambda_handler(bad, context)


def test_classify_fills_inferences_and_labels(runtime, event, context):
    body = json.dumps([0.97, 0.03]).encode()
    runtime.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
        {"EndpointName": "scones-endpoint", "ContentType": "image/png", "Accept": "application/json", "Body": PNG},
    )
    out = classify.lambda_handler(event("classify_input"), context)
    assert out["inferences"] == [0.97, 0.03] and out["labels"] == ["bicycle", "motorcycle"]
    assert out["image_data"]  # the contract: the same object with its field filled


def test_classify_model_refusal_is_invalid_image(runtime, event, context):
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        http_status_code=424,
        response_meta={},
        modeled_fields={"OriginalStatusCode": 415, "OriginalMessage": "unsupported"},
    )
    with pytest.raises(classify.InvalidImageError):
        classify.lambda_handler(event("classify_input"), context)


def test_classify_model_error_5xx_is_retryable_not_invalid_image(runtime, event, context):
    """A ModelError from the model's own 5xx (a crash, not the image's fault) is worth retrying."""
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        http_status_code=424,
        response_meta={},
        modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": "predict crashed"},
    )
    with pytest.raises(classify.EndpointUnavailableError, match="ModelError"):
        classify.lambda_handler(event("classify_input"), context)


def test_classify_labels_that_do_not_match_the_output_are_not_used(runtime, event, context):
    body = json.dumps([0.2, 0.3, 0.5]).encode()  # three outputs, two LABELS: naming them would mislabel
    runtime.add_response(
        "invoke_endpoint", {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}
    )
    out = classify.lambda_handler(event("classify_input"), context)
    assert out["inferences"] == [0.2, 0.3, 0.5]
    assert out["labels"] == ["class_0", "class_1", "class_2"]


def test_classify_unavailable_endpoint_is_retryable(runtime, event, context):
    runtime.add_client_error("invoke_endpoint", service_error_code="ServiceUnavailable", http_status_code=503)
    with pytest.raises(classify.EndpointUnavailableError):
        classify.lambda_handler(event("classify_input"), context)


def test_classify_unreachable_endpoint_is_retryable(monkeypatch, event, context):
    class Down:
        def invoke_endpoint(self, **kwargs):
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    monkeypatch.setattr(classify, "_runtime", Down())
    monkeypatch.setenv("ENDPOINT_NAME", "scones-endpoint")
    with pytest.raises(classify.EndpointUnavailableError, match="unreachable"):
        classify.lambda_handler(event("classify_input"), context)


def test_classify_bad_image_data(runtime, context):
    with pytest.raises(classify.InvalidEventError, match="not base64"):
        classify.lambda_handler({"s3_key": "k", "image_data": "***"}, context)
    with pytest.raises(classify.InvalidEventError, match="no 'image_data'"):
        classify.lambda_handler({"s3_key": "k"}, context)


def test_filter_passes_a_confident_event(event, context, monkeypatch):
    monkeypatch.delenv("SCONES_THRESHOLD", raising=False)
    monkeypatch.delenv("THRESHOLD", raising=False)
    out = filter_.lambda_handler(event("filter_input_confident"), context)
    assert out == event("filter_input_confident")


def test_filter_fails_loudly_below_threshold(event, context, monkeypatch):
    monkeypatch.delenv("SCONES_THRESHOLD", raising=False)
    monkeypatch.delenv("THRESHOLD", raising=False)
    with pytest.raises(filter_.LowConfidenceError, match=r"motorcycle at 0\.5900 is below the threshold 0\.93"):
        filter_.lambda_handler(event("filter_input_unsure"), context)


def test_filter_threshold_from_environment(event, context, monkeypatch):
    monkeypatch.delenv("THRESHOLD", raising=False)
    monkeypatch.setenv("SCONES_THRESHOLD", "0.5")
    assert filter_.lambda_handler(event("filter_input_unsure"), context)["inferences"] == [0.41, 0.59]
    monkeypatch.setenv("SCONES_THRESHOLD", "high")
    with pytest.raises(filter_.InvalidEventError, match="SCONES_THRESHOLD"):
        filter_.lambda_handler(event("filter_input_unsure"), context)


def test_filter_still_reads_the_old_threshold_name_when_the_new_one_is_unset(event, context, monkeypatch):
    # given: only the deprecated THRESHOLD (a stack deployed by the previous release)
    monkeypatch.delenv("SCONES_THRESHOLD", raising=False)
    monkeypatch.setenv("THRESHOLD", "0.5")
    # then: it is the threshold
    assert filter_.lambda_handler(event("filter_input_unsure"), context)["inferences"] == [0.41, 0.59]
    monkeypatch.setenv("THRESHOLD", "high")
    with pytest.raises(filter_.InvalidEventError, match=r"^THRESHOLD='high'"):
        filter_.lambda_handler(event("filter_input_unsure"), context)
    # and: the new name wins when both are set
    monkeypatch.setenv("SCONES_THRESHOLD", "0.99")
    with pytest.raises(filter_.LowConfidenceError, match=r"below the threshold 0\.99"):
        filter_.lambda_handler(event("filter_input_unsure"), context)


def test_filter_wrapped_event_without_labels(event, context, monkeypatch):
    monkeypatch.setenv("SCONES_THRESHOLD", "0.93")
    assert filter_.lambda_handler(event("filter_input_wrapped_no_labels"), context)["inferences"] == [0.95, 0.05]


@pytest.mark.parametrize("bad", [{"s3_key": "k"}, {"inferences": []}, {"inferences": ["a", "b"]}])
def test_filter_invalid_event(bad, context):
    with pytest.raises(filter_.InvalidEventError):
        filter_.lambda_handler(bad, context)


def test_handlers_import_only_boto3_and_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "scones_event", "__future__"}
    for path in Path(serialize.__file__).parents[1].glob("*/*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            )
            for name in names:
                assert name.split(".")[0] in allowed, f"{path}: imports {name}"
