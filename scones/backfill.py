"""`scones invoke --prefix s3://bucket/prefix/`: a backfill. One execution of the Distributed Map machine
(statemachine/classify_prefix.asl.json) lists the prefix, hands each Express child a batch of keys (one endpoint
call per batch), and writes every child's result to s3://<bucket>/backfill/<stack>/<execution>/<map run>/
(ResultWriter). This module checks the request, starts the execution, shows progress, reads the result files
back and sums them up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from scones import stacks, workflow
from scones.core import aws, settings
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.core.progress import Progress

NO_LIMIT = 100_000_000  # ReaderConfig.MaxItems' largest value: every key


class BackfillError(SconesError):
    """The backfill's execution failed as a whole (its Map Run, or the listing)."""

    next_default = "scones graph --status FAILED shows where; fix it and run the backfill again"


@dataclass
class Backfill:
    bucket: str
    prefix: str
    execution: str
    status: str  # the execution's: SUCCEEDED | FAILED | ...
    seconds: float
    rows: list[workflow.Row] = field(default_factory=list)
    results: str = ""  # s3://… of the ResultWriter's manifest folder
    error: str = ""
    cause: str = ""


def parse_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix/ → (bucket, prefix)."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise UsageError(f"--prefix {url!r} is not an S3 URL", "pass --prefix s3://BUCKET/PREFIX/")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


def check_request(batch_size: int, limit: int | None) -> None:
    """The numbers asked for, before any cloud is asked anything."""
    if not 1 <= batch_size <= settings.MAX_BACKFILL_BATCH_SIZE:
        raise UsageError(
            f"--batch-size {batch_size} is outside 1..{settings.MAX_BACKFILL_BATCH_SIZE} (keys per endpoint call)",
            f"--batch-size {settings.DEFAULT_BACKFILL_BATCH_SIZE}",
        )
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1", "leave --limit out to classify every key")


def check(bucket: str, prefix: str, batch_size: int, limit: int | None, data_bucket: str | None) -> None:
    """One line for each bad request, before any execution starts."""
    check_request(batch_size, limit)
    if data_bucket and bucket != data_bucket:  # template.yaml grants the workflow's roles the data bucket only
        raise UsageError(
            f"s3://{bucket}/ is not the deployed workflow's data bucket: its role reads only s3://{data_bucket}/",
            f"copy the images under s3://{data_bucket}/, or scones deploy --bucket {bucket}",
        )
    s3 = aws.client("s3")
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except s3.exceptions.NoSuchBucket:
        raise UsageError(
            f"there is no bucket {bucket}", "check the URL: scones invoke --prefix s3://BUCKET/PREFIX/"
        ) from None
    except s3.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise UsageError(
            f"s3://{bucket}/{prefix} cannot be listed ({code})", "check the bucket's permissions"
        ) from None
    if not listed.get("KeyCount"):
        raise UsageError(
            f"s3://{bucket}/{prefix} holds no objects", "scones stage, or check the prefix (it is case-sensitive)"
        )


def stack_parameter(name: str) -> str | None:
    cfn = aws.client("cloudformation")
    try:
        found = cfn.describe_stacks(StackName=settings.stack_name())["Stacks"][0]
    except cfn.exceptions.ClientError:
        return None
    return {p["ParameterKey"]: p.get("ParameterValue") for p in found.get("Parameters", [])}.get(name)


def run(
    url: str,
    batch_size: int = settings.DEFAULT_BACKFILL_BATCH_SIZE,
    limit: int | None = None,
    log: Callable[[str], None] = print,
    timeout_s: float = 3600,
) -> Backfill:
    """Classify every image under the S3 prefix `url` (at most `limit` keys), `batch_size` keys per child."""
    bucket, prefix = parse_url(url)
    if batch_size is None:
        batch_size = settings.DEFAULT_BACKFILL_BATCH_SIZE
    check_request(batch_size, limit)
    outputs = stacks.outputs()
    if stacks.PREFIX not in outputs:
        why = (
            "LocalStack's Step Functions cannot parse a Distributed Map's ItemBatcher, so the stack leaves it out"
            if settings.target() == "localstack"
            else "it was deployed before the backfill existed"
        )
        raise NotReadyError(f"the deployed stack has no backfill state machine: {why}", "scones deploy --target local")
    check(bucket, prefix, batch_size, limit, stack_parameter("DataBucket"))
    sfn = aws.client("stepfunctions")
    name = f"scones-backfill-{uuid.uuid4().hex[:12]}"
    results_prefix = f"{settings.BACKFILL_PREFIX}/{settings.stack_name()}/{name}"  # the stack's: clean finds it
    started = time.perf_counter()
    arn = sfn.start_execution(
        stateMachineArn=outputs[stacks.PREFIX],
        name=name,
        input=json.dumps(
            {
                "s3_bucket": bucket,
                "prefix": prefix,
                "limit": limit or NO_LIMIT,
                "batch_size": batch_size,
                "results_prefix": results_prefix,
            }
        ),
    )["executionArn"]
    log(f"backfill {name}: s3://{bucket}/{prefix}, {batch_size} keys per batch ...")
    described = wait(sfn, arn, timeout_s)
    done = Backfill(bucket, prefix, arn, described["status"], time.perf_counter() - started)
    done.error, done.cause = described.get("error", ""), described.get("cause", "")
    manifest_key = manifest_of(described, bucket, results_prefix)
    if manifest_key:
        done.results = f"s3://{bucket}/{manifest_key.rsplit('/', 1)[0]}/"
        done.rows = rows_from(bucket, manifest_key)
    return done


def wait(sfn, arn: str, timeout_s: float) -> dict:
    """Until the execution ends, a progress line every few seconds: the Map Run's finished child executions
    (batches; the local cloud counts a batch as one item, AWS counts its keys)."""
    progress = Progress("backfill: finished batches").start(None)
    deadline = time.monotonic() + timeout_s
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            progress.finish(described["status"])
            return described
        if time.monotonic() > deadline:
            raise BackfillError(f"backfill {arn} still RUNNING after {timeout_s:.0f} s", "scones graph, then wait")
        progress.update(map_run_done(sfn, arn))
        time.sleep(0.5)


def map_run_done(sfn, arn: str) -> int:
    try:
        runs = sfn.list_map_runs(executionArn=arn).get("mapRuns", [])
        if not runs:
            return 0
        counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]).get("itemCounts", {})
        return int(counts.get("succeeded", 0)) + int(counts.get("failed", 0))
    except Exception:  # progress only: never fail a backfill over it
        return 0


def manifest_of(described: dict, bucket: str, results_prefix: str) -> str | None:
    """The ResultWriter's manifest key: from the output, else (a failed Map Run writes too) under the prefix."""
    try:
        return json.loads(described.get("output") or "{}")["map_run"]["ResultWriterDetails"]["Key"]
    except (KeyError, TypeError, ValueError):
        pass
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=results_prefix + "/"):
        for entry in page.get("Contents", []):
            if entry["Key"].endswith("/manifest.json"):
                return entry["Key"]
    return None


def rows_from(bucket: str, manifest_key: str) -> list[workflow.Row]:
    """A row per key: each SUCCEEDED child's per-image verdicts; each key of a FAILED child, FAILED with its error."""
    s3 = aws.client("s3")

    def read(key: str):
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    manifest = read(manifest_key)
    rows: list[workflow.Row] = []
    for entry in manifest["ResultFiles"].get("SUCCEEDED", []):
        for child in read(entry["Key"]):
            for result in json.loads(child["Output"]).get("results", []):
                row = workflow.Row(
                    result["s3_key"], result["status"], error=result.get("error", ""), cause=result.get("cause", "")
                )
                row.label, row.confidence = result.get("label", ""), result.get("confidence")
                row.execution = child.get("ExecutionArn", "")
                rows.append(row)
    for status in ("FAILED", "PENDING"):
        for entry in manifest["ResultFiles"].get(status, []):
            for child in read(entry["Key"]):
                for item in json.loads(child["Input"]).get("Items", []):
                    key = item.get("Key", "") if isinstance(item, dict) else str(item)
                    error = child.get("Error") or status
                    rows.append(
                        workflow.Row(
                            key,
                            "FAILED",
                            error=error,
                            cause=child.get("Cause", ""),
                            execution=child.get("ExecutionArn", ""),
                        )
                    )
    return rows


def summary(done: Backfill, shown: int = 20) -> str:
    """Counts per class and per outcome, the failed keys, throughput and where the results are."""
    rows = done.rows
    outcomes = Counter(r.error if r.status == "FAILED" else r.status for r in rows)
    classes = Counter(r.label for r in rows if r.status == "SUCCEEDED")
    classified = sum(r.status != "SKIPPED" for r in rows)
    lines = [f"backfill of s3://{done.bucket}/{done.prefix}: {done.status}, {len(rows)} keys in {done.seconds:.1f} s"]
    lines.append("  by outcome: " + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"))
    lines.append("  by class (SUCCEEDED): " + (", ".join(f"{k} {v}" for k, v in sorted(classes.items())) or "none"))
    failed = [r for r in rows if r.status == "FAILED"]
    if failed:
        lines.append(f"  failed keys ({len(failed)}):")
        lines += [f"    {r.key}  {r.error}: {workflow.readable_cause(r.cause)[:100]}" for r in failed[:shown]]
        if len(failed) > shown:
            lines.append(f"    … {len(failed) - shown} more in the results")
        for error in sorted({r.error for r in failed}):
            lines.append(f"  {error}: {workflow.NEXT_STEPS.get(error, 'see the result files')}")
    lines.append(
        f"  throughput: {classified / max(done.seconds, 1e-9):.0f} images/s ({classified} classified or refused)"
    )
    if done.error:
        lines.append(f"  the execution failed: {done.error}: {workflow.readable_cause(done.cause)[:200]}")
    lines.append(f"  results: {done.results or 'none written'}")
    return "\n".join(lines)
