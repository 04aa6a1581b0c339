"""LocalStack host mode's bad inputs, without LocalStack: no Python 3.13, a taken port, LocalStack exiting during
start (a stand-in interpreter that fails), and where the Lambdas reach the endpoint in each mode."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from scones import cli, localstack
from scones.core import settings


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path / "state"))
    monkeypatch.setenv(settings.LOCALSTACK_MODE, "host")
    monkeypatch.setenv(settings.LOCALSTACK_VENV, str(tmp_path / "venv"))
    monkeypatch.setenv(settings.LOCALSTACK_PORT, "0")  # any free port: a LocalStack or demo on 4566 changes nothing
    return tmp_path


def fake_venv(venv, script: str) -> None:
    """A .venv-localstack whose python is a shell script (the stamp says it is up to date)."""
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n" + script)
    python.chmod(0o755)
    (venv / ".scones-installed").write_text(localstack._stamp())


def test_no_python_313_is_one_line_naming_what_to_install(state, monkeypatch, capsys):
    monkeypatch.delenv(settings.LOCALSTACK_PYTHON, raising=False)
    monkeypatch.setattr(localstack.shutil, "which", lambda _name: None)
    monkeypatch.setattr(localstack, "_pyenv_candidates", lambda: [])
    assert cli.main(["up", "--stack", "localstack"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs Python >= 3.13" in err and "pyenv install 3.13" in err and settings.LOCALSTACK_PYTHON in err


def test_a_python_older_than_313_is_refused(state, monkeypatch, capsys):
    monkeypatch.setenv(settings.LOCALSTACK_PYTHON, sys.executable)  # the project's own 3.11/3.12
    if sys.version_info >= (3, 13):
        pytest.skip("this interpreter is new enough")
    assert cli.main(["up", "--stack", "localstack"]) == 2
    assert "is not a Python >= 3.13" in capsys.readouterr().err


def test_a_taken_port_is_named_before_anything_is_installed(state, monkeypatch, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv(settings.LOCALSTACK_PORT, str(port))
        assert cli.main(["up", "--stack", "localstack"]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is taken" in err and settings.LOCALSTACK_PORT in err
    assert not (state / "venv").exists()


def test_localstack_exiting_during_start_shows_the_last_lines_of_its_log(state, monkeypatch, capsys):
    fake_venv(
        state / "venv", "echo 'LocalStack version: 2026.3.0'\necho 'ValueError: No component plugins found'\nexit 1\n"
    )
    monkeypatch.setenv(settings.LOCALSTACK_PORT, "0")
    assert cli.main(["up", "--stack", "localstack"]) == 1
    err = capsys.readouterr().err
    assert "LocalStack exited with status 1" in err and "No component plugins found" in err
    assert not settings.localstack_record_path().exists()  # nothing recorded as running


def test_status_and_down_without_localstack(state, capsys):
    assert localstack.status().running is False
    assert localstack.down(log=print) is False
    assert "not running" in capsys.readouterr().out


def test_lambdas_reach_the_endpoint_on_loopback_in_host_mode_and_through_the_bridge_in_docker(state):
    path = settings.localstack_record_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"mode": "host", "url": "http://127.0.0.1:4566", "pid": None}))
    assert localstack.endpoint_host() is None  # the endpoint keeps 127.0.0.1
    assert localstack.url_for_lambdas("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    path.write_text(json.dumps({"mode": "docker", "url": "http://127.0.0.1:4566", "pid": None}))
    assert localstack.url_for_lambdas("http://172.17.0.1:8080") == "http://host.docker.internal:8080"


def test_deploy_to_localstack_that_does_not_answer_names_the_command(state, monkeypatch, capsys):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing answers there
    monkeypatch.setenv(settings.AWS_ENDPOINT_URL, f"http://127.0.0.1:{port}")
    monkeypatch.setenv(settings.TARGET, "local")  # deploy --target sets it; monkeypatch restores it
    assert cli.main(["deploy", "--target", "localstack"]) == 3
    err = capsys.readouterr().err
    assert f"LocalStack does not answer at http://127.0.0.1:{port}" in err and "scones up --stack localstack" in err
