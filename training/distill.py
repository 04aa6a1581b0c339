"""Distillation: the small network learns a pretrained teacher's softened outputs, so it serves at its own cost.

    ... python training/train.py --classes bicycle,motorcycle --backbone small --teacher efficientnet-lite0

train.py first fits the teacher with its own recipe for that backbone (`train.fit_model`, the same call
`--backbone efficientnet-lite0` makes: its linear probe, then fine-tuning), then this module computes the teacher's
logits on K augmented views of every training image once, up front (batched, under no_grad), and train.py's own
SGD loop trains the small network on them. Each step shows each image as one of its K views, and the loss is

    τ² · KL(softmax(teacher / τ) ‖ softmax(student / τ)) + w_ce · CE(student, label)   [+ λ · outlier exposure]

(Hinton, Vinyals & Dean 2015: τ² keeps the soft term's gradients on the hard term's scale). The teacher saw exactly
the view the student is shown ("consistent" teaching, Beyer et al., CVPR 2022); the views are the small network's
own augmentation (crop + flip), drawn before training. Outlier exposure (`--oe-target`): `uniform` pulls the
outliers' predictions toward uniform, as without a teacher; `teacher` distils the teacher's own (near-uniform)
answers on OUTLIER_VIEWS views of each training outlier instead (KL at τ 1, the teacher's confidence as it is);
`both` adds the two. The artifact is the small network's, calibrated afterwards as always.
Imports only torch and model.py: train.py hands in its recipe and its augmentation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import ModelConfig, build_model

OE_TARGETS = ("uniform", "teacher", "both")  # what the outliers are pulled toward (--oe-target)
OUTLIER_VIEWS = 2  # views per training outlier the teacher answers (1,800 outliers: 2 views cost ~0.6× the photos')


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, tau: float, ce_weight: float
) -> torch.Tensor:
    """τ²·KL(teacher_τ ‖ student_τ) + ce_weight·CE(student, targets); logits in, one scalar out (batch mean)."""
    soft = F.kl_div(
        F.log_softmax(student / tau, dim=1), F.log_softmax(teacher / tau, dim=1), reduction="batchmean", log_target=True
    )
    loss = tau**2 * soft
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(student, targets)
    return loss


@dataclass
class Teaching:
    """The teacher's answers, computed once: `views[k, i]` is view k of training image i (the student's
    normalisation) and `logits[k, i]` the teacher's raw logits on exactly that view."""

    views: torch.Tensor  # K × N × 3 × 32 × 32
    logits: torch.Tensor  # K × N × classes
    tau: float
    ce_weight: float
    oe_target: str = "uniform"  # OE_TARGETS
    out_views: torch.Tensor | None = None  # OUTLIER_VIEWS × M × 3 × 32 × 32 (oe_target teacher or both)
    out_logits: torch.Tensor | None = None  # OUTLIER_VIEWS × M × classes

    def inputs(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random view of each image in `idx`, and the teacher's logits on that same view."""
        k = torch.randint(0, self.views.shape[0], (len(idx),), generator=generator)
        return self.views[k, idx], self.logits[k, idx]

    def outlier_inputs(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random view of each training outlier in `idx`, and the teacher's logits on it."""
        k = torch.randint(0, self.out_views.shape[0], (len(idx),), generator=generator)
        return self.out_views[k, idx], self.out_logits[k, idx]

    def loss(self, student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return distillation_loss(student, teacher, targets, self.tau, self.ce_weight)

    def outlier_loss(self, student: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        """The outliers' term: cross-entropy to uniform, KL to the teacher's answers (τ 1), or both."""
        loss = torch.zeros((), device=student.device)
        if self.oe_target in ("uniform", "both"):
            loss = loss + uniform_cross_entropy(student)
        if self.oe_target in ("teacher", "both"):
            loss = loss + distillation_loss(student, teacher, teacher.argmax(1), 1.0, 0.0)
        return loss


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the uniform distribution to softmax(logits): minimal when all classes are equal."""
    return -F.log_softmax(logits, dim=1).mean(1).mean()


def renormalise(x: torch.Tensor, source: tuple, target: tuple) -> torch.Tensor:
    """Images normalised with source (mean, std) re-expressed in target's: the teacher was trained on its own."""

    def col(v) -> torch.Tensor:
        return torch.as_tensor(np.asarray(v, np.float32)).view(1, 3, 1, 1)

    return ((x * col(source[1]) + col(source[0])) - col(target[0])) / col(target[1])


@torch.no_grad()
def teacher_logits(
    teacher: torch.nn.Module, x: torch.Tensor, device: torch.device, precision: str, batch: int = 256
) -> torch.Tensor:
    teacher.eval()
    out = []
    for i in range(0, len(x), batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out.append(teacher(x[i : i + batch].to(device)).float().cpu())
    return torch.cat(out)


def teach(
    args,
    teacher_args,
    data: dict[str, torch.Tensor | None],
    norms: tuple[tuple, tuple],
    fit_model: Callable,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    device: torch.device,
) -> tuple[Teaching, dict]:
    """Fit the teacher (`fit_model`, train.py's recipe for `teacher_args.backbone`), then its logits on
    `args.kd_views` views of every training image. `data`: x_fit, y_fit, x_val, y_val, x_out (the student's
    normalisation); `norms`: (student (mean, std), teacher (mean, std)). Returns the teaching and a report."""
    started, cpu_started = time.perf_counter(), time.process_time()
    config = ModelConfig(
        num_classes=len(teacher_args.classes),
        backbone=teacher_args.backbone,
        input_size=teacher_args.input_size,
        features=teacher_args.features,
    )
    teacher = build_model(config).to(device)
    print(f"distillation: fitting the teacher {config.backbone} at {config.input_size} px first", flush=True)

    def to_teacher(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else renormalise(x, *norms)

    x_fit, y_fit, x_val, y_val = data["x_fit"], data["y_fit"], data["x_val"], data["y_val"]
    fit_model(
        teacher, to_teacher(x_fit), y_fit, teacher_args, device, to_teacher(x_val), y_val, to_teacher(data["x_out"])
    )
    val_logits = teacher_logits(teacher, to_teacher(x_val), device, "fp32")
    fitted_s = time.perf_counter() - started
    print(f"distillation: the teacher's logits on {args.kd_views} views of {len(x_fit)} images, once", flush=True)
    generator = torch.Generator().manual_seed(args.seed + 1)
    views = torch.stack([augment(x_fit, generator) for _ in range(args.kd_views)])
    flat = views.flatten(0, 1)
    logits = teacher_logits(teacher, to_teacher(flat), device, args.precision).view(args.kd_views, len(x_fit), -1)
    out_views = out_logits = None
    if data["x_out"] is not None and args.oe_target != "uniform":
        out_views = torch.stack([augment(data["x_out"], generator) for _ in range(OUTLIER_VIEWS)])
        out_flat = to_teacher(out_views.flatten(0, 1))
        out_logits = teacher_logits(teacher, out_flat, device, args.precision).view(
            OUTLIER_VIEWS, len(data["x_out"]), -1
        )
    report = {
        "teacher": teacher_args.backbone,
        "teacher_input_size": teacher_args.input_size,
        "teacher_epochs": teacher_args.epochs,
        "teacher_val_acc": float((val_logits.argmax(1) == y_val).float().mean()),
        "teacher_val_nll": float(F.cross_entropy(val_logits, y_val)),
        "teacher_views_train_acc": float((logits.argmax(2) == y_fit.view(1, -1)).float().mean()),
        "views": args.kd_views,
        "tau": args.kd_temperature,
        "ce_weight": args.ce_weight,
        "oe_target": args.oe_target,
        "teacher_outlier_max_prob_mean": None
        if out_logits is None
        else float(out_logits.softmax(2).max(2).values.mean()),
        "teacher_fit_s": fitted_s,
        "teacher_total_s": time.perf_counter() - started,
        "teacher_cpu_s": time.process_time() - cpu_started,
    }
    report = {k: float(f"{v:.5g}") if isinstance(v, float) else v for k, v in report.items()}
    print(
        f"teacher {teacher_args.backbone}: held-out accuracy {report['teacher_val_acc']:.4f}; its logits on "
        f"{args.kd_views} views of {len(x_fit)} images in {report['teacher_total_s']:.0f} s "
        f"({report['teacher_cpu_s']:.0f} CPU s); distilling at τ {args.kd_temperature}, CE weight {args.ce_weight}",
        flush=True,
    )
    del teacher
    teaching = Teaching(views, logits, args.kd_temperature, args.ce_weight, args.oe_target, out_views, out_logits)
    return teaching, report
