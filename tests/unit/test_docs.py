"""The README stays a guide (size, links that resolve), and the benches' writer of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest
from helpers import load_bench

from scones.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]

README = ROOT / "README.md"


def load_report():
    return load_bench("_report")


def test_the_readme_is_a_guide_under_30_kb():
    assert README.stat().st_size <= 30 * 1024


@pytest.mark.parametrize("page", [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))], ids=str)
def test_every_relative_link_resolves(page):
    # Given a page's markdown links that are not web addresses
    links = [m for m in re.findall(r"\]\(([^)\s]+)\)", page.read_text()) if not re.match(r"[a-z]+:", m)]
    # Then each names a file of the repository (anchors within a page are not checked)
    missing = [link for link in links if link.split("#")[0] and not (page.parent / link.split("#")[0]).exists()]
    assert missing == []


def test_a_bench_replaces_only_its_own_section(tmp_path):
    report = load_report()
    # Given a benchmarks page with two sections and prose around them
    page = tmp_path / "benchmarks.md"
    page.write_text(
        "# Benchmarks\n\nintro\n\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\n\nbetween\n\n"
        "<!-- bench:b -->\nold b | 1\n<!-- /bench:b -->\n\nend\n"
    )
    # When bench a writes its table
    table = report.Table("what", "target", "measured").row("warm invoke", "<= 15 ms", "p50 9.8 ms")
    report.write("a", [table], notes="a note", path=page, command="python bench/bench_a.py --n 3")
    # Then section a holds the table, the command, the date and the load average; the rest is unchanged
    text = page.read_text()
    a = text[text.index("<!-- bench:a -->") : text.index("<!-- /bench:a -->")]
    assert "old a" not in a
    assert "| what | target | measured |\n|---|---|---|\n| warm invoke | <= 15 ms | p50 9.8 ms |" in a
    assert "`python bench/bench_a.py --n 3` — measured " in a and " UTC on " in a and "load average " in a
    assert "regenerate with `make bench`" in a and "a note" in a
    assert text.startswith("# Benchmarks\n\nintro\n\n<!-- bench:a -->")
    assert text.endswith("<!-- /bench:a -->\n\nbetween\n\n<!-- bench:b -->\nold b | 1\n<!-- /bench:b -->\n\nend\n")


def test_a_second_run_replaces_the_first_and_a_new_bench_appends(tmp_path):
    report = load_report()
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    for value in ("1", "2"):
        report.write("a", [report.Table("x").row(value)], path=page, command="c")
    report.write("b", [report.Table("y").row("3")], path=page, command="c")
    text = page.read_text()
    assert text.count("<!-- bench:a -->") == 1 and "| 2 |" in text and "| 1 |" not in text
    assert text.index("<!-- /bench:a -->") < text.index("<!-- bench:b -->")


def test_cells_keep_the_table_whole_and_bad_rows_or_markers_are_refused(tmp_path):
    report = load_report()
    table = report.Table("a", "b").row("x | y", "two\nlines")
    assert table.markdown().splitlines()[-1] == "| x \\| y | two lines |"
    with pytest.raises(ValueError):
        table.row("one cell")
    with pytest.raises(ValueError):
        report.replace("<!-- /bench:a -->\n<!-- bench:a -->", "a", "new")


def test_a_report_prints_each_result_and_files_them(tmp_path, capsys):
    report = load_report()
    page = tmp_path / "benchmarks.md"
    run = report.Report("staging")
    run.result("idempotent re-run", "0.9 s", "<= 2 s")
    run.write(path=page)
    assert "idempotent re-run: 0.9 s   target <= 2 s" in capsys.readouterr().out
    assert "| idempotent re-run | <= 2 s | 0.9 s |" in page.read_text()


def commands_page() -> str:
    """docs/commands.md: every command's `--help`, from the parser itself (80 columns: the same anywhere)."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parts = [
        "# Every command and flag\n",
        "Generated from the argument parser (`scones/cli/parser.py`): `tests/unit/test_docs.py` fails when this page",
        "differs from it, and `.venv/bin/python tests/unit/test_docs.py` rewrites it. The guide is the",
        "[README](../README.md); each command's section there says what it is for.\n",
        "```text",
        parser.format_help().rstrip(),
        "```\n",
    ]
    for name, command in sub.choices.items():
        parts += [f"## scones {name}\n", "```text", command.format_help().rstrip(), "```\n"]
    return "\n".join(parts)


def test_the_commands_page_is_the_parsers_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    assert (ROOT / "docs" / "commands.md").read_text() == commands_page(), (
        "docs/commands.md is stale: run .venv/bin/python tests/unit/test_docs.py"
    )


if __name__ == "__main__":
    os.environ.update(COLUMNS="80", NO_COLOR="1")
    (ROOT / "docs" / "commands.md").write_text(commands_page())
    print(f"wrote {ROOT / 'docs' / 'commands.md'}")
