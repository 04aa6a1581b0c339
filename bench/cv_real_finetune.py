"""Fine-tuning or the probe alone, chosen by cross-validation: `python bench/cv_real_finetune.py`.

Each recipe is train.py's own (`fit_model`: the linear probe, then --epochs of fine-tuning with outlier exposure),
given as `input px:epochs[:features]` (0: the probe alone, on every block's features; else fine-tuned, reading the
last features as train.py's defaults do; `:blocks` or `:last` overrides). Stratified 5-fold cross-validation on the
800 non-held-out real training photos: every photo's logits come from the network trained on the other four folds
(and every training outlier), one temperature is fitted on all 800 out-of-fold logits, and accuracy, NLL, ECE,
coverage at 0.93 and accuracy among the covered are read off them, with the best coverage any threshold reaches at
accuracy >= 0.99 among the covered (the risk-coverage curve's bound: no temperature moves it). False-pass per
held-out generated kind (noise, flat, tiny: never trained on) is averaged over the five folds' networks. The last
column is the CPU seconds to train one fold (2 threads). `--train-seeds 0,1,2` trains each recipe once per seed on
the same folds (`--seed` draws them): the spread is what one recipe's figures move by from its seed alone. Prints
markdown; docs/real-photos.md quotes it ("Fine-tuning", "Seed noise and the ceiling"). Skips (exit 0) where the
folder is absent.

Changes train.py does not make, scored from the same folds' networks (docs/real-photos.md "Tried and not kept"):
- `--tta`: each photo's logits averaged with its mirror image's (the served network would run twice);
- `--wise 0.5,0.75`: WiSE-FT (Wortsman et al., CVPR 2022), the weights interpolated between the probe's (α 0) and
  the fine-tuned ones (α 1), which costs nothing to serve;
- `--ensemble`: the logits of every fine-tuned recipe in the run averaged (one network each to serve);
- `--calibration-sizes 64,80,160`: how far the temperature wanders when it is fitted, as train.py fits a fine-tuned
  network's, on n labelled photos the network never saw: n out-of-fold photos drawn at random 300 times, the
  temperature fitted on them and the rest of the 800 scored with it (mean and 10th-90th percentiles).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "training", ROOT / "bench"):
    sys.path.insert(0, str(path))

import _report  # noqa: E402
import _scratch  # noqa: E402
import train  # noqa: E402
from calibration import fit_temperature, softmax  # noqa: E402
from cv_real_probe import CLASSES, REAL, THRESHOLD, normalised, scores  # noqa: E402
from model import ModelConfig, build_model  # noqa: E402
from probe import stratified_folds  # noqa: E402

from scones.data import lst, staging  # noqa: E402

CEILING_ACCURACY = 0.99  # the accuracy among the covered


def recipe_args(size: int, epochs: int, seed: int, features: str | None = None):
    argv = ["--classes", ",".join(CLASSES), "--backbone", "efficientnet-lite0", "--input-size", str(size)]
    argv += ["--epochs", str(epochs), "--seed", str(seed)] + (["--features", features] if features else [])
    if epochs == 0:  # the folds' own logits are the out-of-fold ones: no cross-fitting inside each fold
        argv += ["--temperature-folds", "0"]
    args = train.parse_args(argv)
    args.precision = train.resolve_precision(args.precision, torch.device("cpu"))
    return args


def cross_validate(
    size: int,
    epochs: int,
    data: dict,
    k: int,
    seed: int,
    per_fold: bool = False,
    features: str | None = None,
    tta: bool = False,
    wise: tuple[float, ...] = (),
    train_seed: int | None = None,
) -> dict:
    """With `per_fold` a fine-tuned recipe's temperature is fitted as train.py fits it: each fold's network trains
    on 90 % of the fold's training photos and its temperature is fitted on the other 10 % (--val-fraction); else
    (and always for the probe alone, whose train.py temperature is cross-fitted on every photo) one temperature is
    fitted on all the out-of-fold logits. With `tta` and `wise` (fine-tuned recipes), `variants` holds the
    out-of-fold logits of each change, keyed by its row name. `train_seed` (default `seed`) seeds the training alone
    (initialisation, batch order, augmentation, outlier draws); `seed` keeps drawing the folds."""
    train_seed = seed if train_seed is None else train_seed
    x, y = data["train"]
    fold = stratified_folds(y.numpy(), k, seed)
    oof = np.zeros((len(y), len(CLASSES)))
    scaled = np.zeros_like(oof)  # each fold's logits over its own temperature (per_fold)
    out_logits, cpu_s = [], []
    per_fold, tta, wise = (per_fold, tta, wise) if epochs else (False, False, ())  # a probe alone: none of them
    args, device = recipe_args(size, epochs, train_seed, features), torch.device("cpu")
    probe_args = argparse.Namespace(**{**vars(args), "epochs": 0})  # fit_model's first step alone (wise)
    config = ModelConfig(backbone=args.backbone, input_size=size, features=args.features)
    variants = {}
    for f in range(k):
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        calibrate = np.arange(0)
        if per_fold:
            keep, val = train.stratified_split(y[fit].numpy(), args.val_fraction, seed)
            fit, calibrate = fit[keep], fit[val]
        torch.manual_seed(train_seed)
        model = build_model(config)
        cpu = time.process_time()
        if wise:  # fit_model's two steps, apart, to keep the probe's weights
            train.fit_model(model, x[fit], y[fit], probe_args, device, x[held], y[held], data["outliers"][0])
            probed = copy.deepcopy(model.state_dict())
            train.train(model, x[fit], y[fit], args, device, x[held], y[held], data["outliers"][0])
        else:
            train.fit_model(model, x[fit], y[fit], args, device, x[held], y[held], data["outliers"][0])
        cpu_s.append(time.process_time() - cpu)
        oof[held] = train.predict_logits(model, x[held], device)
        if tta:
            mirrored = train.predict_logits(model, x[held].flip(-1), device)
            variants.setdefault("flip-TTA", np.zeros_like(oof))[held] = (oof[held] + mirrored) / 2
        if wise:
            tuned = copy.deepcopy(model.state_dict())
            for alpha in wise:
                model.load_state_dict(interpolate(probed, tuned, alpha))
                variants.setdefault(f"WiSE-FT α {alpha:g}", np.zeros_like(oof))[held] = train.predict_logits(
                    model, x[held], device
                )
            model.load_state_dict(tuned)
        out = train.predict_logits(model, data["outliers_test"][0], device)
        if per_fold:
            fold_t = fit_temperature(train.predict_logits(model, x[calibrate], device), y[calibrate].numpy())
            scaled[held], out = oof[held] / fold_t, out / fold_t
            print(f"fold {f + 1}: temperature {fold_t:.2f} on {len(calibrate)} photos", flush=True)
        out_logits.append(out)
        print(f"{size} px, {epochs} epochs: fold {f + 1}/{k} in {cpu_s[-1]:.0f} CPU s", flush=True)
    labels = y.numpy()
    temperature = 1.0 if per_fold else fit_temperature(oof, labels)
    kinds = data["outliers_test"][1].numpy()
    passing = np.mean([softmax(o, temperature).max(1) >= THRESHOLD for o in out_logits], axis=0)
    return {
        **scores(scaled if per_fold else oof, labels, temperature),  # acc, ece, coverage, covered_acc
        "ceiling": coverage_ceiling(scaled if per_fold else oof, labels),  # the ranking the served threshold sees
        "nll": float(F.cross_entropy(torch.from_numpy(oof), y)),
        "fp": [float(passing[kinds == kind].mean()) for kind in range(int(kinds.max()) + 1)],
        "cpu_s": float(np.mean(cpu_s)),
        "features": args.features,
        "oof": oof,
        "variants": variants,
    }


def coverage_ceiling(logits: np.ndarray, labels: np.ndarray, target: float = CEILING_ACCURACY) -> float:
    """The largest coverage any threshold on the top class's probability reaches with accuracy among the covered >=
    `target`: the risk-coverage curve's bound, which no temperature or threshold can beat (a temperature keeps the
    order of the top probabilities of two classes). Photos of equal confidence are covered together or not at all."""
    probs = softmax(logits)
    top, correct = probs.max(1), probs.argmax(1) == labels
    order = np.argsort(-top, kind="stable")
    covered_acc = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    cut = np.r_[top[order][1:] < top[order][:-1], True]  # a threshold can fall after position i
    ok = np.flatnonzero(cut & (covered_acc >= target))
    return float((ok[-1] + 1) / len(order)) if len(ok) else 0.0


def interpolate(start: dict, end: dict, alpha: float) -> dict:
    """WiSE-FT's weights: (1 - α)·start + α·end for every float tensor (BatchNorm's running statistics, frozen while
    fine-tuning, are equal in both); integer buffers are end's."""
    return {name: torch.lerp(value, end[name], alpha) if value.is_floating_point() else end[name]
            for name, value in start.items()}  # fmt: skip


def add_row(table, name: str, s: dict, false_pass: str = "not measured", cpu: str = "") -> None:
    table.row(name, f"{s['acc']:.3f}", f"{s['nll']:.3f}", f"{s['ece']:.3f}", f"{s['coverage']:.3f}",
              f"{s['covered_acc']:.3f}", f"{s['ceiling']:.3f}", false_pass, cpu)  # fmt: skip


def pooled_row(table, name: str, logits: np.ndarray, labels: np.ndarray) -> None:
    """A change's row: one temperature on its pooled out-of-fold logits (whatever --temperature says), no false-pass
    (the outliers are scored for the recipes only) and no training time (the recipe's networks are reused)."""
    nll = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
    s = scores(logits, labels, fit_temperature(logits, labels))
    add_row(table, name, {**s, "nll": nll, "ceiling": coverage_ceiling(logits, labels)})


def calibration_sizes(name: str, logits: np.ndarray, labels: np.ndarray, sizes: list[int], seed: int, table) -> None:
    """Temperature fitted on n random out-of-fold photos, the other 800 - n scored with it, 300 draws per n."""
    rng = np.random.default_rng(seed)
    for n in sizes:
        draws = []
        for _ in range(300):
            order = rng.permutation(len(labels))
            fit, rest = order[:n], order[n:]
            temperature = fit_temperature(logits[fit], labels[fit])
            s = scores(logits[rest], labels[rest], temperature)
            draws.append((temperature, s["ece"], s["coverage"], s["covered_acc"]))
        cells = [
            f"{np.mean(col):.3f} ({np.percentile(col, 10):.3f}–{np.percentile(col, 90):.3f})"
            for col in np.array(draws).T
        ]
        table.row(name, str(n), *cells)


def parse_recipe(text: str) -> tuple[int, int, str | None]:
    """`px:epochs[:features]` → (px, epochs, features or None for train.py's default)."""
    parts = text.strip().split(":")
    if (
        len(parts) not in (2, 3)
        or not all(p.isdigit() for p in parts[:2])
        or parts[2:] not in ([], *([f] for f in train.FEATURES))
    ):
        raise ValueError(f"recipe {text!r}: expected px:epochs[:{'|'.join(train.FEATURES)}], e.g. 160:5:blocks")
    return int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REAL, help="the real photos (train/ + train.lst)")
    parser.add_argument("--workdir", type=Path, default=None, help="staged data")
    parser.add_argument("--recipes", default="96:0,96:5,160:0,160:5", help="input px:epochs, comma-separated")
    parser.add_argument("--k", type=int, default=5, help="folds")
    parser.add_argument("--seed", type=int, default=0, help="draws the folds (and trains, unless --train-seeds)")
    parser.add_argument(
        "--train-seeds", default="", help="train each recipe once per seed, comma-separated, on the same folds"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--temperature", default="pooled", choices=("pooled", "per-fold"),
        help="pooled: one temperature on all out-of-fold logits; per-fold: a fine-tuned recipe's as train.py fits it",
    )  # fmt: skip
    parser.add_argument("--tta", action="store_true", help="also score fine-tuned recipes with flip-TTA")
    parser.add_argument("--wise", default="", help="also score WiSE-FT at these α, comma-separated (e.g. 0.5,0.75)")
    parser.add_argument("--ensemble", action="store_true", help="also score the fine-tuned recipes' mean logits")
    parser.add_argument(
        "--calibration-sizes", default="", help="n, comma-separated: the temperature fitted on n out-of-fold photos"
    )
    args = parser.parse_args()
    try:
        recipes = [parse_recipe(text) for text in args.recipes.split(",")]
        wise = tuple(float(a) for a in args.wise.split(",") if a.strip())
        sizes = [int(n) for n in args.calibration_sizes.split(",") if n.strip()]
        seeds = [int(n) for n in args.train_seeds.split(",") if n.strip()] or [args.seed]
        if any(not 0 <= a <= 1 for a in wise) or any(n < 8 for n in sizes):
            raise ValueError("--wise α must be in [0, 1] and --calibration-sizes n >= 8")
    except ValueError as exc:
        parser.error(str(exc))
    per_fold = args.temperature == "per-fold"
    if not (args.folder / "train.lst").is_file():
        print(f"skipped: the real photos are absent ({args.folder} has no train.lst)")
        return 0
    torch.set_num_threads(args.threads)
    work = _scratch.folder("scones-cv-finetune-", keep=args.workdir)
    manifest = staging.build(staging.resolve_source(str(args.folder), CLASSES), CLASSES, work / "staged", "auto")
    staged, data = work / "staged", {}
    for split in ("train", "outliers", "outliers_test"):
        images, labels = lst.load_images(staged / split, staged / f"{split}.lst")
        data[split] = (normalised(images), torch.from_numpy(labels.astype(np.int64)))
    kinds = manifest["outliers"]["test"]["kinds"]
    table = _report.Table(
        f"lite0 recipe (CV, {len(data['train'][1])} photos)", "accuracy", "NLL", "ECE", "coverage at 0.93",
        "accuracy among covered", f"best coverage at >= {CEILING_ACCURACY:g}", f"false-pass {' / '.join(kinds)}",
        "training CPU s per fold",
    )  # fmt: skip
    sizes_table = _report.Table(
        "temperature fitted on n out-of-fold photos", "n", "temperature", "ECE", "coverage at 0.93",
        "accuracy among covered",
    )  # fmt: skip
    labels, tuned = data["train"][1].numpy(), []
    for (size, epochs, features), train_seed in itertools.product(recipes, seeds):
        s = cross_validate(size, epochs, data, args.k, args.seed, per_fold, features, args.tta, wise, train_seed)
        how = f"probe ({s['features']} features)" if epochs == 0 else f"fine-tuned {epochs} epochs"
        name = f"{size} px, {how}" + (f", {s['features']} features" if features and epochs else "")
        name += f", seed {train_seed}" if args.train_seeds else ""
        add_row(table, name, s, " / ".join(f"{r:.2f}" for r in s["fp"]), f"{s['cpu_s']:.0f}")
        for variant, logits in s["variants"].items():
            pooled_row(table, f"{name} + {variant}", logits, labels)
        if epochs:
            tuned.append((name, s["oof"]))
            if sizes:
                calibration_sizes(name, s["oof"], labels, sizes, args.seed, sizes_table)
        print(table.markdown(), flush=True)
    if args.ensemble and len(tuned) > 1:
        names = " + ".join(name for name, _ in tuned)
        pooled_row(table, f"ensemble: {names}", np.mean([logits for _, logits in tuned], axis=0), labels)
        print(table.markdown())
    if sizes:
        print()
        print(sizes_table.markdown())
    print(f"staged data in {work}{_scratch.note(args.workdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
