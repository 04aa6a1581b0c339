"""Outlier exposure benchmark: `python bench/bench_outliers.py [--vehicles] [--seeds 0,1,2] [--threads 2]`.

Stages the synthetic set with its outlier channels (no cloud needed: a local folder), trains training/train.py
twice exactly as `scones train` runs it — before: without the `outliers` channel; after: with it — and
evaluates both through the serving handlers on the test split and on the HELD-OUT outlier kinds (never seen
in training). Prints the false-pass table before/after, accuracy, ECE, coverage, and each run's wall and CPU
seconds (the machine may be shared: CPU seconds are the steadier figure). With --seeds, the 'after' model is
trained once per train.py seed on the same staged data, to show how much the figures move with the seed alone.
Targets (issue #13), binary set: false-pass <= 0.05 on held-out other vehicles, <= 0.01 on noise / flat /
tiny; accuracy >= 0.97, ECE <= 0.03, coverage >= 0.90, training <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _report  # noqa: E402
import _scratch  # noqa: E402

from scones import scoring as evaluate  # noqa: E402
from scones.data import lst, outliers, staging  # noqa: E402
from scones.data.classes import VEHICLES  # noqa: E402


def train(staged: Path, model_dir: Path, with_outliers: bool, extra: list[str]) -> dict:
    env = dict(
        os.environ,
        SM_CHANNEL_TRAIN=str(staged / "train"),
        SM_CHANNEL_TEST=str(staged / "test"),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DIR=str(model_dir.parent),
    )
    if with_outliers:
        env["SM_CHANNEL_OUTLIERS"] = str(staged / "outliers")
    classes = ",".join(json.loads((staged / "manifest.json").read_text())["classes"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(ROOT / "training" / "train.py"), "--classes", classes, *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    result["process_wall_s"] = wall
    result["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


TARGETS = {"vehicle": "<= 0.05", "generated": "<= 0.01"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", action="store_true", help="the 10 vehicle classes instead of the binary set")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training (default 2)")
    parser.add_argument("--epochs", type=int, default=None, help="default: train.py's")
    parser.add_argument("--seeds", default="0", help="train.py seeds of the 'after' model, e.g. 0,1,2 (default 0)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the staged data and models here")
    parser.add_argument("--hp", action="append", default=[], help="extra train.py argument, e.g. --hp=--oe-weight=1")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    classes = list(VEHICLES) if args.vehicles else ["bicycle", "motorcycle"]
    work = _scratch.folder("scones-bench-outliers-", keep=args.workdir)
    source = staging.resolve_source("synthetic", classes, cache_dir=work / "cache")
    staged = work / "staged"
    manifest = staging.build(source, classes, staged, "auto")
    test_images, test_labels = lst.load_images(staged / "test", staged / "test.lst")
    test_kinds = manifest["outliers"]["test"]["kinds"]
    outlier_images, outlier_kinds = lst.load_images(staged / "outliers_test", staged / "outliers_test.lst")
    extra = ["--threads", str(args.threads), *args.hp]
    if args.epochs:
        extra += ["--epochs", str(args.epochs)]
    runs = {}  # name -> (train.py's RESULT, evaluation)
    plan = [("before", False, seeds[0])] + [(f"after s{seed}", True, seed) for seed in seeds]
    for name, with_outliers, seed in plan:
        model_dir = work / name.replace(" ", "-") / "model"
        result = train(staged, model_dir, with_outliers, [*extra, "--seed", str(seed)])
        metrics = evaluate.evaluate(model_dir, test_images, test_labels, (outlier_images, outlier_kinds, test_kinds))
        runs[name] = (result, metrics)
        print(f"{name}: trained in {result['train_s']:.1f} s", file=sys.stderr, flush=True)

    names = list(runs)
    precision = runs[names[-1]][0].get("precision", "?")
    print(
        f"{', '.join(classes)}: {len(test_labels)} test images; held-out outlier kinds (never trained on): "
        f"{', '.join(test_kinds)}"
    )
    print(f"outlier kinds used in training (after): {', '.join(manifest['outliers']['train']['kinds'])}")
    print(f"rule: {outliers.RULE}")
    print(f"before: train.py seed {seeds[0]} without the outliers channel; after sN: with it, train.py --seed N\n")
    held_out = _report.Table(
        "held-out input", "n", *[f"passes >= {evaluate.DEFAULT_THRESHOLD}: {n}" for n in names], "target"
    )
    vehicle_kinds = set(VEHICLES)
    for kind in test_kinds:
        rates = [runs[name][1]["false_pass"]["per_kind"][kind] for name in names]
        target = TARGETS["vehicle" if kind in vehicle_kinds else "generated"]
        held_out.row(kind, rates[0]["n"], *[f"{r['rate']:.3f}" for r in rates], target)
    overall = [runs[name][1]["false_pass"] for name in names]
    held_out.row("all held-out outliers", overall[0]["n"], *[f"{r['rate']:.3f}" for r in overall], "")
    rows = [
        ("test accuracy", "accuracy", "{:.4f}", ">= 0.97"),
        ("ECE (served, calibrated)", "ece", "{:.4f}", "<= 0.03"),
        (f"coverage (test at >= {evaluate.DEFAULT_THRESHOLD})", "coverage", "{:.3f}", ">= 0.90"),
        ("accuracy among covered", "accuracy_covered", "{:.4f}", ""),
    ]
    figures = _report.Table("figure", *names, "target")
    for label, key, fmt, target in rows:
        figures.row(label, *[fmt.format(runs[name][1][key]) for name in names], target)
    for label, key in (
        ("training loop, wall s", "train_s"),
        ("train.py process, wall s", "process_wall_s"),
        ("train.py process, CPU s (user+sys)", "process_cpu_s"),
    ):
        target = "<= 60" if key == "process_wall_s" and not args.vehicles else ""  # the binary set's target
        figures.row(label, *[f"{runs[name][0][key]:.1f}" for name in names], target)
    print(held_out.markdown() + "\n\n" + figures.markdown())
    _report.write(
        "outliers-vehicles" if args.vehicles else "outliers",
        [held_out, figures],
        notes=f"{args.threads} torch threads, {precision} training steps. before: train.py seed {seeds[0]} without "
        "the outliers channel; after sN: with it, train.py --seed N.",
    )
    print(
        f"\n{args.threads} torch threads, {precision} training steps, {os.cpu_count()} CPU cores visible, load "
        f"average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; staged data and models in {work}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
