"""`scones invoke` and `scones export`: run the deployed workflow on staged images, write its definitions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from scones import stacks, workflow
from scones.core import aws
from scones.core.errors import UsageError
from scones.core.files import write_atomic
from scones.data import staged


def invoke(
    bucket: str,
    prefix: str,
    keys: list[str] | None = None,
    batch: int | None = None,
    single: bool = False,
    log: Callable[[str], None] = print,
    sync: bool = False,
) -> list[workflow.Row]:
    """Run the workflow on `keys`, or on `batch` staged test images (one Map execution unless `single` or `sync`).
    `sync`: one StartSyncExecution per image, answered at once; only an Express single-image machine takes it.
    On an Express deploy the single-image executions are synchronous anyway: AWS describes no Express execution."""
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    if not keys and not batch:
        raise UsageError("nothing to classify", "pass --key KEY (repeatable) or --batch N")
    outputs = stacks.outputs()
    express = stacks.is_express(outputs)
    if sync and not express:
        raise not_express()
    sfn = aws.client("stepfunctions", max_pool_connections=32)
    if not keys:
        keys = staged.test_sample(bucket, prefix, batch)
        if len(keys) < batch:
            raise UsageError(f"--batch {batch} is more than the {len(keys)} staged test images", f"--batch {len(keys)}")
    if batch and not single and not sync:
        log(f"one Map execution over {len(keys)} images ...")
        _, rows = workflow.run_batch(sfn, outputs[stacks.BATCH], bucket, keys)
    elif express:
        log(f"{len(keys)} synchronous Express execution(s) ...")
        try:
            rows = workflow.run_sync(sfn, outputs[stacks.SINGLE], bucket, keys)
        except sfn.exceptions.StateMachineTypeNotSupported:
            raise not_express() from None
    else:
        log(f"{len(keys)} single-image execution(s) ...")
        rows = workflow.run_single(sfn, outputs[stacks.SINGLE], bucket, keys)
    return rows


def not_express() -> UsageError:
    return UsageError(
        "--sync needs an Express single-image machine and the deployed one is Standard (AWS refuses "
        "StartSyncExecution on it)",
        "scones deploy --workflow-type express, or scones invoke without --sync",
    )


def export(out_dir: Path) -> list[tuple[Path, str]]:
    """Write each deployed state machine's definition as JSON; returns (file, state machine ARN) pairs."""
    outputs = stacks.outputs()
    out_dir.mkdir(parents=True, exist_ok=True)
    sfn = aws.client("stepfunctions")
    written = []
    for key in (stacks.SINGLE, stacks.BATCH):
        described = sfn.describe_state_machine(stateMachineArn=outputs[key])
        path = out_dir / f"{described['name']}.json"
        write_atomic(path, json.dumps(json.loads(described["definition"]), indent=2) + "\n")
        written.append((path, described["stateMachineArn"]))
    return written
