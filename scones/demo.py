"""`make demo`: the whole job on the local cloud, step by step, ending with one summary table.

    python -m scones.demo [--out data/demo] [--source synthetic] [--classes bicycle,motorcycle] [--epochs N]

Each step is a `scones` command run as a user runs it; its output goes to the terminal and to
<out>/logs/NN-<step>.log. The first failing step stops the demo, naming the step and its log.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Step:
    name: str
    args: list[str]


class StepFailed(Exception):
    def __init__(self, number: int, step: Step, code: int, log: Path) -> None:
        super().__init__(f"step {number} '{step.name}' failed (exit {code}); its log: {log}")


def steps(out: Path, source: str, classes: str, count: int, epochs: int | None = None) -> list[Step]:
    return [
        Step("up", ["up", "--check"]),
        Step("stage", ["stage", "--source", source, "--classes", classes, "--explore"]),
        Step("train", ["train"] + (["--epochs", str(epochs)] if epochs else [])),
        Step("evaluate", ["evaluate", "--out", str(out)]),
        Step("deploy", ["deploy", "--target", "local"]),
        Step("invoke-map", ["invoke", "--batch", "20", "--allow-failures"]),  # low confidence fails some, by design
        Step("invoke-missing", ["invoke", "--key", "data/test/no-such-image.png", "--allow-failures"]),
        Step("graph-single", ["graph", "--out", str(out / "graph-single.png")]),
        Step("graph-batch", ["graph", "--batch", "--out", str(out / "graph-batch.png")]),
        Step("export", ["export", "--out-dir", str(out / "statemachine")]),
        Step("load-clean", ["load", "--mode", "burst", "--count", str(count), "--json", str(out / "load-clean.json")]),
        Step("monitor-clean", ["monitor", "--out", str(out / "monitor-clean"), "--since", "@load-clean"]),
        Step(
            "load-dark",
            [
                "load",
                "--mode",
                "burst",
                "--count",
                str(count),
                "--drift",
                "dark",
                "--json",
                str(out / "load-dark.json"),
            ],
        ),
        Step("monitor-dark", ["monitor", "--out", str(out / "monitor-dark"), "--since", "@load-dark", "--alert"]),
    ]


def run_step(number: int, step: Step, out: Path, scones: str) -> float:
    """Run one step, teeing its output to the terminal and its log; raise StepFailed on a non-zero exit."""
    args = list(step.args)
    for i, arg in enumerate(args):  # "@load-x": the start time that the load step wrote to its JSON
        if arg.startswith("@"):
            args[i] = json.loads((out / f"{arg[1:]}.json").read_text())["started_at"]
    log = out / "logs" / f"{number:02d}-{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n=== demo step {number}: scones {' '.join(args)}", flush=True)
    started = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen([scones, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            sink.write(line)
        code = proc.wait()
    if code != 0:
        raise StepFailed(number, step, code, log)
    return time.perf_counter() - started


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def summary_rows(out: Path) -> tuple[list[tuple[str, str]], bool]:
    """The closing table, and whether both verdicts are the expected ones (clean OK, dark DRIFT)."""
    metrics = _json(out / "metrics.json")
    clean, dark = _json(out / "load-clean.json"), _json(out / "load-dark.json")
    m_clean, m_dark = _json(out / "monitor-clean" / "summary.json"), _json(out / "monitor-dark" / "summary.json")

    def verdict(m: dict) -> str:
        failed = m.get("failed_checks") or []
        return m.get("verdict", "?") + (f" ({', '.join(failed)})" if failed else "")

    def counts(load: dict) -> str:
        return f"sent {load.get('sent')}: {load.get('succeeded')} succeeded, {load.get('failed')} failed"

    rows = [
        (
            "test accuracy / ECE",
            f"{metrics.get('accuracy', float('nan')):.4f} / {metrics.get('ece', float('nan')):.4f}",
        ),
        (
            "workflow latency p50 / p95 (burst, 8 in flight)",
            f"{clean.get('latency_ms', {}).get('p50')} / {clean.get('latency_ms', {}).get('p95')} ms",
        ),
        ("clean burst", counts(clean)),
        ("dark burst", counts(dark)),
        ("monitor, clean traffic", verdict(m_clean)),
        ("monitor, dark traffic", verdict(m_dark)),
        ("clean report", str(out / "monitor-clean" / "report.html")),
        ("dark report", str(out / "monitor-dark" / "report.html")),
        ("plots", f"{out}/monitor-*/*.png, {out}/confusion_matrix.png, {out}/reliability.png"),
        ("graphs", f"{out}/graph-single.png, {out}/graph-batch.png"),
    ]
    expected = m_clean.get("verdict") == "OK" and m_dark.get("verdict") == "DRIFT"
    return rows, expected


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 2) + "+" + "-" * (max(len(v) for _, v in rows) + 2)
    return "\n".join([line, *(f" {k:<{width}} | {v}" for k, v in rows), line])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/demo"))
    p.add_argument("--source", default="synthetic")
    p.add_argument("--classes", default="bicycle,motorcycle")
    p.add_argument("--count", type=int, default=200, help="requests per load burst")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: train.py's)")
    p.add_argument("--scones", default=str(Path(sys.executable).with_name("scones")), help="the scones executable")
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for number, step in enumerate(steps(out, args.source, args.classes, args.count, args.epochs), start=1):
        try:
            run_step(number, step, out, args.scones)
        except StepFailed as exc:
            print(f"\ndemo stopped: {exc}", file=sys.stderr)
            return 1
    rows, expected = summary_rows(out)
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s; `make down` stops everything\n")
    print(table(rows))
    if not expected:
        print("\nunexpected verdicts: the clean traffic should be OK and the dark traffic DRIFT", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
