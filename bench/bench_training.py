"""Training benchmark: `python bench/bench_training.py [--vehicles] [--epochs N]`.

Stages the synthetic set to a fresh local cloud, then times `scones train` end to end (channel download,
training, calibration, ONNX export, packing, upload) and prints the artifact's metrics.
Targets (issue #4): binary test accuracy >= 0.97, ECE after scaling <= 0.03, wall <= 60 s on 2 cores;
10 vehicle classes: top-1 >= 0.90 (wall time reported).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
from _cloud import local_cloud
from _report import Report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", action="store_true", help="the 10 vehicle classes instead of the binary set")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    classes = "vehicles" if args.vehicles else "bicycle,motorcycle"
    tmp = str(_scratch.folder("scones-bench-train-"))
    with local_cloud() as url:
        env = dict(os.environ, AWS_ENDPOINT_URL=url, SCONES_DATA_DIR=f"{tmp}/data", SCONES_STATE_DIR=f"{tmp}/state")
        staged = subprocess.run(
            [sys.executable, "-m", "scones.cli", "stage", "--classes", classes],
            env=env,
            capture_output=True,
            text=True,
        )
        if staged.returncode:
            raise SystemExit(staged.stderr)
        command = [sys.executable, "-m", "scones.cli", "train"]
        if args.epochs:
            command += ["--epochs", str(args.epochs)]
        t0 = time.perf_counter()
        trained = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if trained.returncode:
            raise SystemExit(trained.stdout + trained.stderr)
    print(trained.stdout)
    report = Report("training-vehicles" if args.vehicles else "training")
    found = sorted(Path(tmp).glob("state/**/model/metrics.json"), key=lambda p: p.stat().st_mtime)
    if found:
        m = json.loads(found[-1].read_text())
        report.result(f"test accuracy, {classes}", f"{m['accuracy']:.3f}", ">= 0.90" if args.vehicles else ">= 0.97")
        report.result(
            "ECE before → after temperature scaling", f"{m['ece_before']:.3f} → {m['ece_after']:.3f}", "<= 0.03"
        )
        report.result(
            "train.py: epochs / training loop / script wall",
            f"{m['epochs']} / {m['train_seconds']:.1f} s / {m['wall_seconds']:.1f} s",
        )
    report.result(
        f"`scones train` wall time, {classes}, {os.cpu_count()} CPU cores (process start to model in S3)",
        f"{wall:.1f} s",
        "" if args.vehicles else "<= 60 s",
    )
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
