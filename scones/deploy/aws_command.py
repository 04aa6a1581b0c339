"""The AWS flags of `scones deploy` / `scones clean` and the two commands: parse, call, print (errors go to
the CLI's one handler, scones.cli).

scones/cli/parser.py adds the flags with `add_deploy_flags` / `add_clean_flags` and hands over when the target is aws.
"""

from __future__ import annotations

import argparse
import sys

from scones.core.errors import UsageError
from scones.deploy import aws_clean, cost, images, naming, plan, preflight, render, sagemaker, sagemaker_local
from scones.deploy.flags import spec_from_args
from scones.deploy.spec import TAG_STACK


def _answer_yes(question: str) -> bool:
    """Ask on the terminal; only y or yes is a yes (end of input, Ctrl-D, is a no)."""
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        print()
        return False


def _ask_to_deploy(spec, yes: bool, account: str) -> bool:
    """Print the cost estimate, then ask; --yes answers for the user, and no terminal without --yes refuses."""
    print(cost.render(cost.for_spec(spec)), end="", flush=True)
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "not deploying without confirmation: no terminal to ask on", next_step="scones deploy --target aws --yes"
        )
    return _answer_yes(f"deploy to account {account} in {spec.region}, and start billing? [y/N] ")


def deploy(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.dry_run:
        steps = plan.build(spec, image=images.placeholder_or_retrieve)
        print(render.render(steps, spec, naming.account_of(spec)), end="")
        print()
        print(cost.render(cost.estimate(steps, spec.region)), end="")
        return 0
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
    spec = spec_from_args(args)  # train's --epochs and --prefix included
    where = sagemaker_local.train(spec)
    print(f"local container job done: {where}")
    return 0
