"""The `scones` command line: one subcommand per step of the workflow."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from scones.core import settings


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def bucket_and_prefix(args: argparse.Namespace) -> tuple[str, str]:
    """--bucket and --prefix, else the settings' defaults."""
    return args.bucket or settings.bucket(), (args.prefix or settings.prefix()).strip("/")


def cmd_up(args: argparse.Namespace) -> int:
    from scones import localcloud

    if args.stack == "localstack":
        localcloud.compose("up", "-d", "--wait")
        print("LocalStack is up on 127.0.0.1:4566; run: export SCONES_TARGET=localstack")
        return 0
    current = localcloud.up(port=args.port)
    if args.check:
        from services.localcloud import selftest

        settings.apply_target_env()
        selftest.run()
    print(f'\nTo use it from your shell: eval "$(scones env)"   (AWS_ENDPOINT_URL={current.url})')
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from scones import endpoint, localcloud

    for name in endpoint.recorded_names():
        endpoint.stop(name)
    if args.stack == "localstack":
        localcloud.compose("down", "-v")
        return 0
    localcloud.down()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from scones import endpoint, localcloud

    for name in endpoint.recorded_names():
        ep = endpoint.status(name)
        state = f"running at {ep.url} (pid {ep.pid})" if ep.running else f"not running ({ep.detail})"
        print(f"endpoint {ep.name}: {state}")
    found = localcloud.status()
    if not found.running:
        print(f"local cloud: not running ({found.detail})")
        return 3
    health = found.health or {}
    workers = health.get("lambda_workers", [])
    print(
        f"local cloud: running at {found.url} (pid {found.pid}, up {health.get('uptime_s')} s, "
        f"moto {health.get('moto')}, {len(workers)} warm Lambda worker(s))"
    )
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    print("\n".join(settings.export_lines()))
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scones.data import staging
    from scones.data.classes import parse_classes

    classes = parse_classes(args.classes)
    if args.train_per_class is not None and args.train_per_class < 1:
        raise UsageError("--train-per-class must be at least 1")
    if args.test_per_class is not None and args.test_per_class < 1:
        raise UsageError("--test-per-class must be at least 1")
    started = time.perf_counter()
    source = staging.resolve_source(args.source, classes, args.seed, args.train_per_class, args.test_per_class)
    workdir = Path(args.workdir).resolve() if args.workdir else staging.default_workdir(source, classes)
    manifest = staging.build(source, classes, workdir)
    print(f"staged {source.kind} ({source.tarball.name}, md5 {source.md5}) in {workdir}")
    print(staging.describe(manifest))
    if args.explore:
        from scones.data import probe

        sheet = staging.contact_sheet(workdir, manifest)
        print(f"contact sheet: {sheet}")
        accuracy = probe.staged_accuracy(workdir)
        print(
            f"logistic regression on raw pixels: test accuracy {accuracy:.3f} "
            f"(chance {1 / len(classes):.3f}; a linear model should not solve it)"
        )
    if args.no_upload:
        print(f"not uploaded (--no-upload); {time.perf_counter() - started:.1f} s")
        return 0
    bucket, prefix = bucket_and_prefix(args)
    report = staging.upload(workdir, manifest, bucket, prefix)
    what = (
        "nothing changed, 0 objects uploaded"
        if report.uploaded == 0 and report.deleted == 0
        else (f"uploaded {report.uploaded}, unchanged {report.unchanged}, deleted {report.deleted} stale")
    )
    print(
        f"s3://{bucket}/{prefix}/: {what} ({report.seconds:.1f} s upload, {time.perf_counter() - started:.1f} s total)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from scones import training_job
    from scones.data.classes import parse_classes

    bucket, prefix = bucket_and_prefix(args)
    classes = parse_classes(args.classes) if args.classes else None
    hyperparameters = {}
    for item in args.hyperparameter or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--hp {item!r}: expected NAME=VALUE, e.g. --hp lr=0.05")
        hyperparameters[key.replace("-", "_")] = value
    result = training_job.run(bucket, prefix, args.job_name, args.epochs, classes, hyperparameters)
    print(training_job.metrics_table(result.metrics, list(result.metrics["per_class"])))
    print(f"model: {result.model_uri}  ({result.seconds:.1f} s for the whole job)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from scones import models, training_job
    from training import evaluate

    bucket, prefix = bucket_and_prefix(args)
    uri = args.model or models.latest_model_uri(bucket)
    with tempfile.TemporaryDirectory(prefix="scones-eval-") as tmp:
        model_dir = models.fetch_model(uri, Path(tmp) / "model")
        channels = training_job.download_channels(bucket, prefix, Path(tmp) / "data", splits=("test",))
        images, labels = evaluate.load_images(channels["test"], channels["test_lst"] / "test.lst")
        metrics = evaluate.evaluate(model_dir, images, labels)
    out = Path(args.out) if args.out else settings.data_dir() / "reports" / uri.rstrip("/").split("/")[-3]
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    confusion = evaluate.plot_confusion(metrics, out / "confusion_matrix.png")
    diagram = evaluate.plot_reliability(metrics, out / "reliability.png")
    print(f"model {uri} on s3://{bucket}/{prefix}/test ({metrics['n']} images)")
    print(
        f"accuracy {metrics['accuracy']:.4f}   ECE {metrics['ece']:.4f}   "
        f"confident (>= 0.93): {metrics['share_confident_0.93']:.1%} of images, "
        f"accuracy among them {metrics['accuracy_when_confident_0.93'] or 0:.4f}"
    )
    for name, row in metrics["per_class"].items():
        print(f"  {name:<14} precision {row['precision']:.3f}  recall {row['recall']:.3f}  n={row['support']}")
    print(f"wrote {confusion}, {diagram}, {out / 'metrics.json'}")
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    from scones import endpoint

    name = args.name or settings.endpoint_name()
    if args.action == "serve":
        from services.endpoint import server

        uri, model_dir = endpoint.prepare_model(args.model, name)
        print(f"serving {uri} as {name} (Ctrl-C stops; capture is flushed)")
        server.main(endpoint.server_args(model_dir, name, args.port, settings.endpoint_record_path(name)))
        return 0
    if args.action == "start":
        found = endpoint.start(args.model, name, args.port)
        print(f"clients: export {settings.SAGEMAKER_RUNTIME_URL}={found.url}   (`scones env` prints it too)")
        return 0
    if args.action == "stop":
        endpoint.stop(name)
        return 0
    if args.action == "status":
        found = endpoint.status(name)
        if not found.running:
            print(f"endpoint {name}: not running ({found.detail})")
            return 3
        print(f"endpoint {name}: running at {found.url} (pid {found.pid}); {json.dumps(found.stats)}")
        return 0
    return invoke_image(args, name)


def invoke_image(args: argparse.Namespace, name: str) -> int:
    from pathlib import Path

    from scones import endpoint, models, workflow
    from scones.core import aws

    if not args.image:
        raise UsageError("scones endpoint invoke needs an image file")
    path = Path(args.image)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    content_type = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        path.suffix.lower(), "application/x-image"
    )
    settings.apply_target_env()
    runtime = aws.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint(
            EndpointName=name, ContentType=content_type, Accept="application/json", Body=path.read_bytes()
        )
    except runtime.exceptions.ModelError as exc:
        raise UsageError(f"the model refused {path.name}: {exc.response.get('OriginalMessage') or exc}") from None
    probabilities = json.loads(response["Body"].read())
    model_dir = endpoint.record(name).get("model_dir")  # a local endpoint knows its labels
    labels = models.labels_of(Path(model_dir)) if model_dir else []
    label, confidence = workflow.best(probabilities, labels)
    names = labels if len(labels) == len(probabilities) else [f"class_{i}" for i in range(len(probabilities))]
    print(
        f"{path.name}: {label} ({confidence:.4f})   "
        + "  ".join(f"{n}={p:.4f}" for n, p in zip(names, probabilities, strict=True))
    )
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    import os
    import tempfile
    from pathlib import Path

    from scones import endpoint, localcloud, models
    from scones.core import aws
    from scones.deploy import stack

    if args.target:
        os.environ[settings.TARGET] = args.target
    target = settings.target()
    settings.apply_target_env()
    aws.reset()
    if target == "local" and not localcloud.status().running:
        raise UsageError("the local cloud is not running: `scones up` first (or pass --target aws|localstack)")
    bucket = args.bucket or settings.bucket()
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        print(f"creating bucket {bucket}")
        s3.create_bucket(Bucket=bucket)
    name = settings.endpoint_name()
    if target == "aws":
        uri = args.model or models.latest_model_uri(bucket)
        model_dir = models.fetch_model(uri, Path(tempfile.mkdtemp(prefix="scones-deploy-")))
        runtime_url = ""
        print(f"target aws: the classify Lambda calls the SageMaker endpoint {name} (model {uri})")
    else:
        current = endpoint.status(name)
        wanted = args.model
        if current.running and wanted and endpoint.record(name).get("model_uri") != wanted:
            endpoint.stop(name)
            current = endpoint.status(name)
        if not current.running:
            current = endpoint.start(wanted, name)
        served = endpoint.record(name)
        model_dir = Path(served["model_dir"])
        runtime_url = current.url
        if target == "localstack":  # Lambda containers reach the host through this name
            runtime_url = runtime_url.replace("127.0.0.1", "host.docker.internal")
        print(f"endpoint {name} serves {served.get('model_uri')} at {current.url}")
    threshold = settings.threshold() if args.threshold is None else args.threshold
    if not 0 <= threshold <= 1:
        raise UsageError(f"--threshold {threshold} is outside 0..1")
    parameters = {
        "NamePrefix": settings.stack_name().removesuffix("-workflow"),
        "CodeBucket": bucket,
        "DataBucket": bucket,
        "EndpointName": name,
        "Labels": ",".join(models.labels_of(model_dir)),
        "Threshold": str(threshold),
        "SageMakerRuntimeUrl": runtime_url,
        "AlertEmail": args.alert_email or "",
    }
    result = stack.deploy(parameters)
    print(f"stack {result.stack}: {result.action} in {result.seconds:.1f} s ({result.uploaded} artifacts uploaded)")
    for key, value in sorted(result.outputs.items()):
        print(f"  {key:<30} {value}")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from scones import workflow
    from scones.core import aws
    from scones.deploy import stack

    settings.apply_target_env()
    bucket, prefix = bucket_and_prefix(args)
    outputs = stack.outputs()
    sfn = aws.client("stepfunctions", max_pool_connections=32)
    if args.key:
        keys = args.key
    elif args.batch:
        if args.batch < 1:
            raise UsageError("--batch must be at least 1")
        keys = workflow.staged_test_keys(bucket, prefix, args.batch)
        if not keys:
            raise UsageError(f"no staged test images under s3://{bucket}/{prefix}/test/: run `scones stage`")
    else:
        raise UsageError("pass --key KEY (repeatable) or --batch N")
    started = time.perf_counter()
    if args.batch and not args.single:
        print(f"one Map execution over {len(keys)} images ...")
        _, rows = workflow.run_batch(sfn, outputs["ClassifyBatchStateMachineArn"], bucket, keys)
    else:
        print(f"{len(keys)} single-image execution(s) ...")
        rows = workflow.run_single(sfn, outputs["ClassifyImageStateMachineArn"], bucket, keys)
    print(workflow.table(rows))
    print(f"({time.perf_counter() - started:.2f} s)")
    if args.strict and any(r.status != "SUCCEEDED" for r in rows):
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scones.core import aws
    from scones.deploy import stack

    settings.apply_target_env()
    outputs = stack.outputs()
    out = Path(args.out_dir) if args.out_dir else settings.data_dir() / "statemachine"
    out.mkdir(parents=True, exist_ok=True)
    sfn = aws.client("stepfunctions")
    for key in ("ClassifyImageStateMachineArn", "ClassifyBatchStateMachineArn"):
        described = sfn.describe_state_machine(stateMachineArn=outputs[key])
        path = out / f"{described['name']}.json"
        path.write_text(json.dumps(json.loads(described["definition"]), indent=2) + "\n")
        print(f"wrote {path} ({described['stateMachineArn']})")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scones import graph, workflow
    from scones.core import aws
    from scones.deploy import stack

    settings.apply_target_env()
    sfn = aws.client("stepfunctions")
    if args.execution:
        arn = args.execution
    else:
        outputs = stack.outputs()
        machine = outputs["ClassifyBatchStateMachineArn" if args.batch else "ClassifyImageStateMachineArn"]
        executions = sfn.list_executions(stateMachineArn=machine, maxResults=100)["executions"]
        if args.status:
            executions = [e for e in executions if e["status"] == args.status]
        if not executions:
            raise UsageError("no execution to draw: run `scones invoke` first (or pass --execution ARN)")
        arn = max(executions, key=lambda e: e["startDate"])["executionArn"]
    described = sfn.describe_execution(executionArn=arn)
    definition = json.loads(sfn.describe_state_machine_for_execution(executionArn=arn)["definition"])
    found = graph.statuses(workflow.history(sfn, arn), described["status"])
    title = f"{arn.split(':')[-2]} / {described['name']}: {described['status']}"
    if described.get("error"):
        title += f" ({described['error']})"
    out = graph.render(definition, found, Path(args.out) if args.out else settings.data_dir() / "graph.png", title)
    print(f"wrote {out} for execution {arn} ({described['status']})")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    import os

    from scones import cleanup

    if args.target:
        os.environ[settings.TARGET] = args.target
    for line in cleanup.clean(delete_bucket=args.delete_bucket):
        print(line)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from scones import load
    from scones.core.progress import Progress

    summary = load.generate(
        args.mode,
        via=args.via,
        count=args.count,
        concurrency=args.concurrency,
        rate=args.rate,
        duration_s=args.duration,
        drift=args.drift,
        seed=args.seed,
        progress=Progress(f"load ({args.mode} via {args.via}{', drift ' + args.drift if args.drift else ''})"),
    )
    print(summary.text())
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scones.core.progress import Progress
    from scones.monitoring import capture, monitor

    settings.apply_target_env()
    where = capture.Location.parse(args.capture or monitor.default_capture())
    threshold = args.threshold if args.threshold is not None else monitor.deployed_threshold() or settings.threshold()
    if not 0 <= threshold <= 1:
        raise UsageError(f"--threshold {threshold} is outside 0..1")
    bucket, prefix = bucket_and_prefix(args)
    base, source = monitor.resolve_baseline(args.baseline, bucket, prefix, threshold)
    print(f"capture {where}; baseline {source} ({len(base.frame)} images); threshold {threshold:g}")
    since = monitor.parse_since(args.since)
    result = monitor.analyse(where, base, source, threshold, since, progress=Progress("reading capture files"))
    print(result.table.summary())
    if result.skipped_before_since:
        print(f"  {result.skipped_before_since} record(s) before --since left out; {len(result.frame)} analysed")
    out = Path(args.out) if args.out else settings.data_dir() / "reports" / "monitor"
    monitor.write_outputs(result, out)
    print(monitor.drift_rows(result))
    failed = ", ".join(c.name for c in result.failed)
    print(f"verdict: {result.verdict}" + (f" (failed: {failed})" if failed else ""))
    endpoint = args.endpoint or settings.endpoint_name()
    if not args.no_metrics:
        try:
            print(f"put {monitor.put_metrics(result, endpoint)} metrics to CloudWatch namespace {monitor.NAMESPACE}")
        except Exception as exc:  # the report is written either way; say why the metrics are not
            print(f"metrics not sent: {exc}", file=sys.stderr)
    if args.alert and result.failed:
        print(f"alert published (message {monitor.alert(result, endpoint)})")
    print(f"report: {result.files['report']}  (files in {out})")
    return 1 if args.strict and result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scones", description="Scones Unlimited's ML workflow, local-first.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "start the local cloud in the background (idempotent)")
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    p.add_argument("--port", type=int, default=None, help=f"default {settings.LOCALCLOUD_PORT} or 4566")
    p.add_argument("--check", action="store_true", help="run the self-test of the local cloud's patches")
    p = add("down", cmd_down, "stop the local endpoints, the local cloud and every Lambda worker it started")
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    add("status", cmd_status, "say whether the local cloud runs (exit 3 when not)")
    add("env", cmd_env, 'print export lines: eval "$(scones env)"')

    p = add("stage", cmd_stage, "stage CIFAR-100 (or the synthetic set) as PNG + .lst + manifest to S3")
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
    p.add_argument("--bucket", default=None, help=f"default ${settings.BUCKET} or {settings.DEFAULT_BUCKET}")
    p.add_argument("--prefix", default=None, help=f"default ${settings.PREFIX} or {settings.DEFAULT_PREFIX}")
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

    p = add("train", cmd_train, "train on the staged data as a SageMaker script-mode job would, locally")
    p.add_argument("--bucket", default=None, help=f"default ${settings.BUCKET} or {settings.DEFAULT_BUCKET}")
    p.add_argument("--prefix", default=None, help="the staged data's prefix (default $SCONES_PREFIX or data)")
    p.add_argument("--epochs", type=int, default=None, help="default: train.py's (18)")
    p.add_argument("--job-name", default=None, help="default scones-YYYYmmdd-HHMMSS")
    p.add_argument("--classes", default=None, help="must match the staged classes (checked)")
    p.add_argument(
        "--hp",
        dest="hyperparameter",
        action="append",
        metavar="NAME=VALUE",
        help="any other hyperparameter of training/train.py, e.g. --hp lr=0.05 (repeatable)",
    )

    p = add("endpoint", cmd_endpoint, "the local SageMaker-style endpoint: serve | start | stop | status | invoke")
    p.add_argument("action", choices=["serve", "start", "stop", "status", "invoke"])
    p.add_argument("image", nargs="?", help="invoke: an image file (png, jpeg)")
    p.add_argument("--model", default=None, help="s3://…/model.tar.gz, a local tarball or folder (default: newest)")
    p.add_argument("--name", default=None, help=f"default ${settings.SCONES_ENDPOINT_NAME} or scones-endpoint")
    p.add_argument("--port", type=int, default=None, help=f"default ${settings.ENDPOINT_PORT} or 8080 (0: any free)")

    p = add("deploy", cmd_deploy, "package the Lambdas and deploy template.yaml's stack (idempotent)")
    p.add_argument("--target", choices=settings.TARGETS, default=None, help="default $SCONES_TARGET or local")
    p.add_argument("--model", default=None, help="model the local endpoint serves (default: running one, else newest)")
    p.add_argument("--bucket", default=None)
    p.add_argument("--threshold", type=float, default=None, help="confidence threshold (default $THRESHOLD or 0.93)")
    p.add_argument("--alert-email", default=None, help="subscribe this address to the alert topic")

    p = add("invoke", cmd_invoke, "run the workflow on staged test images and print a result table")
    p.add_argument("--key", action="append", help="an S3 key in the bucket (repeatable)")
    p.add_argument("--batch", type=int, default=None, help="N staged test images through the Map state machine")
    p.add_argument("--single", action="store_true", help="with --batch: one single-image execution per image")
    p.add_argument("--strict", action="store_true", help="exit 1 when any image FAILED (default: exit 0 once run)")
    p.add_argument("--bucket", default=None)
    p.add_argument("--prefix", default=None)

    p = add("graph", cmd_graph, "draw the state machine with each state's status in an execution (png or svg)")
    p.add_argument("--execution", default=None, help="an execution ARN (default: the newest of the machine)")
    p.add_argument("--batch", action="store_true", help="the Map state machine instead of the single-image one")
    p.add_argument("--status", choices=["SUCCEEDED", "FAILED"], default=None, help="newest execution with this status")
    p.add_argument("--out", default=None, help="output file, .png or .svg (default: data/graph.png)")

    p = add("clean", cmd_clean, "remove what the project created on the target (stack, objects, endpoints, cloud)")
    p.add_argument("--target", choices=settings.TARGETS, default=None)
    p.add_argument("--delete-bucket", action="store_true", help="also delete the bucket itself once empty")

    p = add("export", cmd_export, "write the deployed state machine definitions as JSON")
    p.add_argument("--out-dir", default=None, help="default: data/statemachine ($SCONES_DATA_DIR)")

    p = add("evaluate", cmd_evaluate, "metrics, confusion matrix and reliability diagram on the staged test split")
    p.add_argument(
        "--model",
        default=None,
        help="s3://…/model.tar.gz, a local model.tar.gz or folder (default: the newest model in the bucket)",
    )
    p.add_argument("--bucket", default=None)
    p.add_argument("--prefix", default=None)
    p.add_argument("--out", default=None, help="folder for the report (default data/reports/<job>/)")

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

    p = add("monitor", cmd_monitor, "read every captured record, check drift against the baseline, write the report")
    p.add_argument("--capture", default=None, help="s3://bucket/prefix/endpoint or a folder (default: the endpoint's)")
    p.add_argument("--baseline", default=None, help="a baseline folder, s3://…/ or model URI (default: newest model's)")
    p.add_argument("--out", default=None, help="report folder (default data/reports/monitor/)")
    p.add_argument("--threshold", type=float, default=None, help="default: the deployed stack's, else $THRESHOLD")
    p.add_argument("--since", default=None, help="only records since an ISO time or a duration back (15m, 2h)")
    p.add_argument("--endpoint", default=None, help="the metrics' EndpointName dimension (default: the endpoint)")
    p.add_argument("--alert", action="store_true", help="publish to the alert topic when a check fails")
    p.add_argument("--no-metrics", action="store_true", help="do not put metrics to CloudWatch")
    p.add_argument("--strict", action="store_true", help="exit 1 on DRIFT (default: exit 0 once analysed)")
    p.add_argument("--bucket", default=None, help="where the staged data and models are (baseline)")
    p.add_argument("--prefix", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from scones.core.errors import SconesError
    from scones.data.cifar import DataError
    from scones.data.classes import EmptySelectionError, UnknownClassError
    from scones.data.staging import StagingError
    from scones.deploy.stack import DeployError
    from scones.endpoint import EndpointError
    from scones.localcloud import LocalCloudError
    from scones.models import ModelNotFoundError
    from scones.training_job import TrainingJobError
    from services.localcloud.selftest import SelfTestError

    try:
        return args.func(args)
    except SconesError as exc:
        print(f"scones {args.command}: error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    except (UsageError, settings.SettingsError, UnknownClassError, EmptySelectionError) as exc:
        print(f"scones {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (
        LocalCloudError,
        SelfTestError,
        DataError,
        StagingError,
        TrainingJobError,
        ModelNotFoundError,
        EndpointError,
        DeployError,
    ) as exc:
        print(f"scones {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scones {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
