"""The AWS flags of `scones deploy` / `scones clean` and the two commands: parse, call, print (errors go to
the CLI's one handler, scones.cli).

scones/cli/parser.py adds the flags with `add_deploy_flags` / `add_clean_flags` and hands over when the target is aws.
"""

from __future__ import annotations

import argparse
import sys

from scones.core import settings
from scones.core.errors import UsageError


def add_deploy_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--target aws (make deploy-aws)")
    g.add_argument("--dry-run", action="store_true", help="print every AWS call it would make; call nothing")
    g.add_argument("--yes", action="store_true", help="deploy without asking, once the cost estimate is printed")
    g.add_argument(
        "--role", default=None, help=f"SageMaker execution role, ARN or name (default ${settings.SAGEMAKER_ROLE})"
    )
    g.add_argument("--instance-type", default="ml.g4dn.xlarge", help="training instance (default ml.g4dn.xlarge)")
    g.add_argument("--spot", action="store_true", help="managed spot training (max wait >= max run)")
    g.add_argument("--max-run", type=int, default=3600, help="MaxRuntimeInSeconds of the training job (default 3600)")
    g.add_argument("--max-wait", type=int, default=None, help="spot: MaxWaitTimeInSeconds (default 2 x --max-run)")
    g.add_argument("--algorithm", choices=["script", "builtin"], default="script", help="builtin: image-classification")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default: the algorithm's)")
    g.add_argument("--source", default="synthetic", help="what `scones stage` stages (default synthetic)")
    g.add_argument("--classes", default=None, help="default bicycle,motorcycle")
    g.add_argument("--endpoint-instance-type", default="ml.m5.large", help="endpoint instance (default ml.m5.large)")
    g.add_argument("--serverless", action="store_true", help="a serverless endpoint (no data capture)")
    g.add_argument("--max-instances", type=int, default=4, help="autoscaling maximum (default 4)")
    g.add_argument("--invocations-per-instance", type=int, default=70, help="autoscaling target (default 70)")


def add_clean_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="aws: delete without asking")
    p.add_argument(
        "--purge-data", action="store_true", help="aws: also delete the S3 objects (and a bucket scones made)"
    )


def spec_from_args(args: argparse.Namespace):
    from scones.data.classes import parse_classes
    from scones.deploy import plan

    classes = tuple(parse_classes(getattr(args, "classes", None)))
    max_run = getattr(args, "max_run", 3600)
    max_wait = getattr(args, "max_wait", None)
    if getattr(args, "spot", False) and max_wait is not None and max_wait < max_run:
        raise UsageError(f"--max-wait {max_wait} is below --max-run {max_run}: spot needs max wait >= max run")
    if not 1 <= max_run <= 2_419_200:
        raise UsageError(f"--max-run {max_run}: SageMaker allows 1 s to 28 days")
    if getattr(args, "max_instances", 4) < 1:
        raise UsageError("--max-instances must be at least 1")
    if getattr(args, "invocations_per_instance", 70) < 1:
        raise UsageError("--invocations-per-instance must be at least 1")
    threshold = settings.threshold() if getattr(args, "threshold", None) is None else args.threshold
    return plan.Spec(
        stack=settings.stack_name(),
        bucket=getattr(args, "bucket", None) or settings.bucket(),
        prefix=settings.prefix(),
        endpoint=settings.endpoint_name(),
        region=settings.region(),
        role=getattr(args, "role", None) or settings.sagemaker_role(),
        algorithm=getattr(args, "algorithm", "script"),
        instance_type=getattr(args, "instance_type", "ml.g4dn.xlarge"),
        spot=getattr(args, "spot", False),
        max_run_s=max_run,
        max_wait_s=max_wait,
        endpoint_instance_type=getattr(args, "endpoint_instance_type", "ml.m5.large"),
        serverless=getattr(args, "serverless", False),
        max_instances=getattr(args, "max_instances", 4),
        invocations_per_instance=getattr(args, "invocations_per_instance", 70),
        source=getattr(args, "source", "synthetic"),
        classes=classes,
        epochs=getattr(args, "epochs", None),
        model_uri=getattr(args, "model", None),
        capture_prefix=settings.capture_prefix(),
        threshold=threshold,
        alert_email=getattr(args, "alert_email", None) or "",
    )


def _answer_yes(question: str) -> bool:
    """Ask on the terminal; only y or yes is a yes (end of input, Ctrl-D, is a no)."""
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        print()
        return False


def _ask_to_deploy(spec, yes: bool, account: str) -> bool:
    """Print the cost estimate, then ask; --yes answers for the user, and no terminal without --yes refuses."""
    from scones.deploy import cost

    print(cost.render(cost.for_spec(spec)), end="", flush=True)
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "not deploying without confirmation: no terminal to ask on", next_step="scones deploy --target aws --yes"
        )
    return _answer_yes(f"deploy to account {account} in {spec.region}, and start billing? [y/N] ")


def deploy(args: argparse.Namespace) -> int:
    from scones.deploy import cost, images, plan

    spec = spec_from_args(args)
    if args.dry_run:
        steps = plan.build(spec, image=images.placeholder_or_retrieve)
        print(plan.render(steps, spec, plan.account_of(spec)), end="")
        print()
        print(cost.render(cost.estimate(steps, spec.region)), end="")
        return 0
    from scones.deploy import sagemaker

    try:
        report = sagemaker.deploy(spec, confirm=lambda account: _ask_to_deploy(spec, args.yes, account))
    except sagemaker.NotConfirmed:
        print("nothing deployed")
        return 1
    changed = len(report.changed)
    print(
        f"deployed to account {report.account}: {changed} change(s); endpoint {spec.endpoint} bills per hour "
        "until `scones clean --target aws` (make clean TARGET=aws)"
    )
    return 0


def clean(args: argparse.Namespace) -> int:
    from scones.deploy import aws_clean, preflight

    spec = spec_from_args(args)
    preflight.credentials()
    items = aws_clean.inventory(spec, args.purge_data)
    if not items:
        print(f"nothing tagged {aws_clean.plan.TAG_STACK}={spec.stack} or named by it: nothing to delete")
        return 0
    print(f"scones clean --target aws will delete, in this order ({spec.region}):")
    for item in items:
        print(f"  {item.kind:<20} {item.name}" + (f"   (deleted with stack {item.owner})" if item.owner else ""))
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not deleting without confirmation", next_step="scones clean --target aws --yes")
        if not _answer_yes(f"delete these {len(items)}? [y/N] "):
            print("nothing deleted")
            return 1
    result = aws_clean.clean(spec, args.purge_data)
    for note in result.notes:
        print(f"note: {note}")
    for item, why in result.left:
        print(f"left: {item.kind} {item.name}: {why}", file=sys.stderr)
    print(f"deleted {len(result.deleted)}, left {len(result.left)}")
    return 1 if result.left else 0


def train_local(args: argparse.Namespace) -> int:
    from scones.deploy import plan, sagemaker_local

    spec = spec_from_args(args)
    spec = plan.Spec(**{**spec.__dict__, "epochs": args.epochs, "prefix": args.prefix or spec.prefix})
    where = sagemaker_local.train(spec)
    print(f"local container job done: {where}")
    return 0
