"""Staging benchmark: `python bench/bench_staging.py [--use-running]`.

Stages the default binary synthetic set (1,200 images) to a fresh local cloud with an empty data dir (so
drawing, PNG writing and upload all count), re-runs it (idempotent: nothing to send), and reports a raw-pixel
logistic regression's test accuracy on the binary and the 10-vehicle sets.
Targets (issue #3): stage <= 10 s, re-run <= 2 s, logistic regression on the binary set <= 0.80.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
from _cloud import local_cloud
from _report import Report

from scones.data import probe, staging
from scones.data.classes import parse_classes


def stage(env: dict, *args: str) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "scones.cli", "stage", *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    print("   " + out.stdout.strip().splitlines()[-1])
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use-running", action="store_true")
    args = parser.parse_args()
    data_dir = str(_scratch.folder("scones-bench-data-"))
    report = Report("staging")
    with local_cloud(args.use_running) as url:
        env = dict(os.environ, AWS_ENDPOINT_URL=url, SCONES_DATA_DIR=data_dir)
        print("stage --source synthetic (bicycle, motorcycle; 1,200 images), empty data dir:")
        first = stage(env, "--source", "synthetic")
        report.result(
            "stage the synthetic binary set (1,200 images) to S3, CLI process included", f"{first:.1f} s", "<= 10 s"
        )
        print("re-run (idempotent):")
        second = stage(env, "--source", "synthetic")
        report.result("idempotent re-run", f"{second:.1f} s", "<= 2 s")
    for spec in ("bicycle,motorcycle", "vehicles"):
        classes = parse_classes(spec)
        os.environ["SCONES_DATA_DIR"] = data_dir
        source = staging.resolve_source("synthetic", classes)
        workdir = staging.default_workdir(source, classes)
        manifest = staging.build(source, classes, workdir)
        accuracy = probe.staged_accuracy(workdir)
        report.result(
            f"raw-pixel logistic regression, {len(classes)} classes: test accuracy",
            f"{accuracy:.3f} (chance {1 / len(classes):.2f}; n_test={sum(manifest['counts']['test'].values())})",
            "<= 0.80" if len(classes) == 2 else "",
        )
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
