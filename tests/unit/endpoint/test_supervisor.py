"""The supervisor's worker processes (stop, restart) and the port they share, with stand-in workers."""

from __future__ import annotations

import os
import signal
import time

import pytest

from services.endpoint.supervisor import (
    CANNOT_LOAD,
    WORKER_DEATHS,
    claim_port,
    reuseport_socket,
    supervise,
    worker_death_data,
)


def test_supervisor_stops_every_worker_when_one_cannot_load():
    # given a worker that cannot load its model and one that would serve until told to stop
    def worker(slot: int) -> None:
        if slot == 0:
            raise SystemExit(CANNOT_LOAD)
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        time.sleep(30)
        os._exit(9)  # never reached: the supervisor stops it

    pid = os.fork()
    if pid == 0:  # the supervisor runs in a child so that its signal handlers stay out of pytest
        os._exit(supervise(2, worker, log=lambda _m: None))
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
    # then the supervisor exits with the load failure, promptly, instead of restarting the worker
    assert os.waitstatus_to_exitcode(status) == CANNOT_LOAD
    assert time.monotonic() - started < 10


def test_supervisor_restarts_a_worker_that_dies(tmp_path):
    marks = tmp_path / "starts"
    marks.mkdir()

    def worker(slot: int) -> None:
        (marks / f"{slot}-{os.getpid()}").touch()
        if slot == 1 and len(list(marks.glob("1-*"))) == 1:
            os._exit(1)  # the first worker 1 dies on its own
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        time.sleep(30)

    pid = os.fork()
    if pid == 0:
        os._exit(supervise(2, worker, log=lambda _m: None))
    deadline = time.monotonic() + 10
    while len(list(marks.glob("1-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert len(list(marks.glob("1-*"))) == 2 and len(list(marks.glob("0-*"))) == 1
    assert os.waitstatus_to_exitcode(status) == 1  # the worst exit status seen


def test_several_workers_never_join_another_servers_port():
    # given another server of this user listening with SO_REUSEPORT on a port
    other = reuseport_socket("127.0.0.1", 0)
    other.listen()
    port = other.getsockname()[1]
    try:
        # then a new endpoint cannot claim it, with one worker or several
        for shared in (False, True):
            with pytest.raises(OSError):
                claim_port("127.0.0.1", port, shared)
    finally:
        other.close()
    # and once it is free, several workers share it
    first = claim_port("127.0.0.1", port, shared=True)
    second = reuseport_socket("127.0.0.1", port)
    first.close()
    second.close()


def test_workers_die_with_a_supervisor_killed_by_sigkill(tmp_path):
    from scones.core.service import alive

    # given a supervisor with two workers that would serve for a minute
    def worker(slot: int) -> None:
        (tmp_path / str(os.getpid())).touch()
        time.sleep(60)

    pid = os.fork()
    if pid == 0:
        os._exit(supervise(2, worker, log=lambda _m: None))
    deadline = time.monotonic() + 10
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p.name) for p in tmp_path.iterdir()]
    assert len(workers) == 2 and all(alive(w) for w in workers)
    # when the supervisor is killed outright
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    # then its workers get SIGTERM and exit instead of serving on as orphans
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers)


def test_the_supervisor_reports_each_reaped_worker():
    seen = []

    def worker(slot: int) -> None:
        os._exit(CANNOT_LOAD if slot == 0 else 0)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        supervise(
            2, worker, log=lambda _m: None, on_exit=lambda slot, p, code: os.write(write, b"%d:%d," % (slot, code))
        )
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    seen = sorted(x for x in os.read(read, 100).decode().split(",") if x)
    assert [x.split(":")[0] for x in seen] == ["0", "1"] and seen[0] == "0:2"  # 1: 0, or -15 if stopped first


def test_the_supervisor_reports_a_worker_killed_but_not_the_workers_it_stops(tmp_path):
    # given two workers that serve until told to stop, and a supervisor that notes every death it did not ask for
    starts, deaths = tmp_path / "starts", tmp_path / "deaths"
    starts.mkdir()
    deaths.mkdir()

    def worker(slot: int) -> None:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        (starts / f"{slot}-{os.getpid()}").touch()
        time.sleep(30)

    def on_death(slot: int, pid: int, code: int) -> None:
        (deaths / f"{slot}:{pid}:{code}").touch()

    pid = os.fork()
    if pid == 0:
        os._exit(supervise(2, worker, log=lambda _m: None, on_death=on_death))
    deadline = time.monotonic() + 10
    while len(list(starts.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = int(next(starts.glob("1-*")).name.split("-")[1])
    # when worker 1 is killed outright, restarted, and then the supervisor is told to stop
    os.kill(killed, signal.SIGKILL)
    while len(list(starts.glob("1-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
    # then exactly one death was reported, the killed worker's (SIGKILL: -9), and none of those it stopped
    assert len(list(starts.glob("1-*"))) == 2
    assert [p.name for p in deaths.iterdir()] == [f"1:{killed}:-9"]


def test_a_worker_death_is_put_for_every_variant_the_server_serves():
    data = worker_death_data("ep", ["AllTraffic", "Candidate"], 1_800_000_000.5)
    assert [d["MetricName"] for d in data] == [WORKER_DEATHS] * 2
    assert [{x["Name"]: x["Value"] for x in d["Dimensions"]} for d in data] == [
        {"EndpointName": "ep", "VariantName": "AllTraffic"},
        {"EndpointName": "ep", "VariantName": "Candidate"},
    ]
    assert {(d["Value"], d["Unit"], d["Timestamp"].timestamp()) for d in data} == {(1.0, "Count", 1_800_000_000.5)}
