"""`scones load`: a bounded traffic generator over the staged test images, with optional injected drift.

  --mode burst --count N --concurrency C      N requests, C at a time
  --mode stream --rate R --duration S         Poisson arrivals at R per second for S seconds
  --via workflow (default)                    start_execution of the single-image state machine, wait for it;
                                              on an Express deploy, StartSyncExecution (Express keeps no execution
                                              to describe: the answer is the outcome)
  --via endpoint                              invoke_endpoint directly
  --drift dark | noise | classmix             darker images | Gaussian pixel noise | one class only
Every request ends as succeeded or failed (sent = succeeded + failed, always); the summary gives throughput,
latency percentiles and the share of answers below the confidence threshold. On local targets every address
must be loopback.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TypeVar
from urllib.parse import urlparse

import numpy as np

from scones import stacks, workflow
from scones.core import aws, service, settings, target
from scones.core.errors import UsageError
from scones.data import staged
from scones.data.images import open_image
from scones.stacks import filter_threshold

DRIFTS = ("dark", "noise", "classmix")
VIA = ("workflow", "endpoint")
MAX_COUNT = 100_000
MAX_DURATION_S = 3600.0
MAX_RATE = 2000.0
MAX_CONCURRENCY = 256
DARK_FACTOR = 0.35  # dark: every pixel times this
NOISE_SD = 40.0  # noise: Gaussian noise with this standard deviation, on 0..255
LOOPBACK = ("127.0.0.1", "localhost", "::1")
T = TypeVar("T")


@dataclass
class Outcome:
    ok: bool
    latency_s: float
    confidence: float | None = None
    error: str = ""
    variant: str = ""  # the variant that answered (the endpoint's InvokedProductionVariant), when it says
    answered: bool = True  # False: no answer came back at all (refused, reset, timed out): a request lost


@dataclass
class Summary:
    mode: str
    via: str
    drift: str | None
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    failed_by_error: dict = field(default_factory=dict)
    seconds: float = 0.0
    throughput_per_s: float = 0.0
    latency_ms: dict = field(default_factory=dict)  # p50, p95, p99 of completed requests
    low_confidence_rate: float | None = None  # among answers with a confidence
    threshold: float = settings.DEFAULT_THRESHOLD
    started_at: str = ""
    capture_flushed: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        lat = self.latency_ms
        low = "-" if self.low_confidence_rate is None else f"{self.low_confidence_rate:.1%}"
        lines = [
            f"sent {self.sent}: succeeded {self.succeeded}, failed {self.failed}"
            + (f" ({', '.join(f'{k} {v}' for k, v in sorted(self.failed_by_error.items()))})" if self.failed else ""),
            f"{self.seconds:.1f} s, {self.throughput_per_s:.1f} requests/s; latency p50 {lat.get('p50', 0):.0f} ms, "
            f"p95 {lat.get('p95', 0):.0f} ms, p99 {lat.get('p99', 0):.0f} ms",
            f"below the threshold {self.threshold:g}: {low}",
        ]
        return "\n".join(lines)


def summarise(outcomes: list[Outcome], base: Summary, seconds: float) -> Summary:
    base.sent = len(outcomes)
    base.succeeded = sum(o.ok for o in outcomes)
    base.failed = base.sent - base.succeeded
    base.failed_by_error = dict(Counter(o.error or "unknown" for o in outcomes if not o.ok))
    base.seconds = round(seconds, 3)
    base.throughput_per_s = round(base.sent / seconds, 2) if seconds > 0 else 0.0
    latencies = np.array([o.latency_s for o in outcomes]) * 1000
    if len(latencies):
        base.latency_ms = {f"p{q}": round(float(np.percentile(latencies, q)), 1) for q in (50, 95, 99)}
    confident = [o.confidence for o in outcomes if o.confidence is not None]
    if confident:
        base.low_confidence_rate = round(float(np.mean(np.array(confident) < base.threshold)), 4)
    return base


# --- images and drift ---------------------------------------------------------------------------------


def class_of(key: str) -> str:
    """CIFAR-style names carry their class: bicycle_s_000513.png."""
    return key.rsplit("/", 1)[-1].split("_s_")[0]


def transform(png: bytes, kind: str | None, rng: np.random.Generator) -> bytes:
    """The image with the drift applied (dark, noise), as PNG; unchanged for None and classmix."""
    if kind not in ("dark", "noise"):
        return png
    from PIL import Image

    with open_image(png) as image:
        pixels = np.asarray(image.convert("RGB"), np.float32)
    pixels = pixels * DARK_FACTOR if kind == "dark" else pixels + rng.normal(0, NOISE_SD, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def choose(keys: list[str], count: int, kind: str | None, rng: np.random.Generator) -> list[str]:
    """`count` keys drawn with replacement; classmix draws from one class only (the first by name)."""
    pool = sorted(keys)
    if kind == "classmix":
        first = min(class_of(k) for k in pool)
        pool = [k for k in pool if class_of(k) == first]
    return [pool[i] for i in rng.integers(0, len(pool), count)]


# --- senders ------------------------------------------------------------------------------------------


def endpoint_sender(name: str, concurrency: int) -> Callable[[str, bytes], Outcome]:
    runtime = aws.client(
        "sagemaker-runtime", max_attempts=1, max_pool_connections=concurrency, connect_timeout=5, read_timeout=60
    )

    def send(key: str, body: bytes) -> Outcome:
        started = time.perf_counter()
        try:
            response = runtime.invoke_endpoint(
                EndpointName=name, ContentType="image/png", Accept="application/json", Body=body
            )
            probabilities = json.loads(response["Body"].read())
            variant = response.get("InvokedProductionVariant", "")
            return Outcome(True, time.perf_counter() - started, float(max(probabilities)), variant=variant)
        except Exception as exc:
            answered = bool(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode"))
            return Outcome(False, time.perf_counter() - started, error=_error_name(exc), answered=answered)

    return send


def workflow_sender(
    machine_arn: str, bucket: str, concurrency: int, express: bool = False
) -> Callable[[str, bytes], Outcome]:
    """One execution of the single-image machine per request. Standard: start it, then describe it until it ends.
    Express (`express`): AWS describes no Express execution, so one StartSyncExecution, whose answer is the outcome."""
    sfn = aws.client("stepfunctions", max_pool_connections=concurrency)

    def send(key: str, _body: bytes) -> Outcome:
        started = time.perf_counter()
        request = {
            "stateMachineArn": machine_arn,
            "name": f"load-{uuid.uuid4().hex[:16]}",
            "input": json.dumps({"s3_bucket": bucket, "s3_key": key}),
        }
        try:
            if express:
                row = workflow.row_for_sync(sfn.start_sync_execution(**request), key)
                elapsed = time.perf_counter() - started
            else:
                described = workflow.wait(sfn, sfn.start_execution(**request)["executionArn"], timeout_s=120)
                elapsed = time.perf_counter() - started
                row = workflow.row_for_execution(sfn, described, key)
            return Outcome(row.status == "SUCCEEDED", elapsed, row.confidence, row.error or row.status)
        except Exception as exc:
            return Outcome(False, time.perf_counter() - started, error=_error_name(exc))

    return send


def _error_name(exc: Exception) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return code or type(exc).__name__


@dataclass(frozen=True)
class Retry:
    """How an unanswered request is sent again: as the workflow retries its classify step on EndpointUnavailableError
    (statemachine/classify_image.asl.json: IntervalSeconds 1, MaxAttempts 2, BackoffRate 2, MaxDelaySeconds 10,
    JitterStrategy FULL; tests/unit/test_load.py checks the two agree), so that a request lost here is one the
    workflow would lose too. The wait matters: a SIGKILLed worker's accepted connection can be reset a moment before
    its listener leaves the port, and a retry sent at once can land in that listener and be reset too
    (docs/security.md, "A worker killed mid-request")."""

    interval_s: float = 1.0
    retries: int = 2  # after the first try
    backoff_rate: float = 2.0
    max_delay_s: float = 10.0

    def delay_s(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (1, 2, ...): full jitter, from 0 up to the backed-off interval."""
        return rng.uniform(0.0, min(self.interval_s * self.backoff_rate ** (retry - 1), self.max_delay_s))

    def send(
        self, once: Callable[[], T], rng: random.Random, answered: Callable[[T], bool] = lambda o: o.answered
    ) -> tuple[T, int]:
        """`once()` until `answered` by its outcome or the retries are spent: (the last outcome, the retries taken)."""
        outcome, retry = once(), 0
        while not answered(outcome) and retry < self.retries:
            retry += 1
            time.sleep(self.delay_s(retry, rng))
            outcome = once()
        return outcome, retry


class Steady:
    """Requests one after another, `gap_s` apart, until the block ends; each outcome kept with the time it ended.
    The little traffic the demo and bench/bench_rollout.py send through a rollout."""

    def __init__(
        self, send: Callable[[str, bytes], Outcome], bodies: list[bytes], gap_s: float = 0.05, retry: Retry = Retry()
    ) -> None:
        self.send, self.bodies, self.gap_s, self.retry = send, bodies, gap_s, retry
        self.answers: list[tuple[float, Outcome]] = []  # (time.monotonic() when it ended, outcome)
        self.retried = 0  # requests sent again after no answer (each counted once, however many retries it took)
        self._rng = random.Random()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            # no answer (a connection reset as a worker set hands the port over, or as a worker dies): sent again as
            # the workflow would (Retry); lost only when every retry goes unanswered too
            outcome, retries = self.retry.send(lambda i=i: self._one(i), self._rng)
            self.retried += retries > 0
            self.answers.append((time.monotonic(), outcome))
            i += 1
            self._stop.wait(self.gap_s)

    def _one(self, i: int) -> Outcome:
        try:
            return self.send(str(i), self.bodies[i % len(self.bodies)])
        except Exception as exc:  # a sender never raises; this keeps the count true if one does
            return Outcome(False, 0.0, error=type(exc).__name__, answered=False)

    def __enter__(self) -> Steady:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def counts(self) -> dict:
        """sent, succeeded, failed (answered with an error), lost (no answer), and the answers by variant."""
        outcomes = [o for _, o in self.answers]
        return {
            "sent": len(outcomes),
            "succeeded": sum(o.ok for o in outcomes),
            "failed": sum(not o.ok and o.answered for o in outcomes),
            "lost": sum(not o.answered for o in outcomes),
            "retried": self.retried,
            "by_variant": dict(Counter(o.variant or "?" for o in outcomes if o.ok)),
        }


def staged_bodies(bucket: str, prefix: str, count: int, seed: int = 0) -> list[bytes]:
    """`count` staged test images (drawn with `choose`), as `scones load` sends them."""
    keys = choose(staged.test_images(bucket, prefix.strip("/")), count, None, np.random.default_rng(seed))
    s3 = aws.client("s3")
    return [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]


def check_loopback(target: str, via: str) -> None:
    """Local targets: every address the load goes to must be on this machine."""
    import os

    if target == "aws":
        return
    names = [settings.AWS_ENDPOINT_URL] + ([settings.SAGEMAKER_RUNTIME_URL] if via == "endpoint" else [])
    for name in names:
        url = os.environ.get(name, "")
        if url and urlparse(url).hostname not in LOOPBACK:
            raise UsageError(f"{name}={url} is not a loopback address: local load stays on this machine")


# --- the run ------------------------------------------------------------------------------------------


def schedule(mode: str, count: int | None, rate: float | None, duration_s: float | None, rng) -> np.ndarray:
    """Send times in seconds from the start: all zero for a burst; Poisson arrivals for a stream."""
    if mode == "burst":
        if not count or not 1 <= count <= MAX_COUNT:
            raise UsageError(f"--count must be in 1..{MAX_COUNT}")
        return np.zeros(count)
    if not rate or not 0 < rate <= MAX_RATE:
        raise UsageError(f"--rate must be in (0, {MAX_RATE:g}]")
    if not duration_s or not 0 < duration_s <= MAX_DURATION_S:
        raise UsageError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds")
    expected = rate * duration_s
    if expected > MAX_COUNT:
        raise UsageError(f"--rate × --duration = {expected:.0f} requests, more than {MAX_COUNT}")
    gaps = rng.exponential(1 / rate, int(expected + 10 * np.sqrt(expected) + 10))
    times = np.cumsum(gaps)
    return times[times < duration_s]


def run(
    send: Callable[[str, bytes], Outcome],
    keys: list[str],
    images: Callable[[str], bytes],
    times: np.ndarray,
    concurrency: int,
    summary: Summary,
    on_result: Callable[[int, Outcome], None] | None = None,
    progress=None,
) -> Summary:
    """Send keys[i] at times[i] (seconds from now), at most `concurrency` in flight; every request is counted."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be in 1..{MAX_CONCURRENCY}")
    outcomes: list[Outcome | None] = [None] * len(keys)
    lock = threading.Lock()
    done = 0
    slots = threading.BoundedSemaphore(concurrency)
    if progress is not None:
        progress.start(len(keys))
    summary.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()

    def one(i: int) -> None:
        nonlocal done
        try:
            outcome = send(keys[i], images(keys[i]))
        except Exception as exc:  # a sender never raises; this keeps the count true if one does
            outcome = Outcome(False, 0.0, error=type(exc).__name__)
        finally:
            slots.release()
        outcomes[i] = outcome
        with lock:
            done += 1
            if progress is not None:
                progress.update(done)
        if on_result is not None:
            on_result(i, outcome)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for i, at in enumerate(times):
            wait = t0 + at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            slots.acquire()  # a stream that outruns the target queues here rather than piling up threads
            pool.submit(one, i)
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress.finish()
    final = [o if o is not None else Outcome(False, 0.0, error="lost") for o in outcomes]
    return summarise(final, summary, seconds)


def wait_for_capture(endpoint_name: str, timeout_s: float = 20.0) -> bool | None:
    """A local endpoint uploads its capture buffer every few seconds: wait until all of it is in S3."""
    record = service.read_record(settings.endpoint_record_path(endpoint_name))
    if not record:
        return None  # not a local endpoint (AWS writes its capture on its own schedule)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code, stats = service.get_json(record["url"] + "/_scones/stats")
        if code != 200 or not stats:
            return None
        if stats.get("capture_written", 0) >= stats.get("captured", 0) and not stats.get("capture_pending"):
            return True
        time.sleep(0.25)
    return False


def generate(
    mode: str,
    via: str = "workflow",
    count: int | None = None,
    concurrency: int = 8,
    rate: float | None = None,
    duration_s: float | None = None,
    drift: str | None = None,
    seed: int = 0,
    bucket: str | None = None,
    prefix: str | None = None,
    threshold: float | None = None,
    progress=None,
    on_result=None,
) -> Summary:
    """The whole of `scones load`: pick images, apply the drift, send, wait for the capture, summarise."""
    if via not in VIA:
        raise UsageError(f"--via must be one of {', '.join(VIA)}")
    if drift is not None and drift not in DRIFTS:
        raise UsageError(f"--drift must be one of {', '.join(DRIFTS)}")
    rng = np.random.default_rng(seed)
    times = schedule(mode, count, rate, duration_s, rng)
    check_loopback(target.current().name, via)
    bucket, prefix = bucket or settings.bucket(), (prefix or settings.prefix()).strip("/")
    threshold = filter_threshold(threshold)
    chosen = choose(staged.test_images(bucket, prefix), len(times), drift, rng)
    s3 = aws.client("s3")
    bodies: dict[str, bytes] = {}
    for key in sorted(set(chosen)):  # each distinct image fetched (and drifted) once
        bodies[key] = transform(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), drift, rng)
    name = settings.endpoint_name()
    if via == "endpoint":
        send = endpoint_sender(name, concurrency)
    else:
        if drift in ("dark", "noise"):  # the workflow reads images from S3: put the drifted ones there
            moved = {}
            for key, body in bodies.items():
                moved[key] = f"{prefix}/load/{drift}-{seed}/{key.rsplit('/', 1)[-1]}"
                s3.put_object(Bucket=bucket, Key=moved[key], Body=body, ContentType="image/png")
            chosen = [moved[k] for k in chosen]
            bodies = {moved[k]: v for k, v in bodies.items()}
        outputs = stacks.outputs()
        express = stacks.is_express(outputs)
        send = workflow_sender(outputs[stacks.SINGLE], bucket, concurrency, express)
    summary = Summary(mode, via, drift, threshold=threshold)
    summary = run(send, chosen, bodies.__getitem__, times, concurrency, summary, on_result, progress)
    summary.capture_flushed = wait_for_capture(name) if settings.target() != "aws" else None
    return summary
