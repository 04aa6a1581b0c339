"""A model artifact broken on purpose: the candidate the demo and bench/bench_rollout.py roll out to show an
automatic rollback (tests/helpers.py `make_failing_model` is this too).

It loads, answers the server's warm-up (zeros) and the probe image a switch sends before a model serves
(scones/endpoint.py `probe_image`: one flat colour), so it passes every check made before it gets traffic; then
onnxruntime fails on real traffic (a Gather past the end of its data), and the endpoint answers 500:
  fails_on="texture"  any image whose pixels are not one flat colour along a row: every photo, every staged image
  fails_on="bright"   a batch whose mean pixel (after preprocessing) is above 0.6: the tests' bright solid images
Its answer, where it answers, is 1/len(labels) for every class.
"""

from __future__ import annotations

import json
from pathlib import Path

FAILS_ON = ("texture", "bright")
PREPROCESSING = {
    "input_size": [32, 32],
    "layout": "NCHW",
    "channel_order": "RGB",
    "scale": 1 / 255,
    "mean": [0, 0, 0],
    "std": [1, 1, 1],
}


def make(
    model_dir: Path,
    labels: tuple[str, ...] | list[str] = ("bicycle", "motorcycle"),
    fails_on: str = "texture",
    like: Path | None = None,
) -> Path:
    """Write the broken model into `model_dir` (model.onnx, labels.json, config.json). `like`: a model folder whose
    labels and preprocessing it takes, so that it passes for that model's candidate."""
    import onnx
    from onnx import TensorProto, helper

    if fails_on not in FAILS_ON:
        raise ValueError(f"fails_on must be one of {', '.join(FAILS_ON)}, not {fails_on!r}")
    preprocessing = dict(PREPROCESSING)
    if like is not None:
        labels = json.loads((like / "labels.json").read_text())
        preprocessing = json.loads((like / "config.json").read_text())["preprocessing"]
    height, width = preprocessing["input_size"]
    if fails_on == "bright":
        test = [
            helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),  # the mean pixel of the whole batch
            helper.make_node("Greater", ["m", "limit"], ["bad"]),
        ]
        limit = 0.6
    else:
        test = [  # the largest step between neighbouring pixels of a row: 0 for one flat colour
            helper.make_node("Slice", ["x", "one_i", "end", "three"], ["right"]),
            helper.make_node("Slice", ["x", "zero", "last", "three"], ["left"]),
            helper.make_node("Sub", ["right", "left"], ["step"]),
            helper.make_node("Abs", ["step"], ["steps"]),
            helper.make_node("ReduceMax", ["steps"], ["m"], keepdims=0),
            helper.make_node("Greater", ["m", "limit"], ["bad"]),
        ]
        limit = 1e-3  # one grey level is 1/255 before normalisation
    nodes = [
        *test,
        helper.make_node("Cast", ["bad"], ["b"], to=TensorProto.INT64),
        helper.make_node("Mul", ["b", "five"], ["index"]),  # 0 when fine, 5 (out of range) when not
        helper.make_node("Gather", ["one", "index"], ["scale"], axis=0),  # fails at run time on index 5
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Slice", ["xs", "zero", "one_i"], ["n"]),
        helper.make_node("Concat", ["n", "classes"], ["out_shape"], axis=0),
        helper.make_node("Expand", ["share", "out_shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "scale"], ["probs"]),
    ]
    init = [
        helper.make_tensor("limit", TensorProto.FLOAT, [], [limit]),
        helper.make_tensor("five", TensorProto.INT64, [], [5]),
        helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one_i", TensorProto.INT64, [1], [1]),
        helper.make_tensor("three", TensorProto.INT64, [1], [3]),
        helper.make_tensor("end", TensorProto.INT64, [1], [width]),
        helper.make_tensor("last", TensorProto.INT64, [1], [width - 1]),
        helper.make_tensor("classes", TensorProto.INT64, [1], [len(labels)]),
        helper.make_tensor("share", TensorProto.FLOAT, [1], [1.0 / len(labels)]),
    ]
    graph = helper.make_graph(
        nodes,
        f"broken-on-{fails_on}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(labels)])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(model_dir / "model.onnx"))
    (model_dir / "labels.json").write_text(json.dumps(list(labels)))
    (model_dir / "config.json").write_text(json.dumps({"preprocessing": preprocessing}))
    return model_dir
