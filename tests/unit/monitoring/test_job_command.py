"""`python -m scones.monitoring`, the processing job's command: its flags, its dated --out, its one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime

from scones.core import settings
from scones.monitoring import __main__ as job
from scones.monitoring import monitor


def test_out_takes_the_hour_the_run_started(monkeypatch):
    seen = {}
    monkeypatch.setattr(monitor, "run", lambda *a, **k: seen.update(out=a[2], alert=k["alert_on_drift"]) or None)
    monkeypatch.setattr(job.targets, "activate", lambda *a: None)
    when = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    assert job.main(["--out", "/opt/ml/processing/output/%Y/%m/%d/%H", "--alert"], now=when) == 0
    assert seen == {"out": "/opt/ml/processing/output/2026/12/02/07", "alert": True}


def test_a_failure_is_one_line_and_its_exit_code(monkeypatch, capsys):
    monkeypatch.setenv(settings.TARGET, "mars")
    assert job.main(["--out", "/tmp/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scones.monitoring: error: SCONES_TARGET='mars'"), err
