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
    lines = [json.loads(line[8:]) for line in out.stdout.splitlines() if line.startswith("METRICS ")]
    assert [row["epoch"] for row in lines] == [1, 2] and all(row["epochs"] == 2 for row in lines)
    assert lines == metrics["history"] and {"train_loss", "val_acc", "lr", "epoch_s"} <= set(lines[0])
    (result,) = [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert result["test_acc"] == metrics["accuracy"] and result["cpu_s"] > 0 and result["wall_s"] > 0


def test_without_an_outliers_channel_training_says_so_and_has_no_outlier_loss(trained):
    model_dir, out = trained
    assert "outlier exposure: off (no 'outliers' channel)" in out.stdout
    assert '"oe_loss"' not in out.stdout
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["outlier_exposure"] is False and metrics["n_outliers"] == 0
    assert metrics["outlier_pass_rate_seen_kinds"] is None


@pytest.fixture(scope="module")
def trained_with_outliers(tiny_staged, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run-oe") / "model"
    out = run_train(
        tiny_staged,
        model_dir,
        *("--classes", "bicycle,motorcycle", "--epochs", "2", "--oe-weight", "1.5", "--oe-batch-size", "16", *TINY),
        env_extra={"SM_CHANNEL_OUTLIERS": str(tiny_staged / "outliers")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return model_dir, out


def test_with_the_outliers_channel_every_step_adds_outliers_pulled_to_uniform(tiny_staged, trained_with_outliers):
    model_dir, out = trained_with_outliers
    n = len((tiny_staged / "outliers.lst").read_text().splitlines())
    assert "outlier exposure: " in out.stdout and "from channel 'outliers'" in out.stdout
    assert "16 per step, weight 1.5" in out.stdout
    rows = [json.loads(line[8:]) for line in out.stdout.splitlines() if line.startswith("METRICS ")]
    assert len(rows) == 2 and all(row["oe_loss"] >= np.log(2) - 1e-6 for row in rows)  # log(2): uniform
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["outlier_exposure"] is True and metrics["oe_weight"] == 1.5
    held = metrics["n_outliers"]
    assert n * 0.85 < held < n  # ~10 % of each kind held out to report on
    assert 0 <= metrics["outlier_pass_rate_seen_kinds"] <= 1 and 0 <= metrics["coverage"] <= 1
    hps = json.loads((model_dir / "config.json").read_text())["hyperparameters"]
    assert hps["oe_weight"] == 1.5 and hps["oe_batch_size"] == 16


def test_outlier_exposure_lowers_confidence_on_unseen_outliers():
    """train() in process on a toy task (top or bottom half bright: flips keep it), with and without outliers (noise):
    same seed and data; with the extra loss, fresh noise images get a top probability near 1/2, without it not."""
    from training.model import ModelConfig, ResNet
    from training.train import parse_args, train

    rng = np.random.default_rng(0)

    def halves(n):
        x = rng.normal(0, 0.3, (n, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 2, n)
        for i, label in enumerate(y):
            x[i, :, 16 * label : 16 * label + 16, :] += 1.5
        return torch.from_numpy(x), torch.from_numpy(y)

    def noise(n):
        return torch.from_numpy(rng.uniform(-2, 2, (n, 3, 32, 32)).astype(np.float32))

    x, y = halves(64)
    x_val, y_val = halves(32)
    x_out, fresh = noise(64), noise(64)
    # train.py's own defaults (a new hyperparameter cannot be missing here), a shorter run on small batches
    args = parse_args(["--classes", "a,b", "--epochs", "6", "--batch-size", "16", "--lr", "0.05"])
    args.oe_batch_size, args.precision = 16, "fp32"
    confidence, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, outliers in (("without", None), ("with", x_out)):
            torch.manual_seed(0)
            model = ResNet(ModelConfig(num_classes=2, widths=[8, 8, 8]))
            history = train(model, x, y, args, torch.device("cpu"), x_val, y_val, outliers)
            assert history[-1]["val_acc"] == 1.0  # the toy task is learnt either way
            model.eval()
            with torch.no_grad():
                confidence[name] = float(torch.softmax(model(fresh), 1).max(1).values.mean())
    finally:
        torch.set_num_threads(threads)
    assert confidence["with"] < 0.6 < confidence["without"], confidence


def test_uniform_cross_entropy_is_smallest_for_equal_logits():
    from training.train import uniform_cross_entropy

    equal = uniform_cross_entropy(torch.zeros(4, 3))
    assert float(equal) == pytest.approx(np.log(3))
    assert float(uniform_cross_entropy(torch.tensor([[5.0, 0.0, 0.0]]))) > float(equal)


def test_oe_weight_zero_leaves_the_channel_unused(tiny_staged, tmp_path):
    out = run_train(
        tiny_staged,
        tmp_path / "model",
        *("--classes", "bicycle,motorcycle", "--epochs", "1", "--oe-weight", "0", *TINY),
        env_extra={"SM_CHANNEL_OUTLIERS": str(tiny_staged / "outliers")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "outlier exposure: off (--oe-weight 0)" in out.stdout and '"oe_loss"' not in out.stdout


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_each_precision_learns_and_is_recorded(separable, tmp_path, precision):
    """bf16 autocast (the default where the chip computes it) trains as well as fp32 on the separable set,
    and the artifact says which arithmetic trained it; the exported model is fp32 either way."""
    out = run_train(separable, tmp_path / "model", *LEARN, "--precision", precision)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"CPU threads, {precision})" in out.stdout
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["precision"] == precision and metrics["accuracy"] >= 0.9, metrics["accuracy"]
    hyperparameters = json.loads((tmp_path / "model" / "config.json").read_text())["hyperparameters"]
    assert hyperparameters["precision"] == precision
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"


def test_auto_precision_is_bf16_only_where_the_chip_computes_it(monkeypatch):
    from training import train as train_module

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(train_module, "cpu_computes_bf16", lambda: True)
    assert train_module.resolve_precision("auto", cpu) == "bf16"
    assert train_module.resolve_precision("fp32", cpu) == "fp32"  # asked for: kept
    monkeypatch.setattr(train_module, "cpu_computes_bf16", lambda: False)
    assert train_module.resolve_precision("auto", cpu) == "fp32"  # emulated bf16 would be slower
    assert train_module.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation: not asked
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))  # a T4 (ml.g4dn)
    assert train_module.resolve_precision("auto", cuda) == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))  # an H100
    assert train_module.resolve_precision("auto", cuda) == "bf16"


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
    timings = ("wall_seconds", "train_seconds", "cpu_seconds", "history")
    strip = lambda m: {k: v for k, v in m.items() if k not in timings}  # noqa: E731
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
        (["--oe-weight", "-1"], "--oe-weight must be a number >= 0"),
        (["--oe-batch-size", "0"], "--oe-batch-size must be >= 1"),
        (["--precision", "fp8"], "--precision must be one of auto, bf16, fp32"),
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
