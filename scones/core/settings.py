"""Every environment-variable name the project reads, with its default.

Rule: an explicit argument beats the environment, which beats the default here. Reading a setting has no
side effect: what the target needs in the environment is computed once in `scones.core.target`. Lambdas
cannot import this module (they are zipped alone with boto3 and the standard library), so the few names they read
(ENDPOINT_NAME, SCONES_THRESHOLD) are repeated there and listed here as the source of truth.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from scones.core.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]  # the repository: templates, Lambdas, training code, compose file

# --- names -------------------------------------------------------------------------------------------
TARGET = "SCONES_TARGET"  # local | localstack | aws
STATE_DIR = "SCONES_STATE_DIR"  # pid files, logs, unpacked lambda code
BUCKET = "SCONES_BUCKET"  # the project's default bucket
PREFIX = "SCONES_PREFIX"  # key prefix of staged data
DATA_DIR = "SCONES_DATA_DIR"  # download cache and staged data
CIFAR100_URL = "SCONES_CIFAR100_URL"  # where `scones stage --source cifar100` downloads from
LOCALCLOUD_HOST = "SCONES_LOCALCLOUD_HOST"
LOCALCLOUD_PORT = "SCONES_LOCALCLOUD_PORT"
LAMBDA_CONCURRENCY = "SCONES_LAMBDA_CONCURRENCY"  # per-function cap in the local cloud (queued beyond)
LAMBDA_WORKDIR = "SCONES_LAMBDA_WORKDIR"  # where the local cloud unpacks function zips
ENDPOINT_NAME = "ENDPOINT_NAME"  # read by the classify lambda
SCONES_ENDPOINT_NAME = "SCONES_ENDPOINT_NAME"  # the local endpoint's name (default scones-endpoint)
ENDPOINT_PORT = "SCONES_ENDPOINT_PORT"
ENDPOINT_WORKERS = "SCONES_ENDPOINT_WORKERS"  # server processes sharing the endpoint's port (0: one per core)
CAPTURE_BUCKET = "SCONES_CAPTURE_BUCKET"  # data capture destination (default: SCONES_BUCKET)
CAPTURE_PREFIX = "SCONES_CAPTURE_PREFIX"
CAPTURE_PERCENT = "SCONES_CAPTURE_PERCENT"  # sampling percentage, 0..100
MAX_BATCH_SIZE = "SCONES_MAX_BATCH_SIZE"  # dynamic batching: images per model call
MAX_WAIT_MS = "SCONES_MAX_WAIT_MS"  # dynamic batching: how long a batch waits to fill
MAX_PAYLOAD_MB = "SCONES_MAX_PAYLOAD_MB"  # request bodies above this are refused (413)
MAX_IMAGE_PIXELS = "SCONES_MAX_IMAGE_PIXELS"  # images of more pixels are refused before decoding (413)
BODY_TIMEOUT_S = "SCONES_BODY_TIMEOUT_S"  # a request body not received within this is refused (408)
CAPTURE_MAX_MB = "SCONES_CAPTURE_MAX_MB"  # what one worker's capture buffer may hold (MiB)
CAPTURE_WHEN_FULL = "SCONES_CAPTURE_WHEN_FULL"  # block (wait for room, then 503) | drop (count the loss, answer)
CAPTURE_BLOCK_S = "SCONES_CAPTURE_BLOCK_S"  # block: how long a request waits for room before its 503
STACK_NAME = "SCONES_STACK_NAME"  # the workflow's CloudFormation stack
ORT_THREADS = "SCONES_ORT_THREADS"  # onnxruntime intra-op threads per endpoint worker (0: cores / workers)
WORKFLOW_TYPE = "SCONES_WORKFLOW_TYPE"  # standard | express: the single-image state machine's type
THRESHOLD = "SCONES_THRESHOLD"  # the filter's confidence threshold, read by the filter lambda too
ALERT_TOPIC_ARN = "SCONES_ALERT_TOPIC_ARN"  # where `scones monitor --alert` publishes (default: the stack's output)
OLD_THRESHOLD = "THRESHOLD"  # deprecated: still read when SCONES_THRESHOLD is unset, for one release
DEBUG = "SCONES_DEBUG"  # 1: commands show tracebacks (as --debug does)
LOCALSTACK_PYTHON = "SCONES_LOCALSTACK_PYTHON"  # a Python >= 3.13 for LocalStack host mode (else python3.13, pyenv)
LOCALSTACK_PORT = "SCONES_LOCALSTACK_PORT"  # LocalStack's gateway port (default 4566; 0: any free port)
LOCALSTACK_MODE = "SCONES_LOCALSTACK_MODE"  # auto (Docker when an engine answers, else host) | host | docker
LOCALSTACK_VENV = "SCONES_LOCALSTACK_VENV"  # host mode's virtual environment (default .venv-localstack)
SAGEMAKER_ROLE = "SCONES_SAGEMAKER_ROLE"  # aws target: the SageMaker execution role (ARN or name)
SDK_VALIDATE_ROLE = "SAGEMAKER_VALIDATE_ROLE"  # the SageMaker SDK's own role check (scones' preflight does it)

AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_REGION = "AWS_DEFAULT_REGION"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
# Service-specific endpoints (AWS_ENDPOINT_URL_<SERVICE>) that the local cloud passes on to lambdas.
SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"
SAGEMAKER_RUNTIME_URL = "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"  # where invoke_endpoint goes (local endpoint)

# --- defaults ----------------------------------------------------------------------------------------
TARGETS = ("local", "localstack", "aws")
DEFAULT_TARGET = "local"
DEFAULT_BUCKET = "scones-unlimited"
DEFAULT_PREFIX = "data"
DEFAULT_STACK_NAME = "scones-workflow"
DEFAULT_ENDPOINT_NAME = "scones-endpoint"
DEFAULT_CAPTURE_PREFIX = "datacapture"
MODELS_PREFIX = "models"  # s3://<bucket>/models/<job>/output/model.tar.gz, as SageMaker lays it out
DEPLOY_PREFIX = "deploy"  # Lambda zips and state machine definitions, per stack
MONITORING_PREFIX = "monitoring"  # the AWS monitoring job's reports, per endpoint
BACKFILL_PREFIX = "backfill"  # s3://<bucket>/backfill/<execution>/<map run>/: a backfill's ResultWriter files
DEFAULT_BACKFILL_BATCH_SIZE = 25  # keys per Distributed Map child (one endpoint call each)
MAX_BACKFILL_BATCH_SIZE = 100  # a batch's body stays well under the endpoint's payload limit
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4566
DEFAULT_REGION = "us-east-1"
DEFAULT_LAMBDA_CONCURRENCY = 4
DEFAULT_THRESHOLD = 0.93
WORKFLOW_TYPES = ("standard", "express")  # template.yaml's WorkflowType, lower case
DEFAULT_WORKFLOW_TYPE = "standard"
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # services/endpoint/inference.py repeats it (it imports nothing of ours)
CAPTURE_POLICIES = ("block", "drop")
DEFAULT_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
FAKE_CREDENTIALS = {AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing"}


class SettingsError(UsageError):
    """A setting has a value the project cannot use."""


def _get(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def target() -> str:
    value = _get(TARGET, DEFAULT_TARGET)
    if value not in TARGETS:
        raise SettingsError(f"{TARGET}={value!r} is not one of {', '.join(TARGETS)}", f"unset {TARGET} or fix it")
    return value


def state_dir() -> Path:
    return Path(_get(STATE_DIR, ".scones")).resolve()


def data_dir() -> Path:
    return Path(_get(DATA_DIR, "data")).resolve()


def cifar100_url() -> str:
    return _get(CIFAR100_URL, DEFAULT_CIFAR100_URL)


def _number(name: str, default: float, lo: float, hi: float, kind=float, what: str = "a number"):
    raw = _get(name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {what}", f"unset {name} or fix it") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside {lo}..{hi}", f"unset {name} or fix it")
    return value


def endpoint_name() -> str:
    return _get(SCONES_ENDPOINT_NAME, DEFAULT_ENDPOINT_NAME)


def endpoint_port() -> int:
    return _number(ENDPOINT_PORT, 8080, 0, 65535, int)


def endpoint_workers() -> int:
    """Server processes of a local endpoint; 0 (the default) means one per core this process may use."""
    return _number(ENDPOINT_WORKERS, 0, 0, 64, int)


def ort_threads() -> int:
    """onnxruntime intra-op threads per endpoint worker; 0 (the default): the cores shared among the workers."""
    return _number(ORT_THREADS, 0, 0, 256, int)


def capture_bucket() -> str:
    return _get(CAPTURE_BUCKET, bucket())


def capture_prefix() -> str:
    return _own_prefix(CAPTURE_PREFIX, DEFAULT_CAPTURE_PREFIX)


def capture_percent() -> float:
    return _number(CAPTURE_PERCENT, 100.0, 0.0, 100.0)


def max_batch_size() -> int:
    return _number(MAX_BATCH_SIZE, 32, 1, 4096, int)


def max_wait_ms() -> float:
    return _number(MAX_WAIT_MS, 2.0, 0.0, 1000.0)


def max_payload_bytes() -> int:
    return int(_number(MAX_PAYLOAD_MB, 6.0, 0.001, 1024.0) * 1024 * 1024)


def max_image_pixels() -> int:
    return _number(MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS, 1, 2**31, int, "an integer")


def body_timeout_s() -> float:
    return _number(BODY_TIMEOUT_S, 30.0, 0.01, 3600.0)


def capture_max_bytes() -> int:
    return int(_number(CAPTURE_MAX_MB, 256.0, 0.001, 65536.0) * 1024 * 1024)


def capture_when_full() -> str:
    value = _get(CAPTURE_WHEN_FULL, "block")
    if value not in CAPTURE_POLICIES:
        raise SettingsError(
            f"{CAPTURE_WHEN_FULL}={value!r} is not one of {', '.join(CAPTURE_POLICIES)}",
            f"unset {CAPTURE_WHEN_FULL} or fix it",
        )
    return value


def capture_block_s() -> float:
    return _number(CAPTURE_BLOCK_S, 10.0, 0.0, 600.0)


def stack_name() -> str:
    return _get(STACK_NAME, DEFAULT_STACK_NAME)


def threshold() -> float:
    if not _get(THRESHOLD, "") and _get(OLD_THRESHOLD, ""):
        _deprecated(OLD_THRESHOLD, THRESHOLD)
        return _number(OLD_THRESHOLD, DEFAULT_THRESHOLD, 0.0, 1.0)
    return _number(THRESHOLD, DEFAULT_THRESHOLD, 0.0, 1.0)


def workflow_type() -> str:
    """The single-image state machine's type: standard (history kept) or express (StartSyncExecution)."""
    value = _get(WORKFLOW_TYPE, DEFAULT_WORKFLOW_TYPE).lower()
    if value not in WORKFLOW_TYPES:
        raise SettingsError(
            f"{WORKFLOW_TYPE}={value!r} is not one of {', '.join(WORKFLOW_TYPES)}", f"unset {WORKFLOW_TYPE} or fix it"
        )
    return value


@functools.cache
def _deprecated(old: str, new: str) -> None:
    """One line on stderr, once per process, for an old variable name that still works."""
    print(f"scones: ${old} is deprecated and read for one more release: set ${new} instead", file=sys.stderr)


def sagemaker_role() -> str | None:
    return _get(SAGEMAKER_ROLE, "") or None


def endpoint_record_path(name: str) -> Path:
    return state_dir() / f"endpoint-{name}.json"


def aws_record_path(stack: str) -> Path:
    """What `scones deploy --target aws` made for `stack` (its training job, model, serving artifact, endpoint)."""
    return state_dir() / f"aws-{stack}.json"


def bucket() -> str:
    return _get(BUCKET, DEFAULT_BUCKET)


def _own_prefix(name: str, default: str) -> str:
    """A key prefix the project writes and deletes under: never the bucket's root, never climbing out of it."""
    value = _get(name, default).strip("/")
    if not value or ".." in value.split("/"):
        raise SettingsError(
            f"{name}={os.environ.get(name)!r} would reach outside the project's own keys", f"unset {name}"
        )
    return value


def alert_topic_arn() -> str | None:
    """The alert topic given to the AWS monitoring job (its role may not read the stack); None: ask the stack."""
    return os.environ.get(ALERT_TOPIC_ARN, "").strip() or None


def prefix() -> str:
    return _own_prefix(PREFIX, DEFAULT_PREFIX)


def region() -> str:
    return _get(AWS_REGION, os.environ.get("AWS_REGION", "") or DEFAULT_REGION)


def localcloud_host() -> str:
    return _get(LOCALCLOUD_HOST, DEFAULT_HOST)


def localcloud_port() -> int:
    return _number(LOCALCLOUD_PORT, DEFAULT_PORT, 0, 65535, int, "a port number")  # 0: any free port


def lambda_concurrency() -> int:
    return _number(LAMBDA_CONCURRENCY, DEFAULT_LAMBDA_CONCURRENCY, 1, 1024, int, "an integer")


def lambda_workdir() -> Path:
    return Path(_get(LAMBDA_WORKDIR, str(state_dir() / "lambda"))).resolve()


def service_endpoints(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The AWS_ENDPOINT_URL_<SERVICE> variables set in `environ` (default: this process)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(SERVICE_ENDPOINT_PREFIX) and v}


def localstack_port() -> int:
    return _number(LOCALSTACK_PORT, DEFAULT_PORT, 0, 65535, int, "a port number")


def localstack_mode() -> str:
    value = _get(LOCALSTACK_MODE, "auto")
    if value not in ("auto", "host", "docker"):
        raise SettingsError(f"{LOCALSTACK_MODE}={value!r} is not one of auto, host, docker")
    return value


def localstack_python() -> str:
    return _get(LOCALSTACK_PYTHON, "")


def localstack_venv() -> Path:
    return Path(_get(LOCALSTACK_VENV, str(Path(__file__).resolve().parents[2] / ".venv-localstack"))).resolve()


def localstack_record_path() -> Path:
    return state_dir() / "localstack.json"


def localcloud_record_path() -> Path:
    return state_dir() / "localcloud.json"


def debug() -> bool:
    return _get(DEBUG, "0").lower() in ("1", "true", "yes")


def error_log_path() -> Path:
    """Where unexpected errors' tracebacks go (the one line on screen names it)."""
    return state_dir() / "errors.log"


# --- who may talk to the embedded local cloud (docs/security.md) ------------------------------------------
CORS_ORIGINS = "SCONES_CORS_ORIGINS"  # comma-separated origins granted CORS by the local cloud (default: none)
VERIFY_SIGNATURES = "SCONES_VERIFY_SIGNATURES"  # 1: the local cloud checks SigV4 against FAKE_CREDENTIALS


def cors_origins() -> tuple[str, ...]:
    """Origins (scheme://host[:port]) whose web pages may call the local cloud; none by default."""
    origins = tuple(o.strip().rstrip("/") for o in _get(CORS_ORIGINS, "").split(",") if o.strip())
    for origin in origins:
        if origin == "*" or "://" not in origin:
            raise SettingsError(
                f"{CORS_ORIGINS} holds {origin!r}: list origins as scheme://host[:port] (no wildcard)",
                f"fix or unset {CORS_ORIGINS}",
            )
    return origins


def verify_signatures() -> bool:
    return _get(VERIFY_SIGNATURES, "0").lower() in ("1", "true", "yes")


# --- safe model updates: variants, the quality gate, shadow tests, rollouts (docs/safe-updates.md) -------------
ENDPOINT_METRICS_S = "SCONES_ENDPOINT_METRICS_S"  # how often endpoint workers put their metrics (0: never)
GATE_ACCURACY_DROP = "SCONES_GATE_ACCURACY_DROP"  # the gate refuses a candidate whose accuracy is lower by more
GATE_ECE_RISE = "SCONES_GATE_ECE_RISE"  # … whose ECE is higher by more
GATE_COVERAGE_DROP = "SCONES_GATE_COVERAGE_DROP"  # … whose coverage at the threshold is lower by more
GATE_FALSE_PASS_RISE = "SCONES_GATE_FALSE_PASS_RISE"  # … whose false-pass rate on held-out outliers is higher by more
SHADOW_PERCENT = "SCONES_SHADOW_PERCENT"  # --shadow: the share of live requests mirrored to the candidate
ROLLOUT_PERIOD_S = "SCONES_ROLLOUT_PERIOD_S"  # the period of the alarms a rollout creates (CloudWatch's minimum 10)
ROLLOUT_LATENCY_MS = "SCONES_ROLLOUT_LATENCY_MS"  # the candidate's ModelLatency p95 alarm threshold
ROLLOUT_WINDOW = "SCONES_ROLLOUT_WINDOW"  # answers per variant in the endpoint's sliding quality window
COMPARE_MIN_AGREEMENT = "SCONES_COMPARE_MIN_AGREEMENT"  # monitor --compare holds below this agreement rate
COMPARE_LOW_CONFIDENCE_RISE = "SCONES_COMPARE_LOW_CONFIDENCE_RISE"  # … when the low-confidence rate rises more
COMPARE_P95_RISE = "SCONES_COMPARE_P95_RISE"  # … when latency p95 rises by more than this fraction
COMPARE_MIN_PAIRS = "SCONES_COMPARE_MIN_PAIRS"  # … with fewer paired requests than this


def endpoint_metrics_s() -> float:
    """Seconds between two puts of an endpoint worker's metrics (SageMaker's 60 by default; 0: none)."""
    return _number(ENDPOINT_METRICS_S, 60.0, 0.0, 3600.0)


def gate_margins() -> dict[str, float]:
    """How much worse than production a candidate may be on each figure before the gate refuses it."""
    return {
        "accuracy": _number(GATE_ACCURACY_DROP, 0.01, 0.0, 1.0),
        "ece": _number(GATE_ECE_RISE, 0.01, 0.0, 1.0),
        "coverage": _number(GATE_COVERAGE_DROP, 0.02, 0.0, 1.0),
        "false_pass": _number(GATE_FALSE_PASS_RISE, 0.02, 0.0, 1.0),
    }


def shadow_percent() -> float:
    return _number(SHADOW_PERCENT, 100.0, 0.0, 100.0)


def rollout_period_s() -> int:
    return _number(ROLLOUT_PERIOD_S, 60, 1, 86400, int, "an integer")


def rollout_latency_ms() -> float:
    return _number(ROLLOUT_LATENCY_MS, 500.0, 0.001, 600000.0)


def rollout_window() -> int:
    """How many of a variant's latest answers the endpoint's LowConfidenceRate and ConfidenceDrift are computed
    over (services/endpoint/quality.py); nothing is put for a variant until it has answered this many. The
    rollout's low-confidence and drift alarms' thresholds follow from it."""
    return _number(ROLLOUT_WINDOW, 100, 10, 100_000, int, "an integer")


def compare_rules() -> dict[str, float]:
    """When `scones monitor --compare` says promote: agreement at least `agreement`, a low-confidence rate not
    higher by more than `low_confidence`, a latency p95 not higher by more than the fraction `p95`, and at
    least `pairs` requests answered by both."""
    return {
        "agreement": _number(COMPARE_MIN_AGREEMENT, 0.95, 0.0, 1.0),
        "low_confidence": _number(COMPARE_LOW_CONFIDENCE_RISE, 0.02, 0.0, 1.0),
        "p95": _number(COMPARE_P95_RISE, 0.5, 0.0, 100.0),
        "pairs": _number(COMPARE_MIN_PAIRS, 30, 1, 10**9, int, "an integer"),
    }
