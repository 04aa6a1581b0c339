"""What the efficientnet-lite0 probe reads, chosen by cross-validation: `python bench/cv_real_features.py`.

The probe of bench/cv_real_probe.py's recipe (160 px, one view per photo, λ 1, the temperature cross-fitted) read
the final 1,280 pooled features only. This compares it with `features` blocks (model.py: every MBConv block's
output pooled too, 3,088 features from the same forward pass), each over a grid of the probe's L2, by stratified
5-fold cross-validation on the 800 non-held-out real training photos: the features are standardised as train.py
does (probe.standardiser), every photo's logits come from a probe fitted on the other four folds (plus every
training outlier pulled to uniform), the temperature is fitted on those out-of-fold logits, and accuracy, ECE,
coverage at 0.93 and accuracy among the covered are read off them. False-pass per held-out generated kind (noise,
flat, tiny: never trained on) is that of the probe fitted on all 800. The last column is onnxruntime's CPU seconds
to extract the features of 800 photos (2 threads): the serving cost's ratio. `--holdout` also scores `--candidates`
on the held-out fifth (look at it last). Prints markdown; docs/real-photos.md quotes it. Skips (exit 0) where the
folder is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "training", ROOT / "bench"):
    sys.path.insert(0, str(path))

import _report  # noqa: E402
import _scratch  # noqa: E402
from calibration import fit_temperature, softmax  # noqa: E402
from cv_real_probe import CLASSES, REAL, fmt, normalised, onnx_features, scores  # noqa: E402
from probe import fit_probe, logits, out_of_fold_logits, standardiser  # noqa: E402

from scones.data import lst, staging  # noqa: E402

THRESHOLD = 0.93
FEATURES = ("last", "blocks")


def extract(size: int, features: str, data: dict, work: Path, threads: int) -> dict:
    """Every split's features, standardised by the training photos' statistics as train.py's fit_head does."""
    run = onnx_features(size, work / f"features-{size}-{features}.onnx", threads, features)
    cpu = time.process_time()
    feats = {"train": run(data["train"][0])[None]}  # V×N×D with the one view, as probe.py takes it
    cpu_s = time.process_time() - cpu
    feats.update({split: run(data[split][0]) for split in ("outliers", "test", "outliers_test")})
    mean, scale = standardiser(feats["train"])  # the first view's rows
    feats = {split: (value - mean) / scale for split, value in feats.items()}
    feats["cpu_s_800"] = cpu_s
    print(f"{features} features at {size} px: {cpu_s:.1f} CPU s per 800 photos (onnxruntime)", flush=True)
    return feats


def false_pass(weight, bias, feats: dict, kinds: np.ndarray, names: list[str], temperature: float) -> dict:
    top = softmax(logits(weight, bias, feats["outliers_test"]), temperature).max(1)
    return {name: float((top[kinds == k] >= THRESHOLD).mean()) for k, name in enumerate(names)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REAL, help="the real photos (train/ + train.lst)")
    parser.add_argument("--workdir", type=Path, default=None, help="staged data and exported feature graphs")
    parser.add_argument("--size", type=int, default=160, help="input size of the L2 grid, px")
    parser.add_argument("--l2", default="0.01,0.03,0.1,0.3,1,3", help="the probe's L2 values to compare")
    parser.add_argument("--sizes", default="64,80,96,128,160", help="input sizes compared at --size-l2, px")
    parser.add_argument("--size-l2", type=float, default=0.01, help="the L2 of the sizes table")
    parser.add_argument("--k", type=int, default=5, help="folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", action="store_true", help="also score --candidates on the held-out fifth")
    parser.add_argument("--candidates", default="last:0.01,blocks:0.01", help="features:l2, comma-separated")
    args = parser.parse_args()
    if not (args.folder / "train.lst").is_file():
        print(f"skipped: the real photos are absent ({args.folder} has no train.lst)")
        return 0
    torch.set_num_threads(args.threads)
    work = _scratch.folder("scones-cv-features-", keep=args.workdir)
    manifest = staging.build(staging.resolve_source(str(args.folder), CLASSES), CLASSES, work / "staged", "auto")
    staged, data = work / "staged", {}
    for split in ("train", "test", "outliers", "outliers_test"):
        images, labels = lst.load_images(staged / split, staged / f"{split}.lst")
        data[split] = (normalised(images), torch.from_numpy(labels.astype(np.int64)))
    kinds = manifest["outliers"]["test"]["kinds"]
    out_kinds = data["outliers_test"][1].numpy()
    y = data["train"][1]
    sizes = sorted({args.size, *(int(v) for v in args.sizes.split(","))})
    all_feats = {(size, name): extract(size, name, data, work, args.threads) for size in sizes for name in FEATURES}
    feats = {name: all_feats[args.size, name] for name in FEATURES}

    def cross_validate(f: dict, l2: float) -> dict:
        oof = out_of_fold_logits(f["train"], y, 2, l2, args.k, args.seed, f["outliers"], 1.0)
        temperature = fit_temperature(oof, y.numpy())
        s = scores(oof, y.numpy(), temperature)
        weight, bias, _ = fit_probe(f["train"], y, 2, l2, f["outliers"], 1.0)
        s["fp"] = false_pass(weight, bias, f, out_kinds, kinds, temperature)
        return s

    head = ["accuracy", "ECE", "coverage at 0.93", "accuracy among covered", f"false-pass {' / '.join(kinds)}"]
    table = _report.Table(f"{args.size} px, features, L2 (CV, 800 photos)", *head, "feature CPU s per 800 photos")
    for name, f in feats.items():
        for l2 in (float(v) for v in args.l2.split(",")):
            s = cross_validate(f, l2)
            table.row(f"{name}, L2 {l2:g}", *fmt(s, kinds), f"{f['cpu_s_800']:.1f}")
            print(name, l2, fmt(s, kinds), flush=True)
    print(table.markdown(), flush=True)
    by_size = _report.Table(f"input size, features (L2 {args.size_l2:g}, CV)", *head, "feature CPU s per 800 photos")
    for (size, name), f in all_feats.items():
        s = cross_validate(f, args.size_l2)
        by_size.row(f"{size} px, {name}", *fmt(s, kinds), f"{f['cpu_s_800']:.1f}")
    print(by_size.markdown(), flush=True)

    if args.holdout:
        hold = _report.Table("candidate (held-out fifth, 200 photos)", *head, "T")
        for text in args.candidates.split(","):
            name, l2 = text.split(":")
            f = feats[name]
            oof = out_of_fold_logits(f["train"], y, 2, float(l2), args.k, args.seed, f["outliers"], 1.0)
            temperature = fit_temperature(oof, y.numpy())
            weight, bias, _ = fit_probe(f["train"], y, 2, float(l2), f["outliers"], 1.0)
            s = scores(logits(weight, bias, f["test"]), data["test"][1].numpy(), temperature)
            s["fp"] = false_pass(weight, bias, f, out_kinds, kinds, temperature)
            hold.row(f"{args.size} px, {name}, L2 {l2}", *fmt(s, kinds), f"{temperature:.2f}")
        print(hold.markdown(), flush=True)
    print(f"staged data in {work}{_scratch.note(args.workdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
