"""One error hierarchy: every failure a user can cause or meet carries its exit code and the next step.

`scones.core.failures` turns any other exception into one of these. `scones.cli` prints
`scones <command>: error: <message> (next: <next_step>)` on one line and exits with `exit_code`; nothing else in
the project decides exit codes.
"""

from __future__ import annotations


class SconesError(Exception):
    """A failure the user can act on. `next_step` names the command (or fix) to try next."""

    exit_code = 1
    next_default: str | None = None  # a subclass's usual next step, when the raise site names none

    def __init__(self, message: str, next_step: str | None = None) -> None:
        super().__init__(message)
        self.next_step = next_step or self.next_default

    def line(self) -> str:
        """The one line shown to the user."""
        text = " ".join(str(self).split())  # one line, whatever the message held
        return f"{text} (next: {self.next_step})" if self.next_step else text


class UsageError(SconesError):
    """Bad input on the command line or in a setting."""

    exit_code = 2


class NotReadyError(SconesError):
    """Something the command needs is not there yet (not started, not staged, not trained, not deployed)."""

    exit_code = 3
