"""`scones monitor --compare production,shadow`: two variants of one endpoint judged on the same live requests.

Each variant's capture lies under its own prefix (`…/<endpoint>/<variant>/yyyy/mm/dd/hh/`). A request mirrored
to a shadow leaves one record under each, sharing `eventMetadata.inferenceId` (services/endpoint/capture.py; on
AWS, the InferenceId the client passed). The **agreement rate** is measured on those pairs: the share of paired
requests whose top class is the same. The rest is measured on each variant's own records: the confidence
distribution (a histogram on fixed bins and quantiles), the **low-confidence rate** at the workflow's threshold,
and **latency p50/p95** from `eventMetadata.modelLatencyMs` (the local endpoint writes it; AWS does not, and the
latency rule is then left out, saying so).

The verdict is **promote** when every rule holds, else **hold**, naming each rule broken (settings.compare_rules):
  - at least `pairs` requests answered by both;
  - agreement ≥ `agreement`;
  - the candidate's low-confidence rate − production's ≤ `low_confidence`;
  - the candidate's p95 ≤ production's p95 × (1 + `p95`).
Records are read and validated as `scones monitor` reads them (scones/monitoring/capture.py: a bad line is counted
under its reason, never a crash); images are not decoded. Memory holds one confidence and one latency per record
and one top class per paired id: a few MB per 100,000 records.
"""

from __future__ import annotations

import json
import math
import tempfile
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from scones.core import aws, settings
from scones.core.errors import NotReadyError, UsageError
from scones.core.files import write_atomic
from scones.monitoring import capture, report
from scones.monitoring.monitor import default_capture, parse_since, upload_outputs, uploaded_uris
from scones.stacks import filter_threshold
from services.endpoint.variants import PRODUCTION

ALIASES = {"production": PRODUCTION}  # other names match a variant's folder, case aside ("shadow" → Shadow)
EDGES = np.linspace(0.0, 1.0, 21)  # the confidence histogram's bins, the same for both variants
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PROMOTE, HOLD = "promote", "hold"
BEFORE_SINCE = capture.BEFORE_SINCE


@dataclass
class Side:
    """One variant's records: what the comparison needs of each, nothing more."""

    variant: str
    where: str
    files: int = 0
    lines: int = 0
    bad: Counter = field(default_factory=Counter)  # reason -> records not usable
    excluded: int = 0  # valid records before --since
    confidence: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))  # ms, of the records that carry modelLatencyMs
    top: dict[str, int] = field(default_factory=dict)  # inferenceId -> top class (records that carry one)
    classes: Counter = field(default_factory=Counter)  # top class index -> records

    @property
    def records(self) -> int:
        return len(self.confidence)

    def low_confidence_rate(self, threshold: float) -> float:
        if not self.records:
            return math.nan
        return float((np.frombuffer(self.confidence) < threshold).mean())

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(np.frombuffer(self.latency), q * 100)) if len(self.latency) else math.nan

    def quantiles(self) -> dict[str, float]:
        values = np.frombuffer(self.confidence)
        return {f"p{round(q * 100)}": float(np.quantile(values, q)) if len(values) else math.nan for q in QUANTILES}

    def histogram(self) -> list[int]:
        counts, _ = np.histogram(np.frombuffer(self.confidence), EDGES)
        return [int(c) for c in counts]

    def add(self, rec: dict, probs: list[float]) -> None:
        best = max(range(len(probs)), key=probs.__getitem__)
        self.confidence.append(probs[best])
        self.classes[best] += 1
        meta = rec.get("eventMetadata")
        meta = meta if isinstance(meta, dict) else {}
        latency = meta.get("modelLatencyMs")
        if isinstance(latency, int | float) and math.isfinite(latency) and latency >= 0:
            self.latency.append(float(latency))
        key = meta.get("inferenceId")
        if isinstance(key, str) and key:
            self.top[key] = best


def read_text(text: str, side: Side, since: datetime | None = None) -> None:
    """Every line of one capture file into `side`: unusable lines counted under capture.py's reasons."""
    side.files += 1
    cutoff = since.timestamp() if since is not None else None
    for line in text.splitlines():
        if not line.strip():
            continue
        side.lines += 1
        try:
            rec = json.loads(line)
        except ValueError:
            side.bad[capture.MALFORMED] += 1
            continue
        try:
            probs = capture.probabilities(rec)
        except capture.BadRecord as exc:
            side.bad[exc.reason] += 1
            continue
        if cutoff is not None and (capture.inference_time(rec) or -math.inf) < cutoff:
            side.excluded += 1
            continue
        side.add(rec, probs)


def read_side(root: capture.Location, variant: str, names: list[str], since: datetime | None, s3=None) -> Side:
    side = Side(variant, f"{str(root).rstrip('/')}/{variant}")
    names, _ = capture.newer(names, since)
    for _, body in capture.iter_files(root, names, s3):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            side.files += 1
            side.lines += 1
            side.bad[capture.NOT_TEXT] += 1
            continue
        read_text(text, side, since)
    return side


def files_by_variant(root: capture.Location, s3=None) -> dict[str, list[str]]:
    """The capture files under an endpoint's prefix, by variant (the first folder below it)."""
    found: dict[str, list[str]] = {}
    base = root.prefix.strip("/")
    for name in capture.list_files(root, s3):
        rest = name.replace("\\", "/")
        if root.bucket is None:
            rest = Path(name).relative_to(Path(root.prefix)).as_posix()
        elif base:
            rest = rest[len(base) :]
        variant, _, below = rest.strip("/").partition("/")
        if below:
            found.setdefault(variant, []).append(name)
    return found


def resolve(asked: str, found: dict[str, list[str]], root: capture.Location) -> str:
    name = ALIASES.get(asked.lower(), asked)
    if name in found:
        return name
    matches = [v for v in found if v.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    have = ", ".join(sorted(found)) or "none"
    raise NotReadyError(
        f"no capture of variant {asked} under {root} (variants captured there: {have})",
        next_step="scones deploy --model NEW --shadow, then scones load --via endpoint (or pass --capture)",
    )


def parse_pair(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in (text or "").split(",")]
    if len(parts) != 2 or not all(parts) or parts[0].lower() == parts[1].lower():
        raise UsageError(
            f"--compare {text!r}: name two variants, production first", "scones monitor --compare production,shadow"
        )
    return parts[0], parts[1]


@dataclass
class Comparison:
    production: Side
    candidate: Side
    threshold: float
    rules: dict
    pairs: int = 0
    agreeing: int = 0
    files: dict[str, Path | str] = field(default_factory=dict)  # local paths, or s3:// URIs once uploaded

    @property
    def agreement(self) -> float:
        return self.agreeing / self.pairs if self.pairs else math.nan

    @property
    def latency_measured(self) -> bool:
        return bool(len(self.production.latency) and len(self.candidate.latency))

    def broken(self) -> list[str]:
        """Each rule the candidate breaks, as one phrase; empty: promote."""
        rules, found = self.rules, []
        if self.pairs < rules["pairs"]:
            found.append(f"only {self.pairs} paired request(s), at least {rules['pairs']} needed")
        elif self.agreement < rules["agreement"]:
            found.append(f"agreement {self.agreement:.3f} < {rules['agreement']:g}")
        low_p = self.production.low_confidence_rate(self.threshold)
        low_c = self.candidate.low_confidence_rate(self.threshold)
        if low_c - low_p > rules["low_confidence"]:
            found.append(
                f"low-confidence rate {low_c:.3f} vs {low_p:.3f} (worse by more than {rules['low_confidence']:g})"
            )
        if self.latency_measured:
            p95_p, p95_c = self.production.latency_ms(0.95), self.candidate.latency_ms(0.95)
            if p95_c > p95_p * (1 + rules["p95"]):
                found.append(f"latency p95 {p95_c:.2f} ms vs {p95_p:.2f} ms (worse by more than {rules['p95']:.0%})")
        return found

    @property
    def verdict(self) -> str:
        return HOLD if self.broken() else PROMOTE

    def rule_text(self) -> list[str]:
        r = self.rules
        latency = f"latency p95 not worse by more than {r['p95']:.0%}"
        if not self.latency_measured:
            latency += " (not applied: a variant's capture has no modelLatencyMs)"
        return [
            f"at least {r['pairs']} paired requests",
            f"agreement ≥ {r['agreement']:g}",
            f"low-confidence rate (below {self.threshold:g}) not worse by more than {r['low_confidence']:g}",
            latency,
        ]

    def figures(self, side: Side) -> dict:
        return {
            "variant": side.variant,
            "capture": side.where,
            "files": side.files,
            "records_read": side.lines,
            "records": side.records,
            "unusable_by_reason": dict(side.bad),
            "before_since": side.excluded,
            "low_confidence_rate": _number(side.low_confidence_rate(self.threshold)),
            "confidence_quantiles": {k: _number(v) for k, v in side.quantiles().items()},
            "confidence_histogram": side.histogram(),
            "latency_p50_ms": _number(side.latency_ms(0.5)),
            "latency_p95_ms": _number(side.latency_ms(0.95)),
            "class_counts": {f"class_{k}": n for k, n in sorted(side.classes.items())},
        }

    def summary(self) -> dict:
        return {
            "verdict": self.verdict,
            "why": self.broken() or ["every rule holds"],
            "rules": self.rule_text(),
            "threshold": self.threshold,
            "paired": self.pairs,
            "agreement": _number(self.agreement),
            "confidence_bins": [round(float(e), 3) for e in EDGES],
            "production": self.figures(self.production),
            "candidate": self.figures(self.candidate),
            "outputs": {k: str(v) for k, v in self.files.items()},
        }

    def table(self) -> str:
        """The side-by-side figures, as printed."""
        p, c = self.production, self.candidate
        rows = [
            ("records", f"{p.records}", f"{c.records}"),
            ("unusable", f"{sum(p.bad.values())}", f"{sum(c.bad.values())}"),
            (
                f"low-confidence (< {self.threshold:g})",
                f"{p.low_confidence_rate(self.threshold):.3f}",
                f"{c.low_confidence_rate(self.threshold):.3f}",
            ),
            *(
                (f"confidence {k}", f"{v:.3f}", f"{c.quantiles()[k]:.3f}")
                for k, v in p.quantiles().items()
                if k in ("p5", "p50")
            ),
            ("latency p50 (ms)", _ms(p.latency_ms(0.5)), _ms(c.latency_ms(0.5))),
            ("latency p95 (ms)", _ms(p.latency_ms(0.95)), _ms(c.latency_ms(0.95))),
        ]
        width = max(len(p.variant), len(c.variant), 10)
        lines = [f"{'':<26} {p.variant:>{width}} {c.variant:>{width}}"]
        lines += [f"{name:<26} {a:>{width}} {b:>{width}}" for name, a, b in rows]
        lines.append(f"agreement on {self.pairs} paired request(s): {_rate(self.agreement)}")
        return "\n".join(lines)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def compare(production: Side, candidate: Side, threshold: float, rules: dict | None = None) -> Comparison:
    """The figures and the verdict of two variants already read."""
    found = Comparison(production, candidate, threshold, rules or settings.compare_rules())
    for key, best in candidate.top.items():
        theirs = production.top.get(key)
        if theirs is not None:
            found.pairs += 1
            found.agreeing += theirs == best
    return found


def write_outputs(result: Comparison, out: Path) -> Comparison:
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "compare.json"}
    if result.production.records and result.candidate.records:
        files["confidence"] = report.plot_compare_confidence(result, out / "compare_confidence.png")
    files["report"] = report.write_compare_html(result, files.get("confidence"), out / "report.html")
    result.files = files
    write_atomic(files["summary"], json.dumps(result.summary(), indent=2) + "\n")
    return result


def run(
    variants: str,
    capture_uri: str | None = None,
    out: Path | str | None = None,
    threshold: float | None = None,
    since: str | None = None,
    log=print,
) -> Comparison:
    """The whole of `scones monitor --compare A,B`: read both variants' capture under the endpoint's prefix,
    pair them, measure, judge, and write compare.json and report.html."""
    first, second = parse_pair(variants)
    root = capture.Location.parse(capture_uri or default_capture())
    threshold = filter_threshold(threshold)
    cutoff = parse_since(since)
    s3 = aws.client("s3") if root.bucket is not None else None
    try:
        found = files_by_variant(root, s3)
    except capture.CaptureNotFoundError as exc:
        raise NotReadyError(
            f"nothing to compare: {exc}", next_step="scones load --via endpoint --count 200 (or pass --capture)"
        ) from None
    names = resolve(first, found, root), resolve(second, found, root)
    if names[0] == names[1]:
        raise UsageError(
            f"--compare {variants}: both name variant {names[0]}", "scones monitor --compare production,shadow"
        )
    log(f"comparing {names[0]} with {names[1]} under {root}; threshold {threshold:g}")
    sides = [read_side(root, name, found[name], cutoff, s3) for name in names]
    for side in sides:
        if not side.records:
            reasons = "; ".join(f"{n} {r}" for r, n in side.bad.most_common()) or "no record"
            raise NotReadyError(
                f"variant {side.variant}: no usable record under {side.where} ({reasons})",
                next_step="scones load --via endpoint --count 200",
            )
    result = compare(sides[0], sides[1], threshold)
    out_uri = str(out) if str(out or "").startswith("s3://") else None
    if out_uri is not None and not out_uri[5:].split("/", 1)[0]:
        raise UsageError(f"--out {out_uri}: name a bucket (s3://bucket/prefix)")
    if out_uri is None:
        write_outputs(result, Path(out) if out else settings.data_dir() / "reports" / "compare")
        log_verdict(result, log)
        log(f"report: {result.files['report']}")
        return result
    with tempfile.TemporaryDirectory(prefix="scones-compare-") as scratch:  # written, uploaded, removed
        write_outputs(result, Path(scratch))
        log_verdict(result, log)
        keys = upload_outputs(Path(scratch), out_uri)
        result.files = uploaded_uris(result.files, Path(scratch), out_uri)
    log(f"report: {result.files['report']}  ({len(keys)} files uploaded)")
    return result


def log_verdict(result: Comparison, log) -> None:
    log(result.table())
    why = result.broken()
    log(f"verdict: {result.verdict}" + (f" ({'; '.join(why)})" if why else " (every rule holds)"))
