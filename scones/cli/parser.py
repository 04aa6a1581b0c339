"""The `scones` argument parser: every subcommand, flag and default (defaults read from scones.core.settings)."""

from __future__ import annotations

import argparse

from scones.cli import commands as c
from scones.core import settings
from scones.deploy import flags

BUCKET_HELP = f"default ${settings.BUCKET} or {settings.DEFAULT_BUCKET}"
PREFIX_HELP = f"the staged data's prefix (default ${settings.PREFIX} or {settings.DEFAULT_PREFIX})"
TARGET_HELP = f"default ${settings.TARGET} or {settings.DEFAULT_TARGET}"


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line naming the next step like every other error."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (next: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="scones", description="Scones Unlimited's ML workflow, local-first.")
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also ${settings.DEBUG}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def add(
        name: str, func, help_text: str, *, data: bool = False, target: bool = False, locks: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func, locks=locks)
        if locks:  # commands that change a target's state take its lock (scones.core.lock)
            p.add_argument("--no-wait", action="store_true", help="fail at once when another command holds the lock")
        if data:
            p.add_argument("--bucket", default=None, help=BUCKET_HELP)
            p.add_argument("--prefix", default=None, help=PREFIX_HELP)
        if target:
            p.add_argument("--target", choices=settings.TARGETS, default=None, help=TARGET_HELP)
        return p

    p = add("up", c.cmd_up, "start the local cloud in the background (idempotent)", locks=True)
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    p.add_argument("--port", type=int, default=None, help=f"default ${settings.LOCALCLOUD_PORT} or 4566")
    p.add_argument("--check", action="store_true", help="run the self-test of the local cloud's patches")
    p = add(
        "down", c.cmd_down, "stop the local endpoints, the local cloud and every Lambda worker it started", locks=True
    )
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    add("status", c.cmd_status, "say whether the local cloud runs (exit 3 when not)")
    add("env", c.cmd_env, 'print export lines: eval "$(scones env)"', target=True)

    p = add("stage", c.cmd_stage, "stage CIFAR-100 (or the synthetic set) as PNG + .lst + manifest to S3", data=True)
    p.add_argument(
        "--source",
        default="synthetic",
        help="cifar100 (download), synthetic (offline, default), a CIFAR-100 python tarball, or a folder of PNGs "
        "with train.lst",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated fine label names, or vehicles / vehicles_1 / vehicles_2 (default bicycle,motorcycle)",
    )
    p.add_argument("--workdir", default=None, help="local output folder (default under data/staged/)")
    p.add_argument("--seed", type=int, default=0, help="synthetic source: the seed (same seed, same images)")
    p.add_argument("--train-per-class", type=int, default=None, help="synthetic source: default 500")
    p.add_argument("--test-per-class", type=int, default=None, help="synthetic source: default 100")
    p.add_argument(
        "--explore",
        action="store_true",
        help="also write a contact sheet and report a raw-pixel logistic regression's accuracy",
    )
    p.add_argument("--no-upload", action="store_true", help="build the local folder only")
    p.add_argument(
        "--outliers",
        choices=["auto", "none"],
        default="auto",
        help="auto (default): also stage images of neither class for outlier exposure, and held-out ones to "
        "evaluate on; none: the selected classes only",
    )

    p = add("train", c.cmd_train, "train on the staged data as a SageMaker script-mode job would, locally", data=True)
    p.add_argument(
        "--mode",
        choices=["local", "container", "sagemaker-local"],
        default="local",
        help="container: the job ModelTrainer creates for AWS, run here without Docker in a private /opt/ml "
        "(docs/container-training.md); sagemaker-local: the SDK's local mode (Docker)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: train.py's")
    p.add_argument("--job-name", default=None, help="default scones-YYYYmmdd-HHMMSS")
    p.add_argument("--classes", default=None, help="must match the staged classes (checked)")
    p.add_argument(
        "--hp",
        dest="hyperparameter",
        action="append",
        metavar="NAME=VALUE",
        help="any other hyperparameter of training/train.py, e.g. --hp lr=0.05 (repeatable)",
    )
    p.add_argument("--allow-unknown-hp", action="store_true", help="pass --hp names train.py does not know on to it")

    p = add(
        "endpoint",
        c.cmd_endpoint,
        "the local SageMaker-style endpoint: serve | start | stop | status | invoke",
        locks=True,
    )
    p.add_argument("action", choices=["serve", "start", "stop", "status", "invoke"])
    p.add_argument("image", nargs="?", help="invoke: an image file (png, jpeg)")
    p.add_argument("--model", default=None, help="s3://…/model.tar.gz, a local tarball or folder (default: newest)")
    p.add_argument("--name", default=None, help=f"default ${settings.SCONES_ENDPOINT_NAME} or scones-endpoint")
    p.add_argument("--port", type=int, default=None, help=f"default ${settings.ENDPOINT_PORT} or 8080 (0: any free)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"server processes (default ${settings.ENDPOINT_WORKERS} or one per core)",
    )
    p.add_argument(
        "--runtime",
        choices=["scones", "sagemaker"],
        default="scones",
        help="serve: our model server (default), or sagemaker: the artifact deploy uploads, run by the SageMaker "
        "PyTorch inference container's own code (TorchServe; needs Java; docs/container-inference.md)",
    )

    p = add(
        "deploy",
        c.cmd_deploy,
        "package the Lambdas and deploy template.yaml's stack (idempotent)",
        target=True,
        locks=True,
    )
    p.add_argument("--model", default=None, help="model the local endpoint serves (default: running one, else newest)")
    p.add_argument("--bucket", default=None, help=BUCKET_HELP)
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"confidence threshold (default ${settings.THRESHOLD} or {settings.DEFAULT_THRESHOLD})",
    )
    p.add_argument("--alert-email", default=None, help="subscribe this address to the alert topic")
    p.add_argument(
        "--workflow-type",
        choices=settings.WORKFLOW_TYPES,
        default=None,
        help="the single-image state machine: express answers `scones invoke --sync` but keeps no execution history "
        f"(default ${settings.WORKFLOW_TYPE} or {settings.DEFAULT_WORKFLOW_TYPE}; docs/workflow.md)",
    )
    p.add_argument(
        "--prefix", default=None, help=f"local targets: the staged data the quality gate scores ({PREFIX_HELP})"
    )
    p.add_argument("--force", action="store_true", help="local targets: skip the quality gate for --model")
    p.add_argument(
        "--shadow",
        action="store_true",
        help="mirror live requests to --model (aws: a shadow variant); production still answers",
    )
    p.add_argument(
        "--shadow-percent",
        type=float,
        default=None,
        help=f"with --shadow: the share mirrored (default ${settings.SHADOW_PERCENT} or 100)",
    )
    p.add_argument(
        "--rollout",
        default=None,
        metavar="canary:P:S|linear:P:S",
        help="shift traffic to --model by stages (aws: UpdateEndpoint blue/green), rolled back when an alarm fires",
    )
    p.add_argument(
        "--alarm",
        action="append",
        default=None,
        help="with --rollout: roll back on this CloudWatch alarm (repeatable; default: the candidate's 5xx and "
        "latency alarms, created)",
    )
    flags.add_deploy_flags(p)

    p = add(
        "rollback",
        c.cmd_rollback,
        "send all traffic back to the old model (of a rollout, or of the last one)",
        locks=True,
    )
    p.add_argument("--name", default=None, help=f"default ${settings.SCONES_ENDPOINT_NAME} or scones-endpoint")

    p = add("invoke", c.cmd_invoke, "run the workflow on staged test images and print a result table", data=True)
    p.add_argument("--key", action="append", help="an S3 key in the bucket (repeatable)")
    p.add_argument("--batch", type=int, default=None, help="N staged test images through the Map state machine")
    p.add_argument("--single", action="store_true", help="with --batch: one single-image execution per image")
    p.add_argument(
        "--sync",
        action="store_true",
        help="StartSyncExecution per image, answered at once (needs scones deploy --workflow-type express)",
    )
    p.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when some images FAILED (default: exit 1 and say how many)",
    )
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # deprecated: the default now
    p.add_argument(
        "--limit", type=int, default=None, help="with --prefix s3://…: classify at most N keys (default: every key)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"with --prefix s3://…: keys per child execution and endpoint call, 1..{settings.MAX_BACKFILL_BATCH_SIZE} "
        f"(default {settings.DEFAULT_BACKFILL_BATCH_SIZE})",
    )

    p = add("graph", c.cmd_graph, "draw the state machine with each state's status in an execution (png or svg)")
    p.add_argument("--execution", default=None, help="an execution ARN (default: the newest of the machine)")
    p.add_argument("--batch", action="store_true", help="the Map state machine instead of the single-image one")
    p.add_argument("--status", choices=["SUCCEEDED", "FAILED"], default=None, help="newest execution with this status")
    p.add_argument("--out", default=None, help="output file, .png or .svg (default: data/graph.png)")

    p = add(
        "clean",
        c.cmd_clean,
        "remove what the project created on the target (stack, objects, endpoints, cloud)",
        target=True,
        locks=True,
    )
    p.add_argument("--delete-bucket", action="store_true", help="also delete the bucket itself once empty")
    flags.add_clean_flags(p)

    p = add("export", c.cmd_export, "write the deployed state machine definitions as JSON")
    p.add_argument("--out-dir", default=None, help=f"default: data/statemachine (${settings.DATA_DIR})")

    p = add(
        "evaluate",
        c.cmd_evaluate,
        "metrics, confusion matrix and reliability diagram on the staged test split",
        data=True,
    )
    p.add_argument(
        "--model",
        default=None,
        help="s3://…/model.tar.gz, a local model.tar.gz or folder (default: the deployed model, else the newest)",
    )
    p.add_argument("--out", default=None, help="folder for the report (default data/reports/<job>/)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"report coverage and false passes at this confidence (default: the deployed stack's, else "
        f"${settings.THRESHOLD} or {settings.DEFAULT_THRESHOLD})",
    )

    p = add("load", c.cmd_load, "send bounded traffic (stream or burst) through the workflow or the endpoint")
    p.add_argument("--mode", choices=["stream", "burst"], default="burst")
    p.add_argument("--via", choices=["workflow", "endpoint"], default="workflow")
    p.add_argument("--count", type=int, default=100, help="burst: number of requests (default 100)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at most (default 8)")
    p.add_argument("--rate", type=float, default=10.0, help="stream: mean requests per second (Poisson)")
    p.add_argument("--duration", type=float, default=10.0, help="stream: seconds (default 10)")
    p.add_argument("--drift", choices=["dark", "noise", "classmix"], default=None, help="inject a shift")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the summary to this JSON file")

    p = add(
        "monitor",
        c.cmd_monitor,
        "read every captured record, check drift against the baseline, write the report",
        data=True,
    )
    p.add_argument("--capture", default=None, help="s3://bucket/prefix/endpoint or a folder (default: the endpoint's)")
    p.add_argument("--baseline", default=None, help="a baseline folder, s3://…/ or model URI (default: newest model's)")
    p.add_argument("--out", default=None, help="report folder or s3:// prefix (default data/reports/monitor/)")
    p.add_argument(
        "--threshold", type=float, default=None, help=f"default: the deployed stack's, else ${settings.THRESHOLD}"
    )
    p.add_argument("--since", default=None, help="only records since an ISO time or a duration back (15m, 2h)")
    p.add_argument("--endpoint", default=None, help="the metrics' EndpointName dimension (default: the endpoint)")
    p.add_argument("--alert", action="store_true", help="publish to the alert topic when a check fails")
    p.add_argument("--no-metrics", action="store_true", help="do not put metrics to CloudWatch")
    p.add_argument("--strict", action="store_true", help="exit 1 on DRIFT or hold (default: exit 0 once analysed)")
    p.add_argument(
        "--compare",
        default=None,
        metavar="PRODUCTION,CANDIDATE",
        help="instead of drift: two variants' capture side by side (e.g. production,shadow), a promote/hold verdict",
    )

    p = add(
        "cost",
        c.cmd_cost,
        "what images cost on AWS per million: Standard vs Express workflows and a backfill, every assumption printed",
        target=True,
    )
    p.add_argument("--images", type=int, default=1_000_000, help="also price this many images (default 1,000,000)")
    p.add_argument("--batch", type=int, default=100, help="backfill: images per child execution (default 100)")
    return parser
