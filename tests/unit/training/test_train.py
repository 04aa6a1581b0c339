"""training/train.py run as SageMaker runs it: a subprocess with SM_* variables."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import TINY, run_train

from training.model import Calibrated, ModelConfig, ResNet

pytestmark = pytest.mark.slow
# Two epochs of 16-image steps: enough to learn the separable set below, a few seconds on one thread.
LEARN = ["--classes", "bicycle,motorcycle", "--epochs", "2", "--batch-size", "16", *TINY]


def write_separable(root: Path, train_per_class: int = 40, test_per_class: int = 10, seed: int = 0) -> Path:
    """A staged set any learner separates: reddish noise is 'bicycle', bluish noise 'motorcycle'.

    An untrained network stays at chance on it (its loss near ln 2), so a train.py that never updates its
    weights fails the learning test."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = {0: (190, 50, 50), 1: (50, 50, 190)}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        (root / split).mkdir(parents=True)
        lines = []
        for i in range(2 * n):
            label = i % 2
            pixels = np.clip(np.array(colours[label]) + rng.normal(0, 45, (32, 32, 3)), 0, 255).astype(np.uint8)
            name = f"{('bicycle', 'motorcycle')[label]}_s_{i:06d}.png"
            Image.fromarray(pixels).save(root / split / name)
            lines.append(f"{i}\t{label}\t{name}")
        (root / f"{split}.lst").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def separable(tmp_path_factory) -> Path:
    return write_separable(tmp_path_factory.mktemp("separable") / "staged")


@pytest.fixture(scope="module")
def trained(separable, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run") / "model"
    out = run_train(separable, model_dir, *LEARN)
    assert out.returncode == 0, out.stderr[-3000:]
    return model_dir, out


def test_training_learns_a_separable_set(trained):
    """Well above chance and a loss far below an untrained network's ln 2 (skip optimizer.step(): 0.5, 0.71)."""
    model_dir, _ = trained
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]
    assert metrics["nll_before"] <= math.log(2) / 2, metrics["nll_before"]  # test loss at least halved
    assert metrics["history"][-1]["train_loss"] <= metrics["history"][0]["train_loss"] / 2


def test_two_epochs_produce_every_artifact(trained):
    model_dir, out = trained
    for name in ("model.onnx", "model.pt", "labels.json", "config.json", "metrics.json"):
        assert (model_dir / name).is_file(), name
    assert not list(model_dir.glob("*.onnx.data"))  # a single-file ONNX model
    assert {p.name for p in (model_dir / "training_code").iterdir()} >= {
        "train.py",
        "model.py",
        "calibration.py",
    }
    assert json.loads((model_dir / "labels.json").read_text()) == ["bicycle", "motorcycle"]
    pre = json.loads((model_dir / "config.json").read_text())["preprocessing"]
    assert pre["input_size"] == [32, 32] and pre["layout"] == "NCHW" and pre["channel_order"] == "RGB"
    assert len(pre["mean"]) == 3 and len(pre["std"]) == 3 and pre["scale"] == pytest.approx(1 / 255)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for key in (
        "accuracy",
        "per_class",
        "confusion_matrix",
        "ece_before",
        "ece_after",
        "temperature",
        "epochs",
        "wall_seconds",
    ):
        assert key in metrics
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    assert out.stdout.count("METRICS epoch=") == 2 and "RESULT test_acc=" in out.stdout


def test_onnx_and_torch_agree_and_batch_is_dynamic(trained):
    model_dir, _ = trained
    saved = torch.load(model_dir / "model.pt", weights_only=True)
    model = ResNet(ModelConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    calibrated = Calibrated(model, saved["temperature"]).eval()
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        onnx_probs = session.run(None, {"input": x})[0]
        with torch.no_grad():
            torch_probs = calibrated(torch.from_numpy(x)).numpy()
        assert onnx_probs.shape == (batch, 2)
        np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
        np.testing.assert_allclose(onnx_probs.sum(1), 1.0, atol=1e-5)


def test_same_seed_same_metrics(separable, tmp_path, trained):
    first_dir, _ = trained
    again = run_train(separable, tmp_path / "model", *LEARN)
    assert again.returncode == 0, again.stderr[-2000:]
    strip = lambda m: {k: v for k, v in m.items() if k not in ("wall_seconds", "train_seconds", "history")}  # noqa: E731
    first = json.loads((first_dir / "metrics.json").read_text())
    second = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert strip(first) == strip(second)
    assert [h["train_loss"] for h in first["history"]] == [h["train_loss"] for h in second["history"]]


def bad_run(staged, tmp_path, *args):
    out = run_train(staged, tmp_path / "model", *args)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "METRICS" not in out.stdout  # refused before any epoch
    assert (tmp_path / "output" / "failure").read_text().startswith("TrainingInputError")
    return out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--widths", "8,x"], "must be equal-length lists"),
    ],
)
def test_nonsense_hyperparameters(tiny_staged, tmp_path, args, message):
    assert message in bad_run(tiny_staged, tmp_path, "--classes", "bicycle,motorcycle", *args)


def test_single_class_is_refused(tiny_staged, tmp_path):
    assert "at least two distinct names" in bad_run(tiny_staged, tmp_path, "--classes", "bicycle")


def copy_staged(staged, tmp_path):
    target = tmp_path / "staged"
    shutil.copytree(staged, target)
    return target


def test_lst_referencing_a_missing_file(tiny_staged, tmp_path):
    staged = copy_staged(tiny_staged, tmp_path)
    (staged / "train" / "bicycle_s_000003.png").unlink()
    err = bad_run(staged, tmp_path, "--classes", "bicycle,motorcycle")
    assert "bicycle_s_000003.png is missing from channel 'train'" in err


def test_unreadable_png(tiny_staged, tmp_path):
    staged = copy_staged(tiny_staged, tmp_path)
    (staged / "test" / "motorcycle_s_000031.png").write_bytes(b"not a png at all")
    assert "motorcycle_s_000031.png is not a readable image" in bad_run(
        staged, tmp_path, "--classes", "bicycle,motorcycle"
    )


def test_label_outside_the_class_list(tiny_staged, tmp_path):
    staged = copy_staged(tiny_staged, tmp_path)
    lines = (staged / "train.lst").read_text().splitlines()
    lines[4] = lines[4].replace("\t0\t", "\t7\t")
    (staged / "train.lst").write_text("\n".join(lines) + "\n")
    assert "label 7 is outside the 2 classes" in bad_run(staged, tmp_path, "--classes", "bicycle,motorcycle")


def test_empty_channel(tiny_staged, tmp_path):
    staged = copy_staged(tiny_staged, tmp_path)
    (staged / "test.lst").write_text("")
    assert "channel 'test' has nothing to train on" in bad_run(staged, tmp_path, "--classes", "bicycle,motorcycle")


def test_unset_channel_is_named(tiny_staged, tmp_path):
    out = run_train(
        tiny_staged,
        tmp_path / "model",
        "--classes",
        "bicycle,motorcycle",
        env_extra={"SM_CHANNEL_TEST": str(tmp_path / "nowhere")},
    )
    assert out.returncode == 2 and "channel 'test'" in out.stderr and "is not a folder" in out.stderr
