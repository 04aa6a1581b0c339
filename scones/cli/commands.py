"""What each `scones` subcommand prints: it calls the command's module with the parsed arguments."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scones.core import errors, settings
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
    if args.mode == "container":  # the SDK's job, its drivers and a private /opt/ml: no Docker
        from scones.containers import training as container

        run = container.run
    else:
        run = training_job.run
    result = run(
        bucket, prefix, args.job_name, args.epochs, classes, hyperparameters, allow_unknown=args.allow_unknown_hp
    )
    print(training_job.metrics_table(result.metrics, list(result.metrics["per_class"])))
    print(f"model: {result.model_uri}  ({result.seconds:.1f} s for the whole job)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from scones.evaluate import evaluate, false_pass_table

    bucket, prefix = bucket_and_prefix(args)
    out = Path(args.out) if args.out else None
    found = evaluate(bucket, prefix, args.model, out, args.threshold, target=targets.current().name)
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
    if args.runtime != "scones" and args.action != "serve":
        raise errors.UsageError(
            f"--runtime {args.runtime} applies to `endpoint serve` only", "scones endpoint serve --runtime sagemaker"
        )
    if args.action == "serve" and args.runtime == "sagemaker":
        from scones.containers import inference as container

        container.serve_artifact(args.model, name, args.port, args.workers)
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
        rows = (found.stats or {}).get("variants", [])
        counters = {k: v for k, v in (found.stats or {}).items() if k != "variants"}
        print(f"endpoint {name}: running at {where}; {json.dumps(counters)}")
        for row in rows:
            share = f"shadow {row['shadow_percent']:g}%" if row["shadow_percent"] else f"weight {row['weight']:g}"
            print(
                f"  variant {row['name']:<12} {share:<12} {row['requests']:>8} requests  {row['errors5xx']} 5xx  "
                f"{row['errors4xx']} 4xx  model {row['model_uri']}"
            )
    else:
        if not args.image:
            raise errors.UsageError("scones endpoint invoke needs an image file", "scones endpoint invoke IMAGE.png")
        answer = endpoint.invoke_file(Path(args.image), name)
        scores = "  ".join(f"{label}={p:.4f}" for label, p in answer.probabilities.items())
        print(f"{Path(args.image).name}: {answer.label} ({answer.confidence:.4f})   {scores}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from scones.deploy import aws_command
    from scones.deploy.run import Update, deploy

    if args.shadow_percent is not None and not args.shadow:
        raise errors.UsageError("--shadow-percent needs --shadow", "scones deploy --model NEW --shadow")
    if args.shadow and args.rollout:
        raise errors.UsageError("--shadow and --rollout are two ways to try a model: pick one", "scones deploy --help")
    if args.alarm and not args.rollout:
        raise errors.UsageError("--alarm needs --rollout", "scones deploy --model NEW --rollout canary:10:300")
    target = targets.activate(args.target)
    if target.name == "aws":  # the SageMaker chain: training job, endpoint, scaling, stack, monitoring schedule
        return aws_command.deploy(args)
    shadow = (
        (settings.shadow_percent() if args.shadow_percent is None else args.shadow_percent) if args.shadow else None
    )
    if shadow is not None and not 0 < shadow <= 100:
        raise errors.UsageError(f"--shadow-percent {shadow:g} is outside 0..100", "e.g. --shadow-percent 20")
    how = Update(force=args.force, shadow_percent=shadow, rollout=args.rollout, alarms=tuple(args.alarm or ()))
    bucket = args.bucket or settings.bucket()
    found = deploy(
        target,
        bucket,
        args.model,
        args.threshold,
        args.alert_email,
        how=how,
        prefix=args.prefix,
        workflow_type=args.workflow_type,
    )
    print(f"stack {found.stack}: {found.action} in {found.seconds:.1f} s ({found.uploaded} artifacts uploaded)")
    for key, value in sorted(found.outputs.items()):
        print(f"  {key:<30} {value}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from scones import rollout

    name = args.name or settings.endpoint_name()
    print(rollout.rollback(name, "asked by hand (scones rollback)"))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from scones import workflow
    from scones.invoke import invoke

    if (args.prefix or "").startswith("s3://"):
        return cmd_backfill(args)
    started = time.perf_counter()
    bucket, prefix = bucket_and_prefix(args)
    if args.strict:
        print("scones invoke: --strict is the default now (exit 1 when any image FAILED): drop it", file=sys.stderr)
    rows = invoke(bucket, prefix, args.key, args.batch, args.single, sync=args.sync)
    print(workflow.table(rows))
    print(f"({time.perf_counter() - started:.2f} s)")
    failed = sum(r.status != "SUCCEEDED" for r in rows)
    if failed and not args.allow_failures:  # a Map whose every item failed is still one SUCCEEDED execution
        print(
            f"scones invoke: {failed} of {len(rows)} image(s) FAILED "
            "(next: scones graph --status FAILED, or --allow-failures to exit 0)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """scones invoke --prefix s3://bucket/prefix/: every image under the prefix through the Distributed Map."""
    from scones import backfill

    done = backfill.run(args.prefix, args.batch_size, args.limit)
    print(backfill.summary(done))
    if done.status != "SUCCEEDED":
        raise backfill.BackfillError(f"the backfill {done.status}: {done.error or 'see the summary above'}")
    failed = sum(r.status == "FAILED" for r in done.rows)
    if failed and not args.allow_failures:  # as invoke: a failed image fails the command unless asked otherwise
        print(
            f"scones invoke: {failed} of {len(done.rows)} image(s) FAILED (next: the failed keys above, or "
            "--allow-failures to exit 0)",
            file=sys.stderr,
        )
        return 1
    return 0


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


def confirmed(question: str, yes: bool, command: str) -> bool:
    """--yes answers for the user; without a terminal to ask on, refuse (one line); else only y or yes is a yes."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise errors.UsageError("not deleting without confirmation: no terminal to ask on", f"{command} --yes")
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        print()
        return False


def cmd_clean(args: argparse.Namespace) -> int:
    from scones import cleanup
    from scones.deploy import aws_command

    target = targets.activate(args.target)
    if target.name == "aws":  # by the project's tags: asks first, dependency order, non-zero if anything is left
        return aws_command.clean(args)
    found = cleanup.plan(target)
    for note in found.notes:
        print(note)
    if found.empty:
        print("nothing of the project's to delete")
        return 0
    print(f"scones clean will delete ({target.name} target):")
    print("\n".join(found.lines(args.delete_bucket)))
    if not confirmed("delete these? [y/N] ", args.yes, "scones clean"):
        print("nothing deleted")
        return 1
    for line in cleanup.clean(target, found, delete_bucket=args.delete_bucket):
        print(line)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    import json

    from scones import load
    from scones.core.files import write_atomic
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
        write_atomic(Path(args.json), json.dumps(summary.as_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from scones.deploy import cost

    if args.images < 1 or args.batch < 1:
        raise errors.UsageError("--images and --batch must be at least 1", "scones cost --images 1000000 --batch 100")
    if (args.target or settings.target()) != "aws":
        print("(the local targets cost nothing; these are the figures of --target aws)")
    print(cost.render_per_images(args.images, settings.region(), cost.Workload(batch=args.batch)), end="")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    if args.compare:
        from scones.monitoring import compare

        if args.baseline or args.alert:
            raise errors.UsageError(
                "--compare judges two variants against each other: it takes no --baseline or --alert",
                f"scones monitor --compare {args.compare}",
            )

        found = compare.run(args.compare, args.capture, args.out, args.threshold, args.since)
        return 1 if args.strict and found.verdict == compare.HOLD else 0
    from scones.monitoring import monitor

    result = monitor.run(
        args.capture,
        args.baseline,
        args.out,  # a folder or an s3:// prefix (a Path would fold s3:// into s3:/)
        args.threshold,
        args.since,
        args.endpoint,
        alert_on_drift=args.alert,
        metrics=not args.no_metrics,
        bucket=args.bucket,
        prefix=args.prefix,
    )
    return 1 if args.strict and result.failed else 0
