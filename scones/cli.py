"""The `scones` command line: one subcommand per step of the workflow."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from scones import settings


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


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
    from scones import localcloud

    if args.stack == "localstack":
        localcloud.compose("down", "-v")
        return 0
    localcloud.down()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from scones import localcloud

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scones", description="Scones Unlimited's ML workflow, local-first."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "start the local cloud in the background (idempotent)")
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    p.add_argument("--port", type=int, default=None, help=f"default {settings.LOCALCLOUD_PORT} or 4566")
    p.add_argument("--check", action="store_true", help="run the self-test of the local cloud's patches")
    p = add("down", cmd_down, "stop the local cloud and every Lambda worker it started")
    p.add_argument("--stack", choices=["local", "localstack"], default="local")
    add("status", cmd_status, "say whether the local cloud runs (exit 3 when not)")
    add("env", cmd_env, 'print export lines: eval "$(scones env)"')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from scones.localcloud import LocalCloudError
    from services.localcloud.selftest import SelfTestError

    try:
        return args.func(args)
    except (UsageError, settings.SettingsError) as exc:
        print(f"scones {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (LocalCloudError, SelfTestError) as exc:
        print(f"scones {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scones {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
