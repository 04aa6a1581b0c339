"""The batch Lambda (a Distributed Map child): reads a batch of keys, ONE endpoint call, a verdict per image."""

from __future__ import annotations

import base64
import io
import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from helpers import load_lambda

batch = load_lambda("classify_batch")
filter_ = load_lambda("filter_inferences")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}


class FakeRuntime:
    """Answers each image of a batch body by its first pixel byte's parity, and records every call."""

    def __init__(self, answer=None, error: Exception | None = None) -> None:
        self.calls: list[dict] = []
        self.answer, self.error = answer, error

    def invoke_endpoint(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        images = json.loads(kwargs["Body"])
        rows = self.answer(images) if self.answer else [[0.99, 0.01] for _ in images]
        return {"Body": io.BytesIO(json.dumps(rows).encode())}


@pytest.fixture
def clouds(monkeypatch):
    def install(objects: dict[str, bytes], runtime: FakeRuntime | None = None) -> FakeRuntime:
        runtime = runtime or FakeRuntime()
        monkeypatch.setattr(batch, "_clients", {"s3": FakeS3(objects), "sagemaker-runtime": runtime})
        return runtime

    monkeypatch.setenv("ENDPOINT_NAME", "scones-endpoint")
    monkeypatch.setenv("LABELS", "bicycle,motorcycle")
    monkeypatch.delenv(batch.THRESHOLD, raising=False)
    return install


def event(*keys: str) -> dict:
    return {"Items": [{"Key": k, "Size": 70} for k in keys], "BatchInput": {"s3_bucket": "b"}}


def test_a_batch_is_classified_with_one_endpoint_call_and_judged_per_image(clouds, context):
    # given five images, the second answered below the threshold
    keys = [f"img/{i}.png" for i in range(5)]
    runtime = clouds(
        {k: PNG for k in keys},
        FakeRuntime(lambda images: [[0.5, 0.5] if i == 1 else [0.02, 0.98] for i in range(len(images))]),
    )
    # when the child classifies the batch
    out = batch.lambda_handler(event(*keys), context)
    # then ONE invoke_endpoint carried all five as a JSON batch body
    assert len(runtime.calls) == 1 and runtime.calls[0]["ContentType"] == "application/json"
    assert [base64.b64decode(i) for i in json.loads(runtime.calls[0]["Body"])] == [PNG] * 5
    # and each image has its verdict, in order, no image bytes in the output
    assert [r["s3_key"] for r in out["results"]] == keys
    assert [r["status"] for r in out["results"]] == ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    assert out["results"][0]["label"] == "motorcycle" and out["results"][0]["confidence"] == 0.98
    assert out["results"][1]["error"] == "LowConfidenceError" and out["alerts"] == ["img/1.png"]
    assert out["counts"] == {"SUCCEEDED": 4, "FAILED": 1}
    assert "image_data" not in json.dumps(out) and len(json.dumps(out)) < 5000


def test_non_images_are_skipped_and_counted_never_a_failed_batch(clouds, context):
    # given a prefix listing with a folder marker, a text file, and a .png whose bytes are no image
    objects = {"p/a.png": PNG, "p/notes.txt": b"hello", "p/fake.png": b"just text", "p/": b""}
    runtime = clouds(objects)
    out = batch.lambda_handler(event("p/a.png", "p/notes.txt", "p/fake.png", "p/"), context)
    # then only the real image went to the endpoint; the others are SKIPPED with a reason
    assert [r["status"] for r in out["results"]] == ["SUCCEEDED", "SKIPPED", "SKIPPED", "SKIPPED"]
    assert len(json.loads(runtime.calls[0]["Body"])) == 1
    assert out["counts"] == {"SUCCEEDED": 1, "SKIPPED": 3} and out["alerts"] == []


def test_a_batch_of_nothing_but_non_images_calls_no_endpoint(clouds, context):
    runtime = clouds({"p/a.txt": b"x"})
    out = batch.lambda_handler(event("p/a.txt"), context)
    assert runtime.calls == [] and out["counts"] == {"SKIPPED": 1}


def test_a_key_gone_since_the_listing_or_too_large_fails_alone(clouds, context):
    clouds({"p/a.png": PNG, "p/big.png": PNG + b"\0" * (batch.MAX_IMAGE_BYTES)})
    out = batch.lambda_handler(event("p/a.png", "p/gone.png", "p/big.png"), context)
    assert [(r["status"], r["error"]) for r in out["results"]] == [
        ("SUCCEEDED", ""),
        ("FAILED", "ImageNotFoundError"),
        ("FAILED", "ImageTooLargeError"),
    ]


def test_a_batch_over_the_payload_limit_is_split_into_calls_under_it(clouds, context, monkeypatch):
    monkeypatch.setattr(batch, "MAX_BODY_BYTES", 250)  # two 70-byte PNGs (96 base64 characters each) per call
    keys = [f"p/{i}.png" for i in range(5)]
    runtime = clouds({k: PNG for k in keys})
    out = batch.lambda_handler(event(*keys), context)
    assert [len(json.loads(c["Body"])) for c in runtime.calls] == [2, 2, 1]
    assert out["counts"] == {"SUCCEEDED": 5}


def test_an_unavailable_endpoint_fails_the_batch_for_step_functions_to_retry(clouds, context):
    clouds({"p/a.png": PNG}, FakeRuntime(error=EndpointConnectionError(endpoint_url="http://127.0.0.1:1")))
    with pytest.raises(batch.EndpointUnavailableError, match="unreachable"):
        batch.lambda_handler(event("p/a.png"), context)


def test_a_model_refusing_the_batch_fails_its_images_not_the_batch(clouds, context):
    error = ClientError(
        {"Error": {"Code": "ModelError", "Message": "x"}, "OriginalStatusCode": 400, "OriginalMessage": "image 0: bad"},
        "InvokeEndpoint",
    )
    clouds({"p/a.png": PNG}, FakeRuntime(error=error))
    out = batch.lambda_handler(event("p/a.png"), context)
    assert out["results"][0]["error"] == "InvalidImageError" and "image 0: bad" in out["results"][0]["cause"]


def test_the_threshold_is_the_filter_lambdas_setting(clouds, context, monkeypatch):
    # one name and default with the filter Lambda (and scones.core.settings)
    from scones.core import settings

    assert batch.THRESHOLD == filter_.THRESHOLD == settings.THRESHOLD
    assert batch.DEFAULT_THRESHOLD == filter_.DEFAULT_THRESHOLD
    monkeypatch.setenv(batch.THRESHOLD, "0.999")
    clouds({"p/a.png": PNG})
    assert batch.lambda_handler(event("p/a.png"), context)["results"][0]["error"] == "LowConfidenceError"
    monkeypatch.setenv(batch.THRESHOLD, "2")
    with pytest.raises(batch.InvalidEventError, match=r"outside 0\.\.1"):
        batch.lambda_handler(event("p/a.png"), context)


def test_an_event_without_items_or_bucket_is_an_invalid_event(clouds, context):
    clouds({})
    with pytest.raises(batch.InvalidEventError, match="Items"):
        batch.lambda_handler({"BatchInput": {"s3_bucket": "b"}}, context)
    with pytest.raises(batch.InvalidEventError, match="s3_bucket"):
        batch.lambda_handler({"Items": [{"Key": "a.png"}]}, context)
