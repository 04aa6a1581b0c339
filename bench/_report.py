"""The benchmarks' one writer of docs/benchmarks.md: each bench replaces its own section, nothing else.

A section lies between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; a bench whose markers are missing
appends them at the end. The section holds the table the bench measured, the command that measured it, the
date (UTC) and the machine's load average, so no figure in the docs is typed by hand.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def begin(name: str) -> str:
    return f"<!-- bench:{name} -->"


def end(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


class Table:
    """A markdown table a bench fills as it measures: `Table("what", "target", "measured").row(...)`."""

    def __init__(self, *columns: str) -> None:
        self.columns = columns
        self.rows: list[tuple[str, ...]] = []

    def row(self, *cells: object) -> Table:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns: {cells!r}")
        self.rows.append(tuple(cell(c) for c in cells))
        return self

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def section(name: str, command: str, tables: list[Table], *, notes: str = "", when: float | None = None) -> str:
    """The text between (and including) a bench's markers."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when if when is not None else time.time()))
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    body = [
        begin(name),
        f"`{command}` — measured {stamp} on {os.cpu_count()} cores, load average {load} (1 / 5 / 15 min);"
        " regenerate with `make bench`.",
        "",
    ]
    for table in tables:
        body += [table.markdown(), ""]
    if notes:
        body += [notes.strip(), ""]
    body.append(end(name))
    return "\n".join(body)


def replace(text: str, name: str, new: str) -> str:
    """`text` with the section `name` replaced by `new` (appended when it has no markers yet)."""
    start, stop = text.find(begin(name)), text.find(end(name))
    if start == -1 and stop == -1:
        return text.rstrip("\n") + "\n\n" + new + "\n"
    if start == -1 or stop < start:
        raise ValueError(f"docs/benchmarks.md: the markers of section {name!r} are broken")
    return text[:start] + new + text[stop + len(end(name)) :]


def write(name: str, tables: list[Table], *, notes: str = "", path: Path = DOCS, command: str | None = None) -> Path:
    """Replace the bench's section of `path` with what it measured; print where."""
    if command is None:
        command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace(text, name, section(name, command, tables, notes=notes)))
    print(f"wrote section {name!r} of {path}")
    return path


class Report:
    """What one bench run measured: `result()` prints a line and keeps it as a row; `write()` files them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table = Table("what", "target", "measured")
        self.tables: list[Table] = [self.table]

    def result(self, what: str, measured: str, target: str = "") -> None:
        print(f"{what}: {measured}" + (f"   target {target}" if target else ""), flush=True)
        self.table.row(what, target, measured)

    def write(self, notes: str = "", path: Path = DOCS) -> Path:
        tables = [t for t in self.tables if t.rows]
        return write(self.name, tables, notes=notes, path=path)
