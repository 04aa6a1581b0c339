"""The `scones` command line: argument parsing (parser.py) and printing (commands.py) only; each command's work
lives in its own module.

Every command ends with exit 0, or with one line on stderr naming the problem and the next step and a
non-zero exit (scones.core.errors); an unexpected exception prints one line with the log holding its
traceback, and the traceback itself only with --debug (or SCONES_DEBUG=1).
"""

from __future__ import annotations

import sys

from scones.cli.parser import build_parser
from scones.core import lock, settings
from scones.core import target as targets

__all__ = ["build_parser", "main"]


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
        from scones.core import failures  # imports botocore: 11 ms that `scones --help` need not pay

        failure = failures.explain(exc, targets.current().name if targets.is_active() else settings.DEFAULT_TARGET)
        failure.next_step = failure.next_step or f"scones {args.command} --help"
        if debug:
            import traceback

            traceback.print_exc()
        print(f"scones {args.command}: error: {failure.line()}", file=sys.stderr)
        return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
