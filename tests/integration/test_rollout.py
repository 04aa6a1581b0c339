"""Rollouts on a live local endpoint under load: a broken candidate is rolled back by its 5xx alarm, an unsure one
by its low-confidence alarm, one whose workers are killed by its worker-deaths alarm, a good one promoted, a missing
alarm refused before any traffic moves. Tiny periods (1-s metrics and alarms, canary:50:3) and quality windows of 30
answers."""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from helpers import environ, make_brightness_model, make_failing_model, solid_png

from scones import endpoint, rollout
from scones.core import aws, settings
from scones.core.errors import NotReadyError
from scones.load import Retry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def serving(tmp_path, unique, workers: int):
    """A running endpoint (`workers` workers, 1-s metrics) serving the brightness model; stopped at the end."""
    bucket = f"capture-{unique}"
    aws.client("s3").create_bucket(Bucket=bucket)
    env = {
        settings.ENDPOINT_METRICS_S: "1",
        settings.ROLLOUT_PERIOD_S: "1",
        settings.CAPTURE_BUCKET: bucket,
        settings.ENDPOINT_WORKERS: str(workers),
        settings.ROLLOUT_WINDOW: "30",
    }
    name = f"ro-{unique}"
    with environ(env):
        model = make_brightness_model(tmp_path / "production")
        found = endpoint.start(str(model), name, port=0, log=lambda _m: None, workers=workers)
        yield name, found.url, tmp_path
        endpoint.stop(name, log=lambda _m: None)


@pytest.fixture
def live(local_cloud, tmp_path, unique):
    """One worker: the endpoint's server is a single process."""
    yield from serving(tmp_path, unique, 1)


@pytest.fixture
def live_workers(local_cloud, tmp_path, unique):
    """Two worker processes under a supervisor that restarts one that dies."""
    yield from serving(tmp_path, unique, 2)


class Load:
    """Bright images sent one after another until stopped: every answer's (time, status) kept, and the variant
    that answered each in `variants`. A request with no answer (status -1: reset, or refused) is sent again as the
    workflow would (Retry: the classify step's Retry, jittered); -1 in `answers` is a request lost even so.
    `refused` keeps when a connection was refused: the port had no listener at all, which no rollout may cause."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name, self.answers, self.stopping, self.resets = url, name, [], False, 0
        self.variants: list[tuple[float, str]] = []
        self.refused: list[float] = []
        self.rng = random.Random()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def send(self, body: bytes) -> int:
        request = urllib.request.Request(
            f"{self.url}/endpoints/{self.name}/invocations", data=body, headers={"Content-Type": "image/png"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.variants.append((time.monotonic(), response.headers.get("X-Amzn-Invoked-Production-Variant")))
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError as exc:
            if isinstance(getattr(exc, "reason", exc), ConnectionRefusedError):
                self.refused.append(time.monotonic())
            return -1  # refused or reset

    def run(self) -> None:
        body = solid_png(230)
        while not self.stopping:
            status, retries = Retry().send(lambda: self.send(body), self.rng, answered=lambda s: s != -1)
            self.resets += retries > 0
            self.answers.append((time.monotonic(), status))
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping = True
        self.thread.join(15)


def test_a_broken_candidate_is_rolled_back_by_its_5xx_alarm_under_load(live):
    name, url, tmp = live
    broken = make_failing_model(tmp / "broken")  # answers the probe image, fails on bright images
    alarms = rollout.ensure_alarms(rollout.default_alarms(name)[:1])
    lines: list[str] = []
    with Load(url, name) as load:
        with pytest.raises(rollout.RolledBackError) as rolled_back:
            rollout.run(name, str(broken), rollout.parse("canary:50:20"), alarms, log=lines.append)
        done = time.monotonic()
        time.sleep(1.5)
    # then the rollback names the alarm, and the endpoint serves the old model alone
    assert f"alarm {alarms[0]}" in str(rolled_back.value) and "Invocation5XXErrors" in str(rolled_back.value)
    assert any(line.startswith("rollback: 100% of endpoint") for line in lines)
    assert [v.name for v in endpoint.variants(name)] == ["AllTraffic"]
    assert endpoint.variants(name)[0].model_dir.name == "production"
    # and it came back long before the canary's 20 s were up: some requests failed on the candidate, none after
    statuses = [status for _, status in load.answers]
    assert 500 in statuses and -1 not in statuses
    assert [s for t, s in load.answers if t > done] and all(s == 200 for t, s in load.answers if t > done)


def test_an_unsure_candidate_is_rolled_back_by_its_low_confidence_alarm_under_load(live):
    name, url, tmp = live
    # given a candidate that answers every image, 200, but never surer than ~0.55 (the workflow's threshold: 0.93)
    unsure = make_brightness_model(tmp / "unsure", sharpness=0.5)
    made = {a["MetricName"]: a for a in rollout.default_alarms(name)}
    alarms = rollout.ensure_alarms([made["LowConfidenceRise"]])
    lines: list[str] = []
    with Load(url, name) as load:
        with pytest.raises(rollout.RolledBackError) as rolled_back:
            rollout.run(name, str(unsure), rollout.parse("canary:50:60"), alarms, log=lines.append)
        done = time.monotonic()
        time.sleep(1.5)
    # then the rollback names the alarm and its metric, and the endpoint serves the old model alone
    assert f"alarm {alarms[0]}" in str(rolled_back.value) and "LowConfidenceRise" in str(rolled_back.value)
    assert [(v.name, v.model_dir.name) for v in endpoint.variants(name)] == [("AllTraffic", "production")]
    # and no client request failed, before or after; the candidate answered some, none after the rollback
    assert {status for _, status in load.answers} == {200}
    assert "Candidate" in {v for _, v in load.variants}
    after = [v for t, v in load.variants if t > done]
    assert after and set(after) == {"AllTraffic"}
    # and the windowed metrics were put per variant: production's rate beside the candidate's
    cloudwatch = aws.client("cloudwatch")
    mine = [{"Name": "EndpointName", "Value": name}]
    listed = cloudwatch.list_metrics(Namespace="scones", MetricName="LowConfidenceRate", Dimensions=mine)["Metrics"]
    variants = {d["Value"] for m in listed for d in m["Dimensions"] if d["Name"] == "VariantName"}
    assert {"AllTraffic", "Candidate"} <= variants


def test_a_good_candidate_is_promoted_with_every_request_answered(live):
    name, url, tmp = live
    good = shutil.copytree(tmp / "production", tmp / "good")  # the same model, from another folder
    alarms = rollout.ensure_alarms(rollout.default_alarms(name)[:1])
    lines: list[str] = []
    with Load(url, name) as load:
        result = rollout.run(name, str(good), rollout.parse("canary:50:3"), alarms, log=lines.append)
        time.sleep(0.5)
    assert result == f"endpoint {name} serves {good}"
    assert [(v.name, v.model_dir.name) for v in endpoint.variants(name)] == [("AllTraffic", "good")]
    assert {status for _, status in load.answers} == {200}
    stages = [line for line in lines if line.startswith("[stage ")]
    assert stages == [
        f"[stage 1/2] 50% of endpoint {name} on the candidate",
        f"[stage 2/2] 100% of endpoint {name} on the candidate",
    ]
    # and `scones rollback` afterwards goes back to the model it replaced
    rollout.rollback(name, "by hand", log=lines.append)
    assert endpoint.variants(name)[0].model_dir.name == "production"


def kill_workers_one_by_one(name: str, killed: list[int]) -> None:
    """SIGKILL each worker process of the endpoint's server, the next once the supervisor's replacement listens
    (or the server has gone, replaced by a rollback): never every worker at once, which would leave the port with
    no listener and refuse connections. First wait for the next whole second, so that the first death falls in a
    period of the rollout's own (periods that began before it are not judged, alarms.since)."""
    time.sleep(math.floor(time.time()) + 1.05 - time.time())
    record = endpoint.record(name)
    supervisor = psutil.Process(record["pid"])
    workers = supervisor.children()
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
        deadline = time.monotonic() + 30
        while supervisor.is_running() and listening(supervisor, record["port"], killed) < len(workers):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


def listening(supervisor: psutil.Process, port: int, killed: list[int]) -> int:
    """How many of the supervisor's live workers listen on `port`."""
    count = 0
    with contextlib.suppress(psutil.Error):
        for child in supervisor.children():
            with contextlib.suppress(psutil.Error):
                if child.pid not in killed:
                    found = child.net_connections(kind="tcp")
                    count += sum(1 for c in found if c.status == psutil.CONN_LISTEN and c.laddr.port == port)
    return count


def test_killing_the_candidates_workers_rolls_back_with_no_request_failed_or_lost(live_workers):
    name, url, tmp = live_workers
    # given a candidate that answers well (the same model): only its workers' deaths can roll it back
    candidate = shutil.copytree(tmp / "production", tmp / "candidate")
    made = {a["MetricName"]: a for a in rollout.default_alarms(name)}
    alarms = rollout.ensure_alarms([made["WorkerDeaths"]])
    lines: list[str] = []
    killed: list[int] = []
    killer = threading.Thread(target=kill_workers_one_by_one, args=(name, killed), daemon=True)

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("[stage 1/"):  # every worker serves both variants: these are the candidate's workers
            killer.start()

    with Load(url, name) as load:
        # when the workers are SIGKILLed during the canary's first stage
        with pytest.raises(rollout.RolledBackError) as rolled_back:
            rollout.run(name, str(candidate), rollout.parse("canary:50:30"), alarms, log=log)
        done = time.monotonic()
        killer.join(30)
        time.sleep(1.5)
    # then the rollback names the alarm and its metric, and the endpoint serves the old model alone
    assert len(killed) >= 1, lines
    assert f"alarm {alarms[0]}" in str(rolled_back.value) and "WorkerDeaths" in str(rolled_back.value)
    assert "at 50%" in str(rolled_back.value)
    assert [(v.name, v.model_dir.name) for v in endpoint.variants(name)] == [("AllTraffic", "production")]
    # and every client request was answered 200 (a reset retried as the workflow retries it): none failed, none
    # lost, and no connection was refused (the port always had a listener)
    assert load.answers and {status for _, status in load.answers} == {200}
    assert not load.refused
    after = [v for t, v in load.variants if t > done]
    assert after and set(after) == {"AllTraffic"}


def test_a_rollout_whose_alarm_does_not_exist_moves_no_traffic(live):
    name, _url, tmp = live
    with pytest.raises(NotReadyError, match="alarm no-such-alarm does not exist: no traffic was moved"):
        rollout.run(name, str(tmp / "production"), rollout.parse("canary:10:3"), ["no-such-alarm"], log=lambda _m: None)
    assert [v.name for v in endpoint.variants(name)] == ["AllTraffic"]
    assert "variants_file" not in endpoint.record(name)


def test_an_interrupted_rollout_is_rolled_back_by_the_next_one(live):
    name, _url, tmp = live
    # given a rollout killed at 50% (its state left in the endpoint's record, its owner gone)
    production = endpoint.variants(name)[0]
    candidate = shutil.copytree(tmp / "production", tmp / "half")
    endpoint.serve_variants(
        name,
        [production, rollout.Variant("Candidate", candidate, 0.0, 0.0, str(candidate))],
        log=lambda _m: None,
    )
    endpoint.set_weights(name, {"AllTraffic": 50.0, "Candidate": 50.0})
    endpoint.note_rollout(name, {"state": "shifting", "percent": 50, "pid": 2**22 + 1, "previous": {}})
    # when the next command recovers
    lines: list[str] = []
    assert rollout.recover(name, log=lines.append)
    # then all traffic is back on the old model, the candidate unloaded
    assert [(v.name, v.model_dir) for v in endpoint.variants(name)] == [("AllTraffic", production.model_dir)]
    assert any("was interrupted at 50%" in line for line in lines)
    assert os.environ.get(settings.ENDPOINT_METRICS_S) == "1"
