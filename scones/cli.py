"""The `scones` command line: argument parsing and printing only; each command's work lives in its module.

Every command ends with exit 0, or with one line on stderr naming the problem and the next step and a
non-zero exit (scones.core.errors); an unexpected exception prints one line with the log holding its
traceback, and the traceback itself only with --debug (or SCONES_DEBUG=1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scones.core import errors, lock, settings
from scones.core import target as targets


def bucket_and_prefix(args: argparse.Namespace) -> tuple[str, str]:
    """--bucket and --prefix, else the settings' defaults."""
    return args.bucket or settings.bucket(), (getattr(args, "prefix", None) or settings.prefix()).strip("/")


def cmd_up(args: argparse.Namespace) -> int:
    from scones import localcloud

    if args.stack == "localstack":
        from scones import localstack

        found = localstack.up(port=args.port)
        print(f"{localstack.describe(found)}\nuse it: export {settings.TARGET}=localstack")
        return 0
    current = localcloud.up(port=args.port)
    if args.check:
        from scones import selftest

        targets.activate("local")
        selftest.run(current.url)
    print(f'\nTo use it from your shell: eval "$(scones env)"   (AWS_ENDPOINT_URL={current.url})')
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from scones import endpoint, localcloud

    for name in endpoint.recorded_names():
        endpoint.stop(name)
    if args.stack == "localstack":
        from scones import localstack

        localstack.down()
    else:
        localcloud.down()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from scones import endpoint, localcloud

    for name in endpoint.recorded_names():
        ep = endpoint.status(name)
        state = f"running at {ep.url} (pid {ep.pid})" if ep.running else f"not running ({ep.detail})"
        print(f"endpoint {ep.name}: {state}")
    from scones import localstack

    stack = localstack.status()
    if stack.running or stack.url:
        print(localstack.describe(stack))
    found = localcloud.status()
    if not found.running:
        print(f"local cloud: not running ({found.detail})")
        return 0 if stack.running else 3
    health = found.info or {}
    print(
        f"local cloud: running at {found.url} (pid {found.pid}, up {health.get('uptime_s')} s, "
        f"moto {health.get('moto')}, {len(health.get('lambda_workers', []))} warm Lambda worker(s))"
    )
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    print("\n".join(targets.export_lines(targets.activate(args.target))))
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from scones.stage import stage

    bucket, prefix = bucket_and_prefix(args)
    stage(
        args.source,
        args.classes,
        bucket,
        prefix,
        workdir=Path(args.workdir) if args.workdir else None,
        seed=args.seed,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        explore=args.explore,
        upload=not args.no_upload,
        outliers=args.outliers,
    )
    return 0


def parse_hyperparameters(items: list[str]) -> dict[str, str]:
    """`--hp NAME=VALUE` pairs; names use underscores as train.py's do."""
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.UsageError(f"--hp {item!r} is not NAME=VALUE", "e.g. --hp lr=0.05")
        found[key.replace("-", "_")] = value
    return found


def cmd_train(args: argparse.Namespace) -> int:
    from scones import training_job
    from scones.data.classes import parse_classes

    if args.mode == "sagemaker-local":  # the SDK's local container mode (needs Docker)
        from scones.deploy import aws_command

        return aws_command.train_local(args)
    bucket, prefix = bucket_and_prefix(args)
    classes = parse_classes(args.classes) if args.classes else None
    hyperparameters = parse_hyperparameters(args.hyperparameter or [])
    result = training_job.run(
        bucket, prefix, args.job_name, args.epochs, classes, hyperparameters, allow_unknown=args.allow_unknown_hp
    )
    print(training_job.metrics_table(result.metrics, list(result.metrics["per_class"])))
    print(f"model: {result.model_uri}  ({result.seconds:.1f} s for the whole job)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from scones.evaluate import evaluate, false_pass_table

    bucket, prefix = bucket_and_prefix(args)
    found = evaluate(bucket, prefix, args.model, Path(args.out) if args.out else None, args.threshold)
    m = found.metrics
    print(
        f"accuracy {m['accuracy']:.4f}   ECE {m['ece']:.4f}   coverage (>= {m['threshold']}): "
        f"{m['coverage']:.1%} of images, accuracy among them {m['accuracy_covered'] or 0:.4f}"
    )
    for name, row in m["per_class"].items():
        print(f"  {name:<14} precision {row['precision']:.3f}  recall {row['recall']:.3f}  n={row['support']}")
    print(false_pass_table(m))
    print(f"wrote {', '.join(map(str, found.files))}")
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    import json

    from scones import endpoint

    name = args.name or settings.endpoint_name()
    if args.action == "serve":
        endpoint.serve(args.model, name, args.port, args.workers)
    elif args.action == "start":
        found = endpoint.start(args.model, name, args.port, workers=args.workers)
        print(f"clients: export {settings.SAGEMAKER_RUNTIME_URL}={found.url}   (`scones env` prints it too)")
    elif args.action == "stop":
        endpoint.stop(name)
    elif args.action == "status":
        found = endpoint.status(name)
        if not found.running:
            print(f"endpoint {name}: not running ({found.detail})")
            return 3
        where = f"{found.url} (pid {found.pid}, {found.workers} workers)"
        print(f"endpoint {name}: running at {where}; {json.dumps(found.stats)}")
    else:
        if not args.image:
            raise errors.UsageError("scones endpoint invoke needs an image file", "scones endpoint invoke IMAGE.png")
        answer = endpoint.invoke_file(Path(args.image), name)
        scores = "  ".join(f"{label}={p:.4f}" for label, p in answer.probabilities.items())
        print(f"{Path(args.image).name}: {answer.label} ({answer.confidence:.4f})   {scores}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from scones.deploy import aws_command
    from scones.deploy.run import deploy

    target = targets.activate(args.target)
    if target.name == "aws":  # the SageMaker chain: training job, endpoint, scaling, stack, monitoring schedule
        return aws_command.deploy(args)
    found = deploy(target, args.bucket or settings.bucket(), args.model, args.threshold, args.alert_email)
    print(f"stack {found.stack}: {found.action} in {found.seconds:.1f} s ({found.uploaded} artifacts uploaded)")
    for key, value in sorted(found.outputs.items()):
        print(f"  {key:<30} {value}")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from scones import workflow
    from scones.invoke import invoke

    started = time.perf_counter()
    bucket, prefix = bucket_and_prefix(args)
    rows = invoke(bucket, prefix, args.key, args.batch, args.single)
    print(workflow.table(rows))
    print(f"({time.perf_counter() - started:.2f} s)")
    return 1 if args.strict and any(r.status != "SUCCEEDED" for r in rows) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from scones.invoke import export

    for path, arn in export(Path(args.out_dir) if args.out_dir else settings.data_dir() / "statemachine"):
        print(f"wrote {path} ({arn})")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from scones import graph

    out = Path(args.out) if args.out else settings.data_dir() / "graph.png"
    path, arn, status = graph.draw(out, args.execution, args.batch, args.status)
    print(f"wrote {path} for execution {arn} ({status})")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from scones import cleanup
    from scones.deploy import aws_command

    target = targets.activate(args.target)
    if target.name == "aws":  # by the project's tags: asks first, dependency order, non-zero if anything is left
        return aws_command.clean(args)
    for line in cleanup.clean(target, delete_bucket=args.delete_bucket):
        print(line)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    import json

    from scones import load
    from scones.core.progress import Progress

    drift = f", drift {args.drift}" if args.drift else ""
    summary = load.generate(
        args.mode,
        via=args.via,
        count=args.count,
        concurrency=args.concurrency,
        rate=args.rate,
        duration_s=args.duration,
        drift=args.drift,
        seed=args.seed,
        progress=Progress(f"load ({args.mode} via {args.via}{drift})"),
    )
    print(summary.text())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from scones.monitoring import monitor

    result = monitor.run(
        args.capture,
        args.baseline,
        Path(args.out) if args.out else None,
        args.threshold,
        args.since,
        args.endpoint,
        alert_on_drift=args.alert,
        metrics=not args.no_metrics,
        bucket=args.bucket,
        prefix=args.prefix,
    )
    return 1 if args.strict and result.failed else 0


BUCKET_HELP = f"default ${settings.BUCKET} or {settings.DEFAULT_BUCKET}"
PREFIX_HELP = f"the staged data's prefix (default ${settings.PREFIX} or {settings.DEFAULT_PREFIX})"
TARGET_HELP = f"default ${settings.TARGET} or {settings.DEFAULT_TARGET}"


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line naming the next step like every other error."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (next: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from scones.deploy import aws_command

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

    p = add("up", cmd_up, "start the local cloud in the background (idempotent)", locks=True)
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    p.add_argument("--port", type=int, default=None, help=f"default ${settings.LOCALCLOUD_PORT} or 4566")
    p.add_argument("--check", action="store_true", help="run the self-test of the local cloud's patches")
    p = add(
        "down", cmd_down, "stop the local endpoints, the local cloud and every Lambda worker it started", locks=True
    )
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    add("status", cmd_status, "say whether the local cloud runs (exit 3 when not)")
    add("env", cmd_env, 'print export lines: eval "$(scones env)"', target=True)

    p = add("stage", cmd_stage, "stage CIFAR-100 (or the synthetic set) as PNG + .lst + manifest to S3", data=True)
    p.add_argument(
        "--source",
        default="synthetic",
        help="cifar100 (download), synthetic (offline, default) or a path to a CIFAR-100 python tarball",
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

    p = add("train", cmd_train, "train on the staged data as a SageMaker script-mode job would, locally", data=True)
    p.add_argument("--mode", choices=["local", "sagemaker-local"], default="local", help="sagemaker-local: Docker")
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
        cmd_endpoint,
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

    p = add(
        "deploy",
        cmd_deploy,
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
    aws_command.add_deploy_flags(p)

    p = add("invoke", cmd_invoke, "run the workflow on staged test images and print a result table", data=True)
    p.add_argument("--key", action="append", help="an S3 key in the bucket (repeatable)")
    p.add_argument("--batch", type=int, default=None, help="N staged test images through the Map state machine")
    p.add_argument("--single", action="store_true", help="with --batch: one single-image execution per image")
    p.add_argument("--strict", action="store_true", help="exit 1 when any image FAILED (default: exit 0 once run)")

    p = add("graph", cmd_graph, "draw the state machine with each state's status in an execution (png or svg)")
    p.add_argument("--execution", default=None, help="an execution ARN (default: the newest of the machine)")
    p.add_argument("--batch", action="store_true", help="the Map state machine instead of the single-image one")
    p.add_argument("--status", choices=["SUCCEEDED", "FAILED"], default=None, help="newest execution with this status")
    p.add_argument("--out", default=None, help="output file, .png or .svg (default: data/graph.png)")

    p = add(
        "clean",
        cmd_clean,
        "remove what the project created on the target (stack, objects, endpoints, cloud)",
        target=True,
        locks=True,
    )
    p.add_argument("--delete-bucket", action="store_true", help="also delete the bucket itself once empty")
    aws_command.add_clean_flags(p)

    p = add("export", cmd_export, "write the deployed state machine definitions as JSON")
    p.add_argument("--out-dir", default=None, help=f"default: data/statemachine (${settings.DATA_DIR})")

    p = add(
        "evaluate",
        cmd_evaluate,
        "metrics, confusion matrix and reliability diagram on the staged test split",
        data=True,
    )
    p.add_argument(
        "--model",
        default=None,
        help="s3://…/model.tar.gz, a local model.tar.gz or folder (default: the newest model in the bucket)",
    )
    p.add_argument("--out", default=None, help="folder for the report (default data/reports/<job>/)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"report coverage and false passes at this confidence (default: the deployed stack's, else "
        f"${settings.THRESHOLD} or {settings.DEFAULT_THRESHOLD})",
    )

    p = add("load", cmd_load, "send bounded traffic (stream or burst) through the workflow or the endpoint")
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
        cmd_monitor,
        "read every captured record, check drift against the baseline, write the report",
        data=True,
    )
    p.add_argument("--capture", default=None, help="s3://bucket/prefix/endpoint or a folder (default: the endpoint's)")
    p.add_argument("--baseline", default=None, help="a baseline folder, s3://…/ or model URI (default: newest model's)")
    p.add_argument("--out", default=None, help="report folder (default data/reports/monitor/)")
    p.add_argument("--threshold", type=float, default=None, help="default: the deployed stack's, else $THRESHOLD")
    p.add_argument("--since", default=None, help="only records since an ISO time or a duration back (15m, 2h)")
    p.add_argument("--endpoint", default=None, help="the metrics' EndpointName dimension (default: the endpoint)")
    p.add_argument("--alert", action="store_true", help="publish to the alert topic when a check fails")
    p.add_argument("--no-metrics", action="store_true", help="do not put metrics to CloudWatch")
    p.add_argument("--strict", action="store_true", help="exit 1 on DRIFT (default: exit 0 once analysed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or settings.debug()
    try:
        if getattr(args, "target", None) is None:
            targets.activate()  # commands with --target activate the one they were given
        if not args.locks or (args.command == "endpoint" and args.action in ("status", "invoke")):
            return args.func(args) or 0
        name = getattr(args, "target", None) or getattr(args, "stack", None) or settings.target()
        with lock.hold(name, args.command, wait=not args.no_wait, log=lambda m: print(m, file=sys.stderr)):
            return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"scones {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        failure = errors.explain(exc, targets.current().name if targets.is_active() else settings.DEFAULT_TARGET)
        failure.next_step = failure.next_step or f"scones {args.command} --help"
        if debug:
            import traceback

            traceback.print_exc()
        print(f"scones {args.command}: error: {failure.line()}", file=sys.stderr)
        return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
