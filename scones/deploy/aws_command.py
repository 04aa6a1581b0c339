"""The AWS flags of `scones deploy` / `scones clean` and the two commands: parse, call, print (errors go to
the CLI's one handler, scones.cli).

scones/cli/parser.py adds the flags with `add_deploy_flags` / `add_clean_flags` and hands over when the target is aws.
"""

from __future__ import annotations

import argparse
import sys

from scones.core import settings
from scones.core.errors import UsageError
from scones.data.classes import parse_classes
from scones.deploy.spec import TAG_STACK, Spec, default, from_settings


def add_deploy_flags(p: argparse.ArgumentParser) -> None:
    """Every choice defaults to None: the spec fills it from settings, else from its own default (shown in help)."""
    g = p.add_argument_group("--target aws (make deploy-aws)")
    g.add_argument("--dry-run", action="store_true", help="print every AWS call it would make; call nothing")
    g.add_argument("--yes", action="store_true", help="deploy without asking, once the cost estimate is printed")
    g.add_argument(
        "--role", default=None, help=f"SageMaker execution role, ARN or name (default ${settings.SAGEMAKER_ROLE})"
    )
    g.add_argument("--instance-type", default=None, help=f"training instance (default {default('instance_type')})")
    g.add_argument("--spot", action="store_true", default=None, help="managed spot training (max wait >= max run)")
    g.add_argument(
        "--max-run",
        type=int,
        default=None,
        help=f"MaxRuntimeInSeconds of the training job (default {default('max_run_s')})",
    )
    g.add_argument("--max-wait", type=int, default=None, help="spot: MaxWaitTimeInSeconds (default 2 x --max-run)")
    g.add_argument(
        "--algorithm",
        choices=["script", "builtin"],
        default=None,
        help=f"builtin: image-classification (default {default('algorithm')})",
    )
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default: the algorithm's)")
    g.add_argument("--source", default=None, help=f"what `scones stage` stages (default {default('source')})")
    g.add_argument("--classes", default=None, help=f"default {','.join(default('classes'))}")
    g.add_argument(
        "--endpoint-instance-type",
        default=None,
        help=f"endpoint instance (default {default('endpoint_instance_type')})",
    )
    g.add_argument("--serverless", action="store_true", default=None, help="a serverless endpoint (no data capture)")
    g.add_argument(
        "--max-instances", type=int, default=None, help=f"autoscaling maximum (default {default('max_instances')})"
    )
    g.add_argument(
        "--invocations-per-instance",
        type=int,
        default=None,
        help=f"autoscaling target (default {default('invocations_per_instance')})",
    )


def add_clean_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="aws: delete without asking")
    p.add_argument(
        "--purge-data", action="store_true", help="aws: also delete the S3 objects (and a bucket scones made)"
    )


# The Spec's field each flag sets, on whichever command has it (deploy, clean, train --mode sagemaker-local).
FLAG_FIELDS = {
    "bucket": "bucket",
    "prefix": "prefix",
    "role": "role",
    "algorithm": "algorithm",
    "instance_type": "instance_type",
    "spot": "spot",
    "max_run": "max_run_s",
    "max_wait": "max_wait_s",
    "endpoint_instance_type": "endpoint_instance_type",
    "serverless": "serverless",
    "max_instances": "max_instances",
    "invocations_per_instance": "invocations_per_instance",
    "source": "source",
    "epochs": "epochs",
    "model": "model_uri",
    "threshold": "threshold",
    "alert_email": "alert_email",
}


def spec_from_args(args: argparse.Namespace) -> Spec:
    """The spec from the flags this command has (a flag it lacks or left unset is None: the setting decides)."""
    chosen = {field: getattr(args, flag, None) for flag, field in FLAG_FIELDS.items()}
    classes = tuple(parse_classes(getattr(args, "classes", None)))
    return checked(from_settings(**chosen, classes=classes))


def checked(spec: Spec) -> Spec:
    if spec.spot and spec.max_wait_s is not None and spec.max_wait_s < spec.max_run_s:
        raise UsageError(
            f"--max-wait {spec.max_wait_s} is below --max-run {spec.max_run_s}: spot needs max wait >= max run"
        )
    if not 1 <= spec.max_run_s <= 2_419_200:
        raise UsageError(f"--max-run {spec.max_run_s}: SageMaker allows 1 s to 28 days")
    if spec.max_instances < 1:
        raise UsageError("--max-instances must be at least 1")
    if spec.invocations_per_instance < 1:
        raise UsageError("--invocations-per-instance must be at least 1")
    return spec


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
    from scones.deploy import cost, images, naming, plan, render

    spec = spec_from_args(args)
    if args.dry_run:
        steps = plan.build(spec, image=images.placeholder_or_retrieve)
        print(render.render(steps, spec, naming.account_of(spec)), end="")
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
        print(f"nothing tagged {TAG_STACK}={spec.stack} or named by it: nothing to delete")
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
    from scones.deploy import sagemaker_local

    spec = spec_from_args(args)  # train's --epochs and --prefix included
    where = sagemaker_local.train(spec)
    print(f"local container job done: {where}")
    return 0
