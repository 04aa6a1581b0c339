"""The traffic generator's pure parts: schedules, image choice, drift transforms, the summary's arithmetic."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import solid_png
from PIL import Image

from scones import load
from scones.core.errors import UsageError
from scones.monitoring.capture import image_features

ROOT = Path(__file__).resolve().parents[2]


def test_a_burst_sends_everything_at_once_and_a_stream_is_poisson():
    rng = np.random.default_rng(0)
    assert list(load.schedule("burst", 5, None, None, rng)) == [0, 0, 0, 0, 0]
    times = load.schedule("stream", None, 50.0, 20.0, rng)
    assert abs(len(times) - 1000) < 4 * np.sqrt(1000) and times.max() < 20.0
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.1) and gaps.std() == pytest.approx(1 / 50, rel=0.15)


@pytest.mark.parametrize(
    ("mode", "count", "rate", "duration"),
    [
        ("burst", 0, None, None),
        ("burst", load.MAX_COUNT + 1, None, None),
        ("stream", None, 0, 10),
        ("stream", None, 10, 0),
        ("stream", None, 1000, 3000),
    ],
)
def test_unbounded_loads_are_refused(mode, count, rate, duration):
    with pytest.raises(UsageError):
        load.schedule(mode, count, rate, duration, np.random.default_rng(0))


def test_classmix_draws_one_class_and_clean_draws_both():
    keys = [f"data/test/bicycle_s_{i:06d}.png" for i in range(5)] + [
        f"data/test/motorcycle_s_{i}.png" for i in range(5)
    ]
    rng = np.random.default_rng(0)
    assert {load.class_of(k) for k in load.choose(keys, 100, "classmix", rng)} == {"bicycle"}
    assert {load.class_of(k) for k in load.choose(keys, 100, None, rng)} == {"bicycle", "motorcycle"}


def test_dark_darkens_noise_adds_contrast_and_classmix_leaves_pixels_alone():
    rng = np.random.default_rng(0)
    grey = solid_png(150)
    b0, c0, *_ = image_features(grey, "image/png")
    b1, _, *_ = image_features(load.transform(grey, "dark", rng), "image/png")
    _, c2, *_ = image_features(load.transform(grey, "noise", rng), "image/png")
    assert b1 == pytest.approx(b0 * load.DARK_FACTOR, abs=0.01)
    assert c0 < 1e-6 and c2 > 0.05
    assert load.transform(grey, "classmix", rng) == grey and load.transform(grey, None, rng) == grey
    assert Image.open(io.BytesIO(load.transform(grey, "dark", rng))).size == (32, 32)


def test_every_request_is_counted_even_when_the_sender_breaks():
    def send(key, body):
        if key == "boom":
            raise RuntimeError("a bug in a sender")
        return load.Outcome(key != "bad", 0.01, 0.99 if key == "good" else 0.5, "" if key != "bad" else "ModelError")

    keys = ["good"] * 7 + ["bad"] * 2 + ["boom"]
    seen = []
    lock = threading.Lock()

    def on_result(i, outcome):
        with lock:
            seen.append(i)

    summary = load.run(
        send, keys, lambda k: b"", np.zeros(len(keys)), 3, load.Summary("burst", "endpoint", None), on_result
    )
    assert summary.sent == 10 == summary.succeeded + summary.failed
    assert (summary.succeeded, summary.failed_by_error) == (7, {"ModelError": 2, "RuntimeError": 1})
    assert sorted(seen) == list(range(10))
    assert summary.low_confidence_rate == pytest.approx(2 / 9, abs=1e-4)  # 0.5 < 0.93 for the two 'bad' answers
    assert set(summary.latency_ms) == {"p50", "p95", "p99"}


def test_local_load_goes_to_loopback_only(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.1.2.3:4566")
    with pytest.raises(UsageError, match="loopback"):
        load.check_loopback("local", "workflow")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://example.com:8080")
    load.check_loopback("local", "workflow")
    with pytest.raises(UsageError):
        load.check_loopback("local", "endpoint")
    load.check_loopback("aws", "endpoint")


def test_steady_traffic_counts_answers_errors_and_lost_requests_apart():
    # given a sender that answers from two variants, answers one error, gets no answer three times in a row (the
    # first try and both retries of one request), then once more (that request's retry is answered)
    unanswered = load.Outcome(False, 0.001, error="ConnectionClosedError", answered=False)
    script = iter(
        [
            load.Outcome(True, 0.001, 0.99, variant="AllTraffic"),
            load.Outcome(True, 0.001, 0.99, variant="Candidate"),
            load.Outcome(False, 0.001, error="ModelError"),
            *[unanswered] * 4,
        ]
    )
    done = threading.Event()
    bodies_seen = []

    def send(_key, body):
        bodies_seen.append(body)
        found = next(script, None)
        if found is None:
            done.set()
            return load.Outcome(True, 0.001, 0.99, variant="AllTraffic")
        return found

    # when it runs until the block ends
    with load.Steady(send, [b"a", b"b"], gap_s=0.001, retry=load.Retry(interval_s=0.001)) as traffic:
        assert done.wait(10)
    counts = traffic.counts()
    # then every request is counted once, in time order, and the bodies taken in turn; an unanswered request is
    # sent again, twice at most, and lost only when every retry is unanswered too
    assert counts["sent"] == len(traffic.answers) == len(bodies_seen) - 3 >= 5
    assert (counts["failed"], counts["lost"], counts["retried"]) == (1, 1, 2)
    assert counts["succeeded"] == counts["sent"] - 2
    assert counts["by_variant"]["Candidate"] == 1 and counts["by_variant"]["AllTraffic"] == counts["sent"] - 3
    assert bodies_seen[:8] == [b"a", b"b", b"a", b"b", b"b", b"b", b"a", b"a"]
    assert [t for t, _ in traffic.answers] == sorted(t for t, _ in traffic.answers)


def test_a_request_with_no_answer_is_retried_as_the_workflow_retries_its_classify_step():
    # given the workflow's own Retry of the endpoint call (the state machine that runs on every target)
    machine = json.loads((ROOT / "statemachine" / "classify_image.asl.json").read_text())
    retries = [r for state in machine["States"].values() for r in state.get("Retry", [])]
    (workflow,) = [r for r in retries if "EndpointUnavailableError" in r["ErrorEquals"]]
    # then load.Retry is that policy: as many retries, the same interval, backoff, cap and full jitter
    policy = load.Retry()
    assert workflow["JitterStrategy"] == "FULL"
    assert (policy.interval_s, policy.retries, policy.backoff_rate, policy.max_delay_s) == (
        workflow["IntervalSeconds"],
        workflow["MaxAttempts"],
        workflow["BackoffRate"],
        workflow["MaxDelaySeconds"],
    )


def test_a_retry_waits_a_full_jittered_backed_off_delay_and_gives_up_after_its_retries(monkeypatch):
    class Extremes:  # the jitter's two ends, in turn
        def __init__(self):
            self.calls = []

        def uniform(self, low, high):
            self.calls.append((low, high))
            return high

    slept = []
    monkeypatch.setattr(load.time, "sleep", slept.append)
    # given a request never answered
    tries = []

    def never():
        tries.append(1)
        return load.Outcome(False, 0.0, error="ConnectionClosedError", answered=False)

    rng = Extremes()
    outcome, retries = load.Retry(interval_s=1, retries=4, backoff_rate=2, max_delay_s=5).send(never, rng)
    # then it is tried once and retried 4 times, each wait drawn from 0 up to the interval doubled each time, capped
    assert (len(tries), retries, outcome.answered) == (5, 4, False)
    assert rng.calls == [(0.0, 1), (0.0, 2), (0.0, 4), (0.0, 5)] and slept == [1, 2, 4, 5]
    # and one answered at once is not retried (an error answer is an answer)
    answered = load.Outcome(False, 0.0, error="ModelError")
    assert load.Retry().send(lambda: answered, rng) == (answered, 0) and len(slept) == 4


def test_the_endpoint_sender_tells_an_error_answer_from_no_answer(monkeypatch):
    from botocore.exceptions import ClientError, EndpointConnectionError

    class Runtime:
        def __init__(self):
            self.next = []

        def invoke_endpoint(self, **_kw):
            raise self.next.pop(0)

    runtime = Runtime()
    monkeypatch.setattr(load.aws, "client", lambda *_a, **_kw: runtime)
    send = load.endpoint_sender("ep", 1)
    error = {"Error": {"Code": "ModelError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
    runtime.next = [ClientError(error, "InvokeEndpoint"), EndpointConnectionError(endpoint_url="http://127.0.0.1:1")]
    answered, lost = send("k", b""), send("k", b"")
    assert (answered.ok, answered.answered, answered.error) == (False, True, "ModelError")
    assert (lost.ok, lost.answered, lost.error) == (False, False, "EndpointConnectionError")
