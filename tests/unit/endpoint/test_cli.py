"""The entry point's refusals: exit status 2 and one `error:` line, before any server starts."""

from __future__ import annotations

import socket

import pytest

from scones.core import settings
from services.endpoint import cli


def refused(argv: list[str], capsys) -> str:
    """The error line of a run of the entry point that must exit with status 2."""
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_folder_without_a_model(tmp_path, capsys):
    assert "lacks model.onnx, labels.json, config.json" in refused(["--model", str(tmp_path)], capsys)


def test_workers_out_of_range(tiny_model, capsys):
    err = refused(["--model", str(tiny_model), "--workers", "65", "--no-capture"], capsys)
    assert "--workers must be in 0..64" in err


def test_a_bad_setting(tiny_model, capsys, monkeypatch):
    monkeypatch.setenv(settings.MAX_BATCH_SIZE, "many")
    assert settings.MAX_BATCH_SIZE in refused(["--model", str(tiny_model), "--workers", "1"], capsys)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use(tiny_model, capsys, workers):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        argv = ["--model", str(tiny_model), "--port", str(port), "--workers", workers, "--no-capture"]
        assert f"cannot listen on 127.0.0.1:{port}" in refused(argv, capsys)


def test_a_worker_death_is_put_in_the_scones_namespace_and_a_failed_put_is_one_line(monkeypatch, capsys):
    # given an uploader that records what it is given
    sent = []
    monkeypatch.setattr(cli, "cloudwatch_put", lambda **config: lambda data, namespace: sent.append((namespace, data)))
    # when the supervisor reports a death
    cli.worker_deaths("ep", ["AllTraffic", "Candidate"])(1, 4242, -9)
    # then WorkerDeaths is put once per variant, in the namespace the rollout's alarm reads
    assert [(ns, d["MetricName"]) for ns, data in sent for d in data] == [("scones", "WorkerDeaths")] * 2

    # and a cloud that does not answer costs one line, never the supervisor
    def unreachable(data, namespace):
        raise OSError("connection refused")

    monkeypatch.setattr(cli, "cloudwatch_put", lambda **config: unreachable)
    cli.worker_deaths("ep", ["AllTraffic"])(1, 4242, -9)
    out = capsys.readouterr().out
    assert out == "worker 1 (pid 4242, status -9): WorkerDeaths not put: connection refused\n"
