"""`python -m scones.monitoring`: the hourly monitoring job, as SageMaker's processing container runs it.

    SCONES_TARGET=aws SCONES_BUCKET=… SCONES_ENDPOINT_NAME=… SCONES_STACK_NAME=… \\
        python -m scones.monitoring --out /opt/ml/processing/output/%Y/%m/%d/%H --alert

It is `scones monitor` without the CLI around it: the names (bucket, staged-data prefix, endpoint, stack,
capture bucket and prefix, threshold) come from the environment by settings.py's names, which the schedule's
CreateProcessingJob request sets (scones/deploy/requests.py: monitoring_environment). `--out` takes strftime codes
(UTC, at the start), so each hourly run writes its own folder; a folder under /opt/ml/processing/output is
uploaded by SageMaker when the job ends, an s3:// prefix is uploaded by the job itself. A failure is one line
on stderr and a non-zero exit (the job then ends Failed); an unexpected one also leaves its traceback in the
job's log, the only record a job has.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from scones.core import errors, failures, settings
from scones.core import target as targets
from scones.monitoring import monitor


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scones.monitoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--capture", default=None, help="s3://bucket/prefix/endpoint (default: from the environment)")
    p.add_argument("--baseline", default=None, help="a baseline folder, s3://…/ or model URI (default: newest model's)")
    p.add_argument("--out", default=None, help="folder or s3:// prefix; strftime codes allowed (UTC)")
    p.add_argument("--threshold", type=float, default=None, help=f"default: the stack's, else ${settings.THRESHOLD}")
    p.add_argument("--since", default=None, help="only records since an ISO time or a duration back (15m, 2h)")
    p.add_argument("--alert", action="store_true", help="publish to the stack's alert topic when a check fails")
    p.add_argument("--no-metrics", action="store_true", help="do not put metrics to CloudWatch")
    p.add_argument("--strict", action="store_true", help="exit 1 on DRIFT (the job then ends Failed)")
    return p


def main(argv: list[str] | None = None, now: datetime | None = None) -> int:
    args = parser().parse_args(argv)
    out = (now or datetime.now(UTC)).strftime(args.out) if args.out else None
    try:
        targets.activate()
        result = monitor.run(
            args.capture,
            args.baseline,
            out,
            args.threshold,
            args.since,
            alert_on_drift=args.alert,
            metrics=not args.no_metrics,
        )
    except Exception as exc:
        if settings.debug() or not isinstance(exc, errors.SconesError):
            import traceback  # the job's log is the only record of an unexpected error: keep its traceback there

            traceback.print_exc()
        failure = failures.explain(exc, targets.current().name if targets.is_active() else settings.DEFAULT_TARGET)
        print(f"scones.monitoring: error: {failure.line()}", file=sys.stderr)
        return failure.exit_code
    return 1 if args.strict and result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
