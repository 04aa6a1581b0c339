"""`--quantize int8`: the served model.onnx has an int8 network and a float tail, and answers as the float one."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import TINY, run_train

from scones import scoring
from scones.data import lst
from training import train

pytestmark = pytest.mark.slow


def test_int8_keeps_the_contract_quantizes_the_network_and_leaves_the_probabilities_float(tiny_staged, tmp_path):
    model_dir = tmp_path / "model"
    out = run_train(tiny_staged, model_dir, "--classes", "bicycle,motorcycle", "--epochs", "2", "--quantize", "int8",
                    *TINY)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    graph = onnx.load(str(model_dir / "model.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 5 and "Softmax" in ops
    producer = {name: node for node in graph.node for name in node.output}
    assert producer[graph.output[0].name].op_type == "Softmax"  # no Q/DQ pair rounds the probabilities
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["probabilities"]

    images = np.random.default_rng(0).normal(size=(64, 3, 32, 32)).astype(np.float32)
    probs = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": images}
    )[0]
    assert probs.shape == (64, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    steps = probs[:, 0] * 255
    assert np.abs(steps - np.round(steps)).max() > 0.01  # not on quantization's 1/255 grid
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    served = result["served"]
    assert served["agreement_with_float"] >= 0.9 and 0 <= served["coverage"] <= 1, served
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["served"] == served

    # the artifact's own serving handlers (what the endpoint and SageMaker's container call) serve the int8 file
    images, labels = lst.load_images(tiny_staged / "test", tiny_staged / "test.lst")
    handled = scoring.predict(model_dir, images)
    assert handled.shape == (len(labels), 2)
    assert float((handled.argmax(1) == labels).mean()) == served["accuracy"]


def test_quantize_accepts_none_and_int8_only():
    assert train.parse_args(["--classes", "a,b"]).quantize == "none"
    with pytest.raises(train.TrainingInputError, match="--quantize must be one of none, int8"):
        train.parse_args(["--classes", "a,b", "--quantize", "fp16"])
