"""`scones monitor`: read the capture, compare it with the baseline, write the Model Monitor files, plots and
the HTML report, put the figures to CloudWatch and (with --alert) publish to the alert topic on drift."""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scones import models, stacks
from scones.core import aws, service, settings
from scones.core import target as targets
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.core.files import write_atomic
from scones.core.progress import Progress
from scones.data import staged
from scones.monitoring import baseline as baseline_mod
from scones.monitoring import capture, drift, report
from scones.stacks import filter_threshold

NAMESPACE = "scones"
DRIFT_METRIC = "DriftDetected"  # the template's alarm watches this one (1 = drift)


class MonitorError(SconesError):
    """Nothing could be analysed (every record unusable, or a bad baseline)."""


def _number(value: float) -> float | None:
    """A figure for JSON: NaN (nothing to measure) becomes null."""
    return None if value is None or math.isnan(value) else value


@dataclass
class MonitorResult:
    capture: capture.Location
    table: capture.CaptureTable  # running statistics of every record read, and a bounded sample of rows
    frame: object  # pandas.DataFrame of the sampled rows analysed (every row up to capture.SAMPLE)
    baseline: baseline_mod.Baseline
    baseline_source: str
    threshold: float
    checks: list[drift.Check]
    files: dict[str, Path | str] = field(default_factory=dict)  # local paths, or s3:// URIs once uploaded
    seconds: float = 0.0
    # what the local endpoint answered but could not capture, by reason; None where it is not counted (AWS)
    capture_lost: dict[str, int] | None = None

    @property
    def failed(self) -> list[drift.Check]:
        return [c for c in self.checks if c.failed]

    @property
    def verdict(self) -> str:
        if any(c.insufficient for c in self.checks):
            return drift.INSUFFICIENT
        return "DRIFT" if self.failed else "OK"

    @property
    def analysed(self) -> int:
        return self.table.analysed

    @property
    def skipped_before_since(self) -> int:
        return self.table.excluded[capture.BEFORE_SINCE]

    @property
    def low_confidence_rate(self) -> float:
        return self.table.below / self.analysed if self.analysed else math.nan

    def summary(self) -> dict:
        checks = self.checks
        return {
            "verdict": self.verdict,
            "failed_checks": [c.name for c in self.failed],
            "capture": str(self.capture),
            "files": self.table.files,
            "files_skipped_before_since": self.table.files_skipped,
            "records": self.table.lines,
            "parsed": self.table.parsed,
            "batch_records": self.table.batches,  # batch requests: one record, one analysed row per image
            "batch_images": self.table.batch_images,
            "unparseable": self.table.unparseable,
            "unparseable_by_reason": dict(self.table.bad),
            "excluded_by_reason": dict(self.table.excluded),
            "untimed": self.table.untimed,
            "capture_lost": self.capture_lost,
            "skipped_before_since": self.skipped_before_since,
            "analysed": self.analysed,
            "sampled_rows": len(self.frame),  # records.csv and the plots
            "baseline": self.baseline_source,
            "baseline_images": len(self.baseline.frame),
            "threshold": self.threshold,
            "low_confidence_rate": _number(self.low_confidence_rate),
            "mean_confidence": _number(self.table.moments["confidence"].mean),
            "checks": [{k: _number(v) if isinstance(v, float) else v for k, v in c.as_dict().items()} for c in checks],
            "outputs": {k: str(v) for k, v in self.files.items()},
            "seconds": round(self.seconds, 2),
        }


# --- defaults -----------------------------------------------------------------------------------------


def default_capture() -> str:
    return f"s3://{settings.capture_bucket()}/{settings.capture_prefix()}/{settings.endpoint_name()}"


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """--since: an ISO time (2026-11-27T01:00:00Z) or a duration back from now (90s, 15m, 2h, 1d)."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(**{units[text[-1]]: float(text[:-1])})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: give an ISO time (2026-11-27T01:00:00Z) or a duration (15m, 2h)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- the baseline -------------------------------------------------------------------------------------


def baseline_prefix(model_uri: str) -> str:
    """Beside the model's artifact: s3://bucket/models/<job>/monitoring/baseline/."""
    return model_uri.rsplit("/output/", 1)[0] + "/monitoring/baseline/"


def _download(prefix_uri: str, folder: Path) -> bool:
    s3 = aws.client("s3")
    where = capture.Location.parse(prefix_uri)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for name in baseline_mod.FILES:
            s3.download_file(where.bucket, f"{where.prefix}/{name}", str(folder / name))
    except Exception:
        return False
    return True


def compute_baseline(model_uri: str, bucket: str, prefix: str, threshold: float, log=print):
    """The staged test split through the serving handlers; uploaded beside the model and kept in the reports dir."""
    folder = models.reports_dir(model_uri) / "baseline"
    with tempfile.TemporaryDirectory(prefix="scones-baseline-") as tmp:
        model_dir = models.fetch_model(model_uri, Path(tmp) / "model")
        channels = staged.download_channels(bucket, prefix, Path(tmp) / "data", splits=("test",))
        images = [(p.name, p.read_bytes()) for p in sorted(channels["test"].rglob("*.png"))]
        if not images:
            raise NotReadyError(f"no staged test image under s3://{bucket}/{prefix}/test/", next_step="scones stage")
        made = baseline_mod.build(model_dir, images, threshold, model_uri)
    baseline_mod.write(made, folder)
    if model_uri.startswith("s3://"):
        where = capture.Location.parse(baseline_prefix(model_uri))
        for name in baseline_mod.FILES:
            aws.client("s3").upload_file(str(folder / name), where.bucket, f"{where.prefix}/{name}")
    log(f"baseline: {len(images)} held-out images through the serving handlers → {folder}")
    return made, str(folder)


def resolve_baseline(given: str | None, bucket: str, prefix: str, threshold: float, log=print):
    """--baseline DIR | s3://…/ | model.tar.gz URI; default: the deployed model's, else the newest model's
    (computed once if missing, cached beside the model)."""
    if given and not given.startswith("s3://"):
        try:
            return baseline_mod.read(Path(given)), given
        except baseline_mod.BaselineError as exc:
            raise UsageError(str(exc)) from None
    if given and not given.endswith("model.tar.gz"):
        with tempfile.TemporaryDirectory(prefix="scones-baseline-") as folder:
            if not _download(given, Path(folder)):
                raise UsageError(f"--baseline {given}: no {', '.join(baseline_mod.FILES)} there")
            try:
                return baseline_mod.read(Path(folder)), given
            except baseline_mod.BaselineError as exc:
                raise UsageError(f"--baseline {given}: {str(exc).replace(folder, given.rstrip('/'))}") from None
    try:
        if given:
            model_uri = given
        else:
            model_uri, why = models.served_or_newest(
                bucket, targets.current().name if targets.is_active() else settings.target(), log
            )
            log(f"baseline of {model_uri}: {why} (pass --baseline to choose another)")
    except models.ModelNotFoundError as exc:
        raise NotReadyError(str(exc), next_step="scones train") from None
    cached = models.reports_dir(model_uri) / "baseline"
    if all((cached / n).is_file() for n in baseline_mod.FILES):
        found = baseline_mod.read(cached)
        if found.meta.get("model") == model_uri:
            return found, str(cached)
    remote = baseline_prefix(model_uri)
    if _download(remote, cached):
        return baseline_mod.read(cached), remote
    log(f"no baseline beside {model_uri} yet: computing it")
    return compute_baseline(model_uri, bucket, prefix, threshold, log)


# --- the run ------------------------------------------------------------------------------------------


def analyse(
    where: capture.Location,
    base: baseline_mod.Baseline,
    baseline_source: str,
    threshold: float,
    since: datetime | None = None,
    progress=None,
    capture_labels: list[str] | None = None,
    workers: int | None = None,
    meanwhile=None,
) -> MonitorResult:
    """Read every record under `where` and run the drift checks (no files written). Fewer usable records than
    the checks need give the verdict INSUFFICIENT DATA, not an error. `capture_labels`, when known (the deployed
    stack's), must be the baseline's. `meanwhile`: work for this process while the workers read (capture.read)."""
    started = time.perf_counter()
    if capture_labels and list(capture_labels) != list(base.labels):
        raise MonitorError(
            f"the baseline {baseline_source} is for classes {','.join(base.labels)} but the capture's endpoint "
            f"answers {','.join(capture_labels)}",
            next_step="scones monitor --baseline <the deployed model's baseline folder or model.tar.gz URI>",
        )
    try:
        table = capture.read(
            where,
            base.labels,
            progress=progress,
            since=since,
            threshold=threshold,
            workers=workers,
            meanwhile=meanwhile,
        )
    except capture.CaptureNotFoundError as exc:
        raise NotReadyError(
            f"nothing to monitor: {exc}", next_step="scones load --mode burst --count 200 (or pass --capture)"
        ) from None
    if table.parsed == 0 and table.bad[capture.CLASS_COUNT]:
        reasons = "; ".join(f"{n} {r}" for r, n in table.bad.most_common())
        raise MonitorError(
            f"none of the {table.lines} record(s) in {table.files} file(s) under {where} could be used: "
            f"{reasons} — the baseline's model has another class set than the endpoint's",
            next_step="scones monitor --baseline <the deployed model's baseline>",
        )
    checks = drift.run(base.frame, table.counts(), base.labels, threshold, base.comparison_threshold)
    return MonitorResult(
        where, table, table.frame(), base, baseline_source, threshold, checks, seconds=time.perf_counter() - started
    )


def capture_lost(endpoint: str) -> dict[str, int] | None:
    """What the local endpoint answered but could not capture, by reason (its /_scones/stats: dropped when the
    buffer was full, unsent when S3 and the disk refused, lost with a killed worker); None when no local endpoint
    of that name answers. On AWS data capture is best effort and SageMaker counts no loss."""
    try:
        url = json.loads(settings.endpoint_record_path(endpoint).read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    code, stats = service.get_json(url.rstrip("/") + "/_scones/stats")
    if code != 200 or not isinstance(stats, dict) or not isinstance(stats.get("capture_lost"), dict):
        return None
    return {reason: int(n) for reason, n in stats["capture_lost"].items()}


def write_outputs(result: MonitorResult, out_dir: Path, plots: bool = True) -> MonitorResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "statistics": out_dir / "statistics.json",
        "constraints": out_dir / "constraints.json",  # the baseline's: what this run was judged by
        "constraint_violations": out_dir / "constraint_violations.json",
        "records": out_dir / "records.csv",
        "summary": out_dir / "summary.json",
    }
    labels = result.baseline.labels
    stats = baseline_mod.table_statistics(result.table, result.frame, labels)
    write_atomic(files["statistics"], json.dumps(stats, indent=2) + "\n")
    write_atomic(files["constraints"], json.dumps(result.baseline.constraints, indent=2) + "\n")
    write_atomic(files["constraint_violations"], json.dumps(drift.violations(result.checks), indent=2) + "\n")
    if not plots:
        result.frame.to_csv(files["records"], index=False)
    if plots:  # records.csv written while a second process draws half of the plots
        files.update(report.write_plots(result, out_dir, lambda: result.frame.to_csv(files["records"], index=False)))
        files["report"] = report.write_html(result, files, out_dir / "report.html")
    result.files = files
    write_atomic(files["summary"], json.dumps(result.summary(), indent=2) + "\n")
    return result


def upload_outputs(folder: Path, uri: str) -> list[str]:
    """Every file under `folder` to the s3:// prefix `uri`, keeping relative paths; returns the keys."""
    where = capture.Location.parse(uri)
    s3, keys = aws.client("s3"), []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = object_key(where, folder, path)
        s3.upload_file(str(path), where.bucket, key)
        keys.append(key)
    return keys


def object_key(where: capture.Location, folder: Path, path: Path) -> str:
    return "/".join(filter(None, [where.prefix, path.relative_to(folder).as_posix()]))


def uploaded_uris(files: dict[str, Path | str], folder: Path, uri: str) -> dict[str, Path | str]:
    """`files` (paths under `folder`) as the s3:// URIs upload_outputs(folder, uri) put them at."""
    where = capture.Location.parse(uri)
    return {name: f"s3://{where.bucket}/{object_key(where, folder, Path(p))}" for name, p in files.items()}


def metric_data(result: MonitorResult, endpoint: str) -> list[dict]:
    dims = [{"Name": "EndpointName", "Value": endpoint}]
    summary = result.summary()
    figures = {
        DRIFT_METRIC: (float(bool(result.failed)), "Count"),
        "DriftChecksFailed": (float(len(result.failed)), "Count"),
        "RecordsAnalysed": (float(result.analysed), "Count"),
        "RecordsUnparseable": (float(result.table.unparseable), "Count"),
        "LowConfidenceRate": (summary["low_confidence_rate"], "None"),
        "MeanConfidence": (summary["mean_confidence"], "None"),
    }
    data = [
        {"MetricName": k, "Dimensions": dims, "Value": v, "Unit": u}
        for k, (v, u) in figures.items()
        if v is not None  # no record, no rate: CloudWatch takes no NaN
    ]
    for c in (c for c in result.checks if not c.insufficient):
        data.append(
            {
                "MetricName": "DriftDistance",
                "Dimensions": [*dims, {"Name": "Check", "Value": c.name}],
                "Value": float(c.statistic),
                "Unit": "None",
            }
        )
    return data


def put_metrics(result: MonitorResult, endpoint: str) -> int:
    data = metric_data(result, endpoint)
    aws.client("cloudwatch").put_metric_data(Namespace=NAMESPACE, MetricData=data)
    return len(data)


def alert(result: MonitorResult, endpoint: str, topic_arn: str | None = None) -> str | None:
    """Publish the verdict to the stack's alert topic when a check failed; returns the message id."""
    if not result.failed:
        return None
    topic_arn = topic_arn or settings.alert_topic_arn() or stacks.outputs().get("AlertTopicArn")
    if not topic_arn:
        raise NotReadyError("the deployed stack has no AlertTopicArn output", next_step="scones deploy")
    message = {k: v for k, v in result.summary().items() if k != "checks"}
    message["violations"] = drift.violations(result.checks)["violations"]
    return aws.client("sns").publish(
        TopicArn=topic_arn,
        Subject=f"scones: drift on {endpoint}"[:100],
        Message=json.dumps(message, indent=1),
    )["MessageId"]


def drift_rows(result: MonitorResult) -> str:
    lines = [f"{'check':<20} {'test':<28} {'statistic':>12} {'p-value':>9}  {'fails when':<24} verdict"]
    for c in result.checks:
        stat = "-" if c.insufficient else f"{c.distance_name}={c.statistic:.3f}"
        lines.append(
            f"{c.name:<20} {c.test:<28} {stat:>12} {c.p_value:>9.1e}  {c.threshold_text:<24} {c.verdict}  {c.detail}"
        )
    return "\n".join(lines)


def run(
    capture_uri: str | None = None,
    baseline: str | None = None,
    out: Path | str | None = None,
    threshold: float | None = None,
    since: str | None = None,
    endpoint: str | None = None,
    alert_on_drift: bool = False,
    metrics: bool = True,
    bucket: str | None = None,
    prefix: str | None = None,
    log=print,
) -> MonitorResult:
    """The whole of `scones monitor`: read every capture record, compare with the baseline, write the report
    and the Model Monitor-format files, put the metrics, and alert on drift when asked. `out` is a folder or an
    s3:// prefix (written in a scratch folder, then uploaded)."""
    where = capture.Location.parse(capture_uri or default_capture())
    # the deployed endpoint's class names, when the capture is its own: a baseline for others is refused by name
    labels = stacks.deployed_labels() if capture_uri is None else None
    threshold = filter_threshold(threshold)
    bucket, prefix = bucket or settings.bucket(), (prefix or settings.prefix()).strip("/")
    base, source = resolve_baseline(baseline, bucket, prefix, threshold, log=log)
    log(f"capture {where}; baseline {source} ({len(base.frame)} images); threshold {threshold:g}")
    result = analyse(
        where,
        base,
        source,
        threshold,
        parse_since(since),
        Progress("reading capture files"),
        capture_labels=labels,
        meanwhile=report.warm_up,  # the plots' imports and first draw, on the core the workers leave
    )
    log(result.table.summary())
    log(f"analysed {result.analysed} record(s)")
    endpoint = endpoint or settings.endpoint_name()
    if capture_uri is None and settings.target() != "aws":
        result.capture_lost = capture_lost(endpoint)
        lost = sum((result.capture_lost or {}).values())
        if lost:
            reasons = ", ".join(f"{n} {reason}" for reason, n in result.capture_lost.items() if n)
            log(
                f"endpoint {endpoint} answered {lost} request(s) it could not capture ({reasons}): not in these figures"
            )
    out_uri = str(out) if str(out or "").startswith("s3://") else None
    if out_uri is not None:
        capture.Location.parse(out_uri)  # s3://bucket[/prefix]
        if not out_uri[5:].split("/", 1)[0]:
            raise UsageError(f"--out {out_uri}: name a bucket (s3://bucket/prefix)")
        with tempfile.TemporaryDirectory(prefix="scones-monitor-") as scratch:  # written, uploaded, removed
            conclude(result, Path(scratch), endpoint, metrics, alert_on_drift, log)
            keys = upload_outputs(Path(scratch), out_uri)
            result.files = uploaded_uris(result.files, Path(scratch), out_uri)
        log(f"report: {result.files['report']}  ({len(keys)} files uploaded to {out_uri})")
        return result
    out = Path(out) if out else settings.data_dir() / "reports" / "monitor"
    conclude(result, out, endpoint, metrics, alert_on_drift, log)
    log(f"report: {result.files['report']}  (files in {out})")
    return result


def conclude(result: MonitorResult, out: Path, endpoint: str, metrics: bool, alert_on_drift: bool, log) -> None:
    """The outputs written to `out`, the verdict logged, and the metrics and the alert sent when asked."""
    write_outputs(result, out)
    log(drift_rows(result))
    failed = ", ".join(c.name for c in result.failed)
    log(f"verdict: {result.verdict}" + (f" (failed: {failed})" if failed else ""))
    if metrics:
        try:
            log(f"put {put_metrics(result, endpoint)} metrics to CloudWatch namespace {NAMESPACE}")
        except Exception as exc:  # the report is written either way; say why the metrics are not
            log(f"metrics not sent: {exc}")
    if alert_on_drift and result.failed:
        log(f"alert published (message {alert(result, endpoint)})")
