"""`make demo`: the whole job on the local cloud, step by step, ending with one summary table.

    python -m scones.demo [--out data/demo] [--source synthetic] [--classes bicycle,motorcycle] [--epochs N]

Each step is a `scones` command run as a user runs it; its output goes to the terminal and to
<out>/logs/NN-<step>.log. The first failing step stops the demo, naming the step and its log.

The last two steps update the model safely (docs/safe-updates.md), under a little traffic to the endpoint
(load.Steady, every answer counted): the same model again, rolled out by a short canary and promoted; then a broken
candidate (scones/broken_model.py: it passes the probe, fails on every real image), rolled back by its 5xx
alarm. Their alarms and the endpoint's metrics use 1-s periods (settings), so both take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scones import broken_model, endpoint, load
from scones.core import failures, settings
from scones.core import target as targets

FAST = {settings.ROLLOUT_PERIOD_S: "1", settings.ENDPOINT_METRICS_S: "1"}  # seconds, not minutes, for the demo
PROMOTED, ROLLED_BACK = "rollout-promoted", "rollout-rolled-back"
TRAFFIC_GAP_S = 0.1  # about 10 requests a second: a little traffic, as on 2 shared cores


@dataclass
class Step:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)  # more environment for this step's command
    expect: int = 0  # the exit code that means it went as planned (a rolled-back rollout exits 4)
    traffic: bool = False  # steady requests to the endpoint while it runs, counted in <out>/<name>.json
    prepare: Callable[[Path], None] | None = None  # run (in this process) before the command


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
        Step(
            PROMOTED,
            ["deploy", "--target", "local", "--model", "@candidates:same", "--rollout", "canary:50:3"],
            env=FAST,
            traffic=True,
            prepare=candidates,
        ),
        Step(
            ROLLED_BACK,
            ["deploy", "--target", "local", "--model", "@candidates:broken", "--force", "--rollout", "canary:50:30"],
            env=FAST,
            expect=4,
            traffic=True,
        ),
    ]


def candidates(out: Path) -> None:
    """The two models the rollout steps try, in a folder of this run's own (a rerun must name new models):
    `same`, a copy of the model the endpoint serves; `broken`, a model with its labels and preprocessing that
    fails on every real image. Their paths go to <out>/candidates.json; earlier runs' folders go, but the one
    the endpoint serves from."""
    served = Path(endpoint.record(settings.endpoint_name())["model_dir"])
    root = out / "models"
    for old in root.glob("run-*"):
        if old not in served.parents:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"run-{int(time.time())}"
    same = shutil.copytree(served, folder / "same")
    broken = broken_model.make(folder / "broken", like=served)
    (out / "candidates.json").write_text(json.dumps({"same": str(same), "broken": str(broken)}) + "\n")


@contextlib.contextmanager
def traffic(out: Path, step: Step) -> Iterator[None]:
    """Steady requests (staged test images) to the endpoint while the step runs; counts to <out>/<step>.json."""
    if not step.traffic:
        yield
        return
    targets.activate("local")
    bodies = load.staged_bodies(settings.bucket(), settings.prefix(), 20)
    with load.Steady(load.endpoint_sender(settings.endpoint_name(), 1), bodies, TRAFFIC_GAP_S) as sent:
        yield
    (out / f"{step.name}.json").write_text(json.dumps({"traffic": sent.counts()}) + "\n")


def run_step(number: int, step: Step, out: Path, scones: str, env: dict[str, str] | None = None) -> float:
    """Run one step, teeing its output to the terminal and its log; raise StepFailed on an exit code other than
    the one it expects. `env`: the command's environment (default: this process's), with the step's own added."""
    if step.prepare is not None:
        step.prepare(out)
    args = list(step.args)
    for i, arg in enumerate(args):  # "@load-x": the start time the load step wrote; "@file:key": that key
        if arg.startswith("@"):
            name, _, key = arg[1:].partition(":")
            args[i] = json.loads((out / f"{name}.json").read_text())[key or "started_at"]
    log = out / "logs" / f"{number:02d}-{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n=== demo step {number}: scones {' '.join(args)}", flush=True)
    started = time.perf_counter()
    with traffic(out, step), log.open("w") as sink:
        command = [scones, *args]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**(env or os.environ), **step.env},
        )
        for line in proc.stdout:
            sys.stdout.write(line)
            sink.write(line)
        code = proc.wait()
    if code != step.expect:
        raise StepFailed(number, step, code, log)
    if step.traffic:  # what the rollout printed, beside the traffic's counts
        found = _json(out / f"{step.name}.json")
        found.update(exit=code, seconds=round(time.perf_counter() - started, 1), lines=rollout_lines(log))
        (out / f"{step.name}.json").write_text(json.dumps(found, indent=2) + "\n")
    return time.perf_counter() - started


def rollout_lines(log: Path) -> dict[str, str]:
    """The lines of a rollout's log the summary shows: its plan, the rollback's why-line, how it ended."""
    found = {}
    for line in log.read_text().splitlines():
        for key, start in (
            ("plan", "rollout plan for endpoint"),
            ("rollback", "rollback: 100% of endpoint"),
            ("rollback_done", "rollback done in"),
            ("promoted", "all stages passed:"),
        ):
            if line.startswith(start):
                found[key] = line
    return found


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
        *rollout_rows("rollout of the same model (canary:50:3)", _json(out / f"{PROMOTED}.json")),
        *rollout_rows("rollout of a broken model (canary:50:30)", _json(out / f"{ROLLED_BACK}.json")),
    ]
    expected = m_clean.get("verdict") == "OK" and m_dark.get("verdict") == "DRIFT"
    return rows, expected


def rollout_rows(label: str, found: dict) -> list[tuple[str, str]]:
    """How a rollout step ended: promoted, or rolled back (and the rollback's why-line); the requests during it."""
    lines, sent = found.get("lines") or {}, found.get("traffic") or {}
    counts = (
        f"{sent.get('sent')} requests during it: {sent.get('succeeded')} answered, {sent.get('failed')} failed, "
        f"{sent.get('lost')} lost"
    )
    if "rollback" in lines:
        why = lines["rollback"].split(" (", 1)[-1].removesuffix(")")
        return [(label, f"rolled back automatically ({found.get('seconds')} s in all); {counts}"), ("  why", why)]
    if "promoted" in lines:
        return [(label, f"promoted ({found.get('seconds')} s in all); {counts}")]
    return [(label, "not run" if not found else f"exit {found.get('exit')}; {counts}")]


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
    env = dict(os.environ)  # the steps' environment, before the traffic's target activation adds to ours
    for number, step in enumerate(steps(out, args.source, args.classes, args.count, args.epochs), start=1):
        try:
            run_step(number, step, out, args.scones, env)
        except StepFailed as exc:
            print(f"\ndemo stopped: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # preparing a step or its traffic (the command's own failures are StepFailed)
            failure = failures.explain(exc, settings.DEFAULT_TARGET)
            print(f"\ndemo stopped: step {number} '{step.name}' could not start: {failure.line()}", file=sys.stderr)
            return 1
    rows, expected = summary_rows(out)
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s; `make down` stops everything\n")
    print(table(rows))
    if not expected:
        print("\nunexpected verdicts: the clean traffic should be OK and the dark traffic DRIFT", file=sys.stderr)
        return 1
    lost = lost_in_rollouts(out)
    if lost:
        print(f"\n{lost} requests got no answer during the rollouts: a rollout must lose none", file=sys.stderr)
        return 1
    return 0


def lost_in_rollouts(out: Path) -> int:
    """Requests of the rollout steps' traffic that got no answer at all (an error answer is not lost)."""
    return sum((_json(out / f"{name}.json").get("traffic") or {}).get("lost", 0) for name in (PROMOTED, ROLLED_BACK))


if __name__ == "__main__":
    sys.exit(main())
