"""Fine-tuning or the probe alone, chosen by cross-validation: `python bench/cv_real_finetune.py`.

Each recipe is train.py's own (`fit_model`: the linear probe, then --epochs of fine-tuning with outlier exposure),
given as `input px:epochs` (0: the probe alone, on every block's features; else fine-tuned, as train.py's defaults
are). Stratified 5-fold cross-validation on the 800 non-held-out real training photos: every photo's logits come
from the network trained on the other four folds (and every training outlier), one temperature is fitted on all
800 out-of-fold logits, and accuracy, NLL, ECE, coverage at 0.93 and accuracy among the covered are read off them.
False-pass per held-out generated kind (noise, flat, tiny: never trained on) is averaged over the five folds'
networks. The last column is the CPU seconds to train one fold (2 threads). Prints markdown; docs/real-photos.md
quotes it ("Fine-tuning"). Skips (exit 0) where the folder is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "training", ROOT / "bench"):
    sys.path.insert(0, str(path))

import _report  # noqa: E402
import train  # noqa: E402
from calibration import fit_temperature, softmax  # noqa: E402
from cv_real_probe import CLASSES, REAL, THRESHOLD, normalised, scores  # noqa: E402
from model import ModelConfig, build_model  # noqa: E402
from probe import stratified_folds  # noqa: E402

from scones.data import lst, staging  # noqa: E402


def recipe_args(size: int, epochs: int, seed: int):
    argv = ["--classes", ",".join(CLASSES), "--backbone", "efficientnet-lite0", "--input-size", str(size)]
    argv += ["--epochs", str(epochs), "--seed", str(seed)]
    if epochs == 0:  # the folds' own logits are the out-of-fold ones: no cross-fitting inside each fold
        argv += ["--temperature-folds", "0"]
    args = train.parse_args(argv)
    args.precision = train.resolve_precision(args.precision, torch.device("cpu"))
    return args


def cross_validate(size: int, epochs: int, data: dict, k: int, seed: int, per_fold: bool = False) -> dict:
    """With `per_fold` a fine-tuned recipe's temperature is fitted as train.py fits it: each fold's network trains
    on 90 % of the fold's training photos and its temperature is fitted on the other 10 % (--val-fraction); else
    (and always for the probe alone, whose train.py temperature is cross-fitted on every photo) one temperature is
    fitted on all the out-of-fold logits."""
    x, y = data["train"]
    fold = stratified_folds(y.numpy(), k, seed)
    oof = np.zeros((len(y), len(CLASSES)))
    scaled = np.zeros_like(oof)  # each fold's logits over its own temperature (per_fold)
    out_logits, cpu_s = [], []
    per_fold = per_fold and epochs > 0
    args, device = recipe_args(size, epochs, seed), torch.device("cpu")
    config = ModelConfig(backbone=args.backbone, input_size=size, features=args.features)
    for f in range(k):
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        calibrate = np.arange(0)
        if per_fold:
            keep, val = train.stratified_split(y[fit].numpy(), args.val_fraction, seed)
            fit, calibrate = fit[keep], fit[val]
        torch.manual_seed(seed)
        model = build_model(config)
        cpu = time.process_time()
        train.fit_model(model, x[fit], y[fit], args, device, x[held], y[held], data["outliers"][0])
        cpu_s.append(time.process_time() - cpu)
        oof[held] = train.predict_logits(model, x[held], device)
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
        "nll": float(F.cross_entropy(torch.from_numpy(oof), y)),
        "fp": [float(passing[kinds == kind].mean()) for kind in range(int(kinds.max()) + 1)],
        "cpu_s": float(np.mean(cpu_s)),
        "features": args.features,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REAL, help="the real photos (train/ + train.lst)")
    parser.add_argument("--workdir", type=Path, default=None, help="staged data")
    parser.add_argument("--recipes", default="96:0,96:5,160:0,160:5", help="input px:epochs, comma-separated")
    parser.add_argument("--k", type=int, default=5, help="folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--temperature", default="pooled", choices=("pooled", "per-fold"),
        help="pooled: one temperature on all out-of-fold logits; per-fold: a fine-tuned recipe's as train.py fits it",
    )  # fmt: skip
    args = parser.parse_args()
    if not (args.folder / "train.lst").is_file():
        print(f"skipped: the real photos are absent ({args.folder} has no train.lst)")
        return 0
    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="scones-cv-finetune-"))
    manifest = staging.build(staging.resolve_source(str(args.folder), CLASSES), CLASSES, work / "staged", "auto")
    staged, data = work / "staged", {}
    for split in ("train", "outliers", "outliers_test"):
        images, labels = lst.load_images(staged / split, staged / f"{split}.lst")
        data[split] = (normalised(images), torch.from_numpy(labels.astype(np.int64)))
    kinds = manifest["outliers"]["test"]["kinds"]
    table = _report.Table(
        f"lite0 recipe (CV, {len(data['train'][1])} photos)", "accuracy", "NLL", "ECE", "coverage at 0.93",
        "accuracy among covered", f"false-pass {' / '.join(kinds)}", "training CPU s per fold",
    )  # fmt: skip
    for text in args.recipes.split(","):
        size, epochs = (int(v) for v in text.split(":"))
        s = cross_validate(size, epochs, data, args.k, args.seed, args.temperature == "per-fold")
        how = f"probe ({s['features']} features)" if epochs == 0 else f"fine-tuned {epochs} epochs"
        name = f"{size} px, {how}"
        table.row(name, f"{s['acc']:.3f}", f"{s['nll']:.3f}", f"{s['ece']:.3f}", f"{s['coverage']:.3f}",
                  f"{s['covered_acc']:.3f}", " / ".join(f"{r:.2f}" for r in s["fp"]), f"{s['cpu_s']:.0f}")  # fmt: skip
        print(table.markdown(), flush=True)
    print(f"staged data in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
