"""Choose the efficientnet-lite0 probe recipe by cross-validation: `python bench/cv_real_probe.py [--holdout]`.

Stages the shared real photos as bench_real.py does (`scones stage --source PATH`'s code: 800 training photos, the
fixed held-out fifth of 200 as test, the generated outlier kinds), computes EfficientNet-Lite0's pooled features
once per input size and view (training/probe.py's views; extracted by onnxruntime from the exported feature graph,
cached in --workdir), then scores each recipe by stratified
k-fold cross-validation on the 800 training photos only: every photo's logits come from a probe fitted on the other
folds (all their views, plus every training outlier pulled to uniform), the temperature is fitted on those
out-of-fold logits, and accuracy, ECE, coverage at 0.93 and accuracy among the covered are read off them.
False-pass per held-out generated kind (noise, flat, tiny: never trained on) is that of the probe fitted on all 800.
The calibration table compares, by nested CV, train.py's old temperature (fitted on 10 % of each training part)
with the cross-fitted one (inner k-fold out-of-fold logits), both scored on the outer fold.
`--holdout` also scores the candidates (`--candidates`) on the held-out fifth: look at it last.
Prints markdown; docs/real-photos.md quotes it with this command. Skips (exit 0) where the folder is absent.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import _report  # noqa: E402
import _scratch  # noqa: E402
from calibration import expected_calibration_error, fit_temperature, softmax  # noqa: E402
from model import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, build_model  # noqa: E402
from probe import VIEWS, fit_probe, logits, out_of_fold_logits, view  # noqa: E402

from scones.data import lst, staging  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "cifar100-bicycle-motorcycle"
CLASSES = ["bicycle", "motorcycle"]
THRESHOLD = 0.93
VIEW_SETS = {"id": 1, "id+flip": 2, "id+flip+shifts": len(VIEWS)}  # the first N of probe.VIEWS


def normalised(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float().div_(255).permute(0, 3, 1, 2)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


class Features(torch.nn.Module):
    """The pooled features alone, for export: the CV extracts them with onnxruntime (~5× less CPU than eager)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def onnx_features(size: int, path: Path, threads: int, features: str = "last"):
    """A function N×3×32×32 → N×D features of the pretrained Lite0 at `size` px (model.py's `features`: last, D
    1,280; blocks, 3,088), run by onnxruntime."""
    import onnxruntime as ort

    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, backbone="efficientnet-lite0", input_size=size, features=features)
    model = build_model(config).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        Features(model).eval(), (torch.zeros(2, 3, 32, 32),), str(path), input_names=["input"],
        dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False, verbose=False,
    )  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        chunks = [session.run(None, {"input": x[i : i + 64].numpy()})[0] for i in range(0, len(x), 64)]
        return torch.from_numpy(np.concatenate(chunks)).double()

    return run


def features_for(size: int, data: dict, cache: Path, threads: int) -> dict:
    """Every split's features at `size` px (train: all VIEWS; the rest: id + flip), cached; with CPU seconds."""
    path = cache / f"features-{size}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    extract = onnx_features(size, cache / f"features-{size}.onnx", threads)
    cpu = time.process_time()
    feats = {"train": torch.stack([extract(view(data["train"][0], name)) for name in VIEWS])}
    feats["cpu_s_per_view_800"] = torch.tensor(time.process_time() - cpu) / len(VIEWS)
    feats["outliers"] = extract(data["outliers"][0])
    for split in ("test", "outliers_test"):
        feats[split] = torch.stack([extract(view(data[split][0], name)) for name in ("id", "flip")])
    torch.save(feats, path)
    print(f"features at {size} px: {time.process_time() - cpu:.0f} CPU s (onnxruntime)", flush=True)
    return feats


def scores(logit: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    probs = softmax(logit, temperature)
    top, correct = probs.max(1), probs.argmax(1) == labels
    covered = top >= THRESHOLD
    return {
        "acc": float(correct.mean()),
        "ece": expected_calibration_error(probs, labels),
        "coverage": float(covered.mean()),
        "covered_acc": float(correct[covered].mean()) if covered.any() else float("nan"),
        "T": temperature,
    }


def false_pass(weight, bias, feats, test_views: int, kinds: np.ndarray, names: list[str], temperature: float) -> dict:
    top = softmax(logits(weight, bias, feats["outliers_test"][:test_views]), temperature).max(1)
    return {name: float((top[kinds == k] >= THRESHOLD).mean()) for k, name in enumerate(names)}


def recipe(size: int, views: str, tta: bool, l2: float, oe: float) -> dict:
    return {"size": size, "views": views, "tta": tta, "l2": l2, "oe": oe}


def label(r: dict) -> str:
    return f"{r['size']} px, {r['views']}{', flip-TTA' if r['tta'] else ''}, L2 {r['l2']:g}, λ {r['oe']:g}"


def cross_validate(r: dict, feats: dict, y: torch.Tensor, k: int, seed: int, fp_meta) -> dict:
    v, tv = VIEW_SETS[r["views"]], 2 if r["tta"] else 1
    x, out = feats["train"][:v], feats["outliers"]
    oof = out_of_fold_logits(x, y, 2, r["l2"], k, seed, out, r["oe"], tv)
    temperature = fit_temperature(oof, y.numpy())
    result = scores(oof, y.numpy(), temperature)
    weight, bias, _ = fit_probe(x, y, 2, r["l2"], out, r["oe"])
    result["fp"] = false_pass(weight, bias, feats, tv, *fp_meta, temperature)
    return result


def nested_calibration(r: dict, feats: dict, y: torch.Tensor, k: int, seed: int) -> dict:
    """Outer k folds; per training part: 'split' = probe on 90 %, T on 10 % (train.py's old way); 'cross-fit' =
    T on the part's inner k-fold out-of-fold logits, probe on the whole part. Both scored on the outer fold."""
    from probe import stratified_folds

    v, tv = VIEW_SETS[r["views"]], 2 if r["tta"] else 1
    x, out, labels = feats["train"][:v], feats["outliers"], y.numpy()
    fold = stratified_folds(labels, k, seed + 1)
    pooled = {"split": ([], []), "cross-fit": ([], [])}
    for f in range(k):
        part, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        calib = part[stratified_folds(labels[part], 10, seed) == 0]  # 10 % of the part
        fit = np.setdiff1d(part, calib)
        weight, bias, _ = fit_probe(x[:, fit], y[fit], 2, r["l2"], out, r["oe"])
        t_split = fit_temperature(logits(weight, bias, x[:tv, calib]), labels[calib])
        pooled["split"][0].append(logits(weight, bias, x[:tv, held]) / t_split)
        inner = out_of_fold_logits(x[:, part], y[part], 2, r["l2"], k, seed, out, r["oe"], tv)
        t_cross = fit_temperature(inner, labels[part])
        weight, bias, _ = fit_probe(x[:, part], y[part], 2, r["l2"], out, r["oe"])
        pooled["cross-fit"][0].append(logits(weight, bias, x[:tv, held]) / t_cross)
        for name in pooled:
            pooled[name][1].append(labels[held])
    return {name: scores(np.concatenate(z), np.concatenate(t), 1.0) for name, (z, t) in pooled.items()}


def fmt(s: dict, kinds: list[str] | None = None) -> list[str]:
    cells = [f"{s['acc']:.3f}", f"{s['ece']:.3f}", f"{s['coverage']:.3f}", f"{s['covered_acc']:.3f}"]
    if kinds:
        cells.append(" / ".join(f"{s['fp'][k]:.2f}" for k in kinds))
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REAL, help="the real photos (train/ + train.lst)")
    parser.add_argument("--workdir", type=Path, default=None, help="staged data and cached features")
    parser.add_argument("--sizes", default="128,160,192,224", help="input sizes to compare, px")
    parser.add_argument("--k", type=int, default=5, help="folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", action="store_true", help="also score --candidates on the held-out fifth")
    parser.add_argument("--holdout-only", action="store_true", help="only --holdout (features cached in --workdir)")
    parser.add_argument(
        "--candidates",
        default="128:id:0:0.01:1,224:id+flip+shifts:0:0.01:1",
        help="size:views:tta(0/1):l2:λ, comma-separated (the first: today's default)",
    )
    args = parser.parse_args()
    if not (args.folder / "train.lst").is_file():
        print(f"skipped: the real photos are absent ({args.folder} has no train.lst)")
        return 0
    torch.set_num_threads(args.threads)
    work = _scratch.folder("scones-cv-real-", keep=args.workdir)
    manifest = staging.build(staging.resolve_source(str(args.folder), CLASSES), CLASSES, work / "staged", "auto")
    staged = work / "staged"
    data = {}
    for split, folder in (("train", "train"), ("test", "test"), ("outliers", "outliers"), ("outliers_test",) * 2):
        images, labels = lst.load_images(staged / folder, staged / f"{folder}.lst")
        data[split] = (normalised(images), torch.from_numpy(labels.astype(np.int64)))
    kinds = manifest["outliers"]["test"]["kinds"]
    fp_meta = (data["outliers_test"][1].numpy(), kinds)
    y = data["train"][1]
    sizes = [int(s) for s in args.sizes.split(",")]
    feats = {size: features_for(size, data, work, args.threads) for size in sizes}
    head = ["accuracy", "ECE", "coverage at 0.93", "accuracy among covered"]
    fp_head = f"false-pass {' / '.join(kinds)}"

    if not args.holdout_only:
        # 1. input size × views × flip-TTA (L2 0.01, λ 1: today's probe settings)
        grid = _report.Table("recipe (CV, 800 photos)", *head, fp_head, "feature CPU s per 800 photos per view")
        ranked = []
        for size, views in itertools.product(sizes, VIEW_SETS):
            for tta in (False, True) if views != "id" else (False,):
                r = recipe(size, views, tta, 0.01, 1.0)
                s = cross_validate(r, feats[size], y, args.k, args.seed, fp_meta)
                cost = float(feats[size]["cpu_s_per_view_800"])
                grid.row(label(r), *fmt(s, kinds), f"{cost:.0f}")
                ranked.append((s, r))
                print(label(r), fmt(s, kinds), flush=True)
        print(grid.markdown(), flush=True)

        # 2. L2 × λ at the best size/views by CV accuracy then coverage (TTA excluded: it doubles serving cost)
        _, best = max(((s, r) for s, r in ranked if not r["tta"]), key=lambda sr: (sr[0]["acc"], sr[0]["coverage"]))
        l2_grid = _report.Table(f"{best['size']} px, {best['views']}: L2, λ", *head, fp_head)
        for l2, oe in itertools.product((0.001, 0.003, 0.01, 0.03), (0.25, 0.5, 1.0, 2.0)):
            r = recipe(best["size"], best["views"], False, l2, oe)
            s = cross_validate(r, feats[best["size"]], y, args.k, args.seed, fp_meta)
            l2_grid.row(f"L2 {l2:g}, λ {oe:g}", *fmt(s, kinds))
            print(label(r), fmt(s, kinds), flush=True)
        print(l2_grid.markdown(), flush=True)

        # 3. calibration: 10 % split vs cross-fitted temperature, nested CV (today's recipe and the best one)
        calib = _report.Table("temperature fitted on (nested CV)", *head)
        for r in (recipe(sizes[0], "id", False, 0.01, 1.0), best):
            for name, s in nested_calibration(r, feats[r["size"]], y, args.k, args.seed).items():
                calib.row(f"{label(r)}: {name}", *fmt(s))
        print(calib.markdown(), flush=True)

    # 4. the final candidates on the fixed held-out fifth: fitted on all 800, the temperature cross-fitted
    if args.holdout or args.holdout_only:
        hold = _report.Table("candidate (held-out fifth, 200 photos)", *head, fp_head, "T")
        for text in args.candidates.split(","):
            size, views, tta, l2, oe = text.split(":")
            r = recipe(int(size), views, tta == "1", float(l2), float(oe))
            f, v, tv = feats[r["size"]], VIEW_SETS[r["views"]], 2 if r["tta"] else 1
            oof = out_of_fold_logits(f["train"][:v], y, 2, r["l2"], args.k, args.seed, f["outliers"], r["oe"], tv)
            temperature = fit_temperature(oof, y.numpy())
            weight, bias, _ = fit_probe(f["train"][:v], y, 2, r["l2"], f["outliers"], r["oe"])
            s = scores(logits(weight, bias, f["test"][:tv]), data["test"][1].numpy(), temperature)
            s["fp"] = false_pass(weight, bias, f, tv, *fp_meta, temperature)
            hold.row(label(r), *fmt(s, kinds), f"{temperature:.2f}")
        print(hold.markdown(), flush=True)
    print(f"staged data and cached features in {work}{_scratch.note(args.workdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
