"""Production variants in one worker: split by weight, chosen by header, captured apart, shadows mirrored."""

from __future__ import annotations

import json
import random

import pytest
from helpers import app_requests as requests
from helpers import make_brightness_model, make_failing_model, solid_png

from services.endpoint.app import EndpointApp
from services.endpoint.board import Board
from services.endpoint.capture import CaptureWriter, parse_lines
from services.endpoint.variants import Control, Router, Variant, read, write


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("variant-models")
    return {
        "bright": make_brightness_model(root / "bright"),  # 230 → bicycle
        "inverted": make_brightness_model(root / "inverted", sharpness=-30.0),  # 230 → motorcycle
        "failing": make_failing_model(root / "failing"),  # 230 → onnxruntime error
    }


def writers():
    files: dict[str, list] = {}

    def capture_for(variant: str) -> CaptureWriter:
        def put(key: str, body: bytes) -> None:
            files.setdefault(variant, []).append((key, body))

        return CaptureWriter(put, "ep", prefix="capture", variant=variant, percent=100)

    return files, capture_for


def test_the_router_splits_by_weight_and_honours_a_target():
    # given two production variants weighted 3:1 and a shadow
    router = Router(
        [Variant("A", "a", 3.0), Variant("B", "b", 1.0), Variant("S", "s", 0.0, shadow_percent=50)], random.Random(0)
    )
    # when 4,000 requests are routed
    picks = [router.pick() for _ in range(4000)]
    # then about three in four go to A, none to the shadow, and a named variant is always honoured
    assert 0.72 < picks.count("A") / 4000 < 0.78 and "S" not in picks
    assert router.pick("B") == "B"
    for name in ("S", "missing"):  # a shadow cannot be targeted: it answers nobody
        with pytest.raises(KeyError):
            router.pick(name)
    assert 0.45 < sum(bool(router.mirror()) for _ in range(2000)) / 2000 < 0.55


def test_the_router_follows_the_control_file(tmp_path):
    # given a control file with all traffic on A
    path = tmp_path / "control.json"
    write(path, Control([Variant("A", tmp_path, 1.0), Variant("B", tmp_path, 0.0)]))
    router = Router(read(path).variants)
    router.follow(path)
    assert {router.pick() for _ in range(200)} == {"A"}
    # when a rollout moves every request to B
    write(path, Control([Variant("A", tmp_path, 0.0), Variant("B", tmp_path, 1.0)], rollout={"stage": 2}))
    # then the router follows it at once, and the rollout state is kept in the file
    assert router.follow(path)
    assert {router.pick() for _ in range(200)} == {"B"}
    assert read(path).rollout == {"stage": 2}


def test_each_variant_answers_with_its_own_model_names_itself_and_is_captured_apart(models):
    # given an endpoint with two production variants
    files, capture_for = writers()
    variants = [Variant("Blue", models["bright"], 1.0), Variant("Green", models["inverted"], 1.0)]
    app = EndpointApp(models["bright"], "ep", variants=variants, capture_for=capture_for, board=Board(1, 2))
    app._load()
    # when the client names each variant in X-Amzn-SageMaker-Target-Variant
    blue = requests(app, [solid_png(230)], [(b"x-amzn-sagemaker-target-variant", b"Blue")])[0]
    green = requests(app, [solid_png(230)], [(b"x-amzn-sagemaker-target-variant", b"Green")])[0]
    # then each answers with its own model and names itself, as boto3 reads InvokedProductionVariant
    assert blue[0] == green[0] == 200
    assert json.loads(blue[2])[0] > 0.9 and json.loads(green[2])[0] < 0.1
    assert blue[1]["x-amzn-invoked-production-variant"] == "Blue"
    assert green[1]["x-amzn-invoked-production-variant"] == "Green"
    # and each variant's capture goes under its own prefix, as AWS lays it out
    assert {key.split("/")[2] for key, _ in files["Blue"]} == {"Blue"}
    assert {key.split("/")[2] for key, _ in files["Green"]} == {"Green"}
    record = parse_lines(files["Green"][0][1].decode())[0]
    assert record["eventMetadata"]["modelLatencyMs"] >= 0
    # and the stats count each variant
    rows = {row["name"]: row for row in app.stats()["variants"]}
    assert rows["Blue"]["requests"] == rows["Green"]["requests"] == 1


def test_an_unknown_target_variant_is_a_400_naming_the_variants(models):
    app = EndpointApp(models["bright"], "ep")
    app._load()
    status, headers, body = requests(app, [solid_png(230)], [(b"x-amzn-sagemaker-target-variant", b"Nope")])[0]
    assert status == 400 and headers["x-amzn-errortype"] == "ModelError"
    assert b"Nope" in body and b"AllTraffic" in body


def test_a_shadow_sees_mirrored_requests_but_only_production_answers(models):
    # given production and a shadow that fails on bright images, mirrored every request
    files, capture_for = writers()
    variants = [Variant("AllTraffic", models["bright"]), Variant("Shadow", models["inverted"], 0.0, 100.0)]
    app = EndpointApp(models["bright"], "ep", variants=variants, capture_for=capture_for, board=Board(1, 2))
    app._load()
    # when 5 requests arrive
    answers = requests(app, [solid_png(230)] * 5)
    # then every caller got production's answer
    assert [a[0] for a in answers] == [200] * 5
    assert all(json.loads(a[2])[0] > 0.9 and a[1]["x-amzn-invoked-production-variant"] == "AllTraffic" for a in answers)
    # and the shadow answered each one too, captured under its own prefix, never sent
    shadow = [r for _, body in files["Shadow"] for r in parse_lines(body.decode())]
    assert len(shadow) == 5 and all(json.loads(r["captureData"]["endpointOutput"]["data"])[0] < 0.1 for r in shadow)
    assert {row["name"]: row["requests"] for row in app.stats()["variants"]} == {"AllTraffic": 5, "Shadow": 5}


def test_a_shadow_record_carries_its_production_record_s_inference_id(models):
    # given production and a shadow mirrored every request
    files, capture_for = writers()
    variants = [Variant("AllTraffic", models["bright"]), Variant("Shadow", models["inverted"], 0.0, 100.0)]
    app = EndpointApp(models["bright"], "ep", variants=variants, capture_for=capture_for, board=Board(1, 2))
    app._load()
    # when 4 requests arrive, one with the client's InferenceId
    requests(app, [solid_png(230)] * 3)
    requests(app, [solid_png(25)], headers=[(b"x-amzn-sagemaker-inference-id", b"client-42")])
    # then each production record and its shadow's share one inferenceId (the pairing key), the client's kept
    ids = {
        variant: [r["eventMetadata"]["inferenceId"] for _, body in files[variant] for r in parse_lines(body.decode())]
        for variant in ("AllTraffic", "Shadow")
    }
    assert len(set(ids["AllTraffic"])) == 4 and sorted(ids["AllTraffic"]) == sorted(ids["Shadow"])
    assert "client-42" in ids["Shadow"]


def test_a_failing_shadow_never_fails_a_caller(models):
    variants = [Variant("AllTraffic", models["bright"]), Variant("Shadow", models["failing"], 0.0, 100.0)]
    app = EndpointApp(models["bright"], "ep", variants=variants, board=Board(1, 2))
    app._load()
    answers = requests(app, [solid_png(230)] * 3)
    assert [a[0] for a in answers] == [200] * 3
    rows = {row["name"]: row for row in app.stats()["variants"]}
    assert rows["Shadow"]["errors5xx"] == 3 and rows["AllTraffic"]["errors5xx"] == 0


def test_metrics_are_put_per_variant_as_sagemaker_names_them(models):
    # given a variant that failed once and answered twice
    put: list[dict] = []
    variants = [Variant("AllTraffic", models["failing"])]
    app = EndpointApp(models["failing"], "ep", variants=variants, put_metrics=put.extend, metrics_period_s=1)
    app._load()
    statuses = [a[0] for a in requests(app, [solid_png(230), solid_png(25), solid_png(25)])]
    assert statuses == [500, 200, 200]
    # when its metrics are put
    app._put_metrics()
    # then the invocations, the 5xx and the latencies are there with SageMaker's names and dimensions
    by_name = {d["MetricName"]: d for d in put}
    assert by_name["Invocations"]["Value"] == 3 and by_name["Invocation5XXErrors"]["Value"] == 1
    assert by_name["Invocation4XXErrors"]["Value"] == 0
    assert sum(by_name["ModelLatency"]["Counts"]) == 2 and by_name["ModelLatency"]["Unit"] == "Microseconds"
    assert {d["Value"] for d in by_name["Invocations"]["Dimensions"]} == {"ep", "AllTraffic"}
    # and a period without requests puts nothing
    put.clear()
    app._put_metrics()
    assert put == []
