"""A held-out outlier, as staging writes it, runs through the deployed workflow and fails loudly.

Why a model with known answers rather than a trained one: a model small enough to train inside a test is
not reliably confident on bicycles nor reliably unsure on outliers (measured: a 10-epoch run on 200 images
let 30 % of noise through, flat colours peaked at 0.87), so the outcome would hinge on training luck.
Whether outlier exposure makes a real model unsure is measured by bench/bench_outliers.py and checked on a
toy task in tests/unit/training/test_train.py. This test checks the other half: the staged held-out
outliers (the `outliers_test` channel's flat colours, and the issue's 1×1 red pixel) reach the endpoint
through the workflow, and an unsure answer to them is a FAILED execution with LowConfidenceError and an
alert, while a structured image the same model is sure of SUCCEEDS. The model answers as an
outlier-exposed one does on featureless input: confidence grows with the image's structure (pixel
spread within each channel), so a flat image of any colour gets [0.5, 0.5].
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import deployment_env, environ, subscribe_queue
from PIL import Image

from scones import cli, endpoint, stacks, workflow
from scones.core import aws, settings
from scones.data import lst, staging

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_structure_model(model_dir):
    """Bright structured images -> 'bicycle', dark structured ones -> 'motorcycle', featureless ones -> 50/50."""
    import torch

    from training.train import export_onnx

    class Structure(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=(1, 2, 3)).unsqueeze(1)
            spatial = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2).mean(dim=(1, 2, 3))  # 0 for any flat colour
            spread = spatial.sqrt().unsqueeze(1)
            logit = 30.0 * torch.clamp(10.0 * spread, max=1.0) * (mean - 0.5)
            return torch.softmax(torch.cat([logit, torch.zeros_like(logit)], dim=1), dim=1)

    model_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(Structure(), model_dir / "model.onnx")
    (model_dir / "labels.json").write_text(json.dumps(["bicycle", "motorcycle"]))
    pre = {"input_size": [32, 32], "layout": "NCHW", "channel_order": "RGB", "scale": 1 / 255}
    (model_dir / "config.json").write_text(json.dumps({"preprocessing": {**pre, "mean": [0] * 3, "std": [1] * 3}}))
    return model_dir


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deployed(local_cloud, tmp_path_factory):
    suffix, env = deployment_env("wfo")
    with environ(env):
        root = tmp_path_factory.mktemp("outliers")
        source = staging.resolve_source("synthetic", ["bicycle", "motorcycle"], 0, 4, 6, cache_dir=root / "cache")
        manifest = staging.build(source, ["bicycle", "motorcycle"], root / "staged")
        held_out = manifest["outliers"]["test"]
        flat = held_out["kinds"].index("flat")
        keys = {"flat": []}
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=env[settings.BUCKET])
        for row in lst.read(root / "staged" / "outliers_test.lst"):
            if row.label == flat:  # every staged held-out flat image, none picked out
                key = f"outliers_test/{row.path}"
                s3.put_object(Bucket=env[settings.BUCKET], Key=key, Body=(root / "staged" / key).read_bytes())
                keys["flat"].append(key)
        s3.put_object(Bucket=env[settings.BUCKET], Key="img/red-1x1.png", Body=png(np.array([[[255, 0, 0]]])))
        checker = np.where((np.indices((32, 32)).sum(0) // 4) % 2 == 0, 255, 170)[..., None].repeat(3, 2)
        s3.put_object(Bucket=env[settings.BUCKET], Key="img/bright-checker.png", Body=png(checker))
        model = make_structure_model(root / "model")
        assert cli.main(["deploy", "--target", "local", "--model", str(model)]) == 0
        outputs = stacks.outputs(env[settings.STACK_NAME])
        queue = subscribe_queue(outputs["AlertTopicArn"], f"alerts-o{suffix}")
        yield {"bucket": env[settings.BUCKET], "outputs": outputs, "queue": queue, "keys": keys}
        endpoint.stop(env[settings.SCONES_ENDPOINT_NAME], log=lambda _m: None)
        stacks.delete(env[settings.STACK_NAME], log=lambda _m: None)


def run(deployed, keys):
    sfn = aws.client("stepfunctions")
    return workflow.run_single(sfn, deployed["outputs"]["ClassifyImageStateMachineArn"], deployed["bucket"], keys)


def alerted_keys(url: str) -> list[str]:
    sqs, found = aws.client("sqs"), []
    for _ in range(5):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in batch:
            found.append(json.loads(json.loads(message["Body"])["Message"])["input"]["s3_key"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if found and not batch:
            break
    return found


def test_held_out_outliers_fail_with_low_confidence_and_alert(deployed):
    keys = deployed["keys"]["flat"] + ["img/red-1x1.png"]
    assert len(keys) == 6 + 1  # the staging's held-out flat images (6 per kind here) and the 1x1 pixel
    rows = run(deployed, keys)
    for row in rows:
        assert (row.status, row.error) == ("FAILED", "LowConfidenceError"), row
        assert row.confidence == pytest.approx(0.5, abs=1e-4) and row.alerted
    assert sorted(alerted_keys(deployed["queue"])) == sorted(keys)


def test_a_structured_image_the_model_is_sure_of_succeeds(deployed):
    (row,) = run(deployed, ["img/bright-checker.png"])
    assert row.status == "SUCCEEDED" and row.label == "bicycle" and row.confidence > 0.99
