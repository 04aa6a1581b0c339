"""Any exception as one actionable line: ours as they are, botocore's translated by error code, the rest logged
with their traceback to the error log, whose path the settings own."""

from __future__ import annotations

import time
import traceback

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from scones.core import settings
from scones.core.errors import NotReadyError, SconesError, UsageError

# AWS error codes → (what it means, next step on a local target, next step on AWS).
_AWS_CODES = {
    "NoSuchBucket": (
        "the bucket does not exist",
        "scones up (it creates the default bucket) or pass --bucket",
        "create the bucket or pass --bucket",
    ),
    "NoSuchKey": ("the object does not exist", "scones stage", "scones stage"),
    "ResourceNotFoundException": ("a resource it needs does not exist", "scones deploy", "scones deploy --target aws"),
    "ExecutionDoesNotExist": ("no such execution", "scones invoke, then scones graph", "scones invoke"),
    "StateMachineDoesNotExist": ("the state machine does not exist", "scones deploy", "scones deploy --target aws"),
    "ValidationError": ("AWS refused the request", "check the arguments", "check the arguments"),
    "AccessDenied": (
        "access denied",
        "scones env (fake credentials are set for the local cloud)",
        "check the credentials' permissions (aws sts get-caller-identity)",
    ),
    "AccessDeniedException": ("access denied", "scones env", "check the credentials' permissions"),
    "ExpiredToken": ("the AWS credentials have expired", "scones env", "refresh the credentials (aws sso login)"),
    "ExpiredTokenException": ("the AWS credentials have expired", "scones env", "refresh the credentials"),
    "UnrecognizedClientException": ("the AWS credentials are not valid", "scones env", "check AWS_PROFILE / keys"),
    "InvalidClientTokenId": ("the AWS credentials are not valid", "scones env", "check AWS_PROFILE / keys"),
}


def from_aws(exc: BaseException, target: str) -> SconesError | None:
    """A botocore error as one actionable line, or None when `exc` is not one."""
    local = target != "aws"
    if isinstance(exc, EndpointConnectionError):
        url = exc.kwargs.get("endpoint_url", "")
        if local and ("/endpoints/" in url or "invocations" in url):
            return NotReadyError(
                f"the model endpoint does not answer at {url}", "scones endpoint start (or scones deploy)"
            )
        if local:
            return NotReadyError(f"nothing answers at {url}: the local cloud is not running", "scones up")
        return SconesError(f"cannot reach AWS at {url}", "check the network and AWS_DEFAULT_REGION")
    if isinstance(exc, ReadTimeoutError):
        return SconesError(
            f"no answer in time from {exc.kwargs.get('endpoint_url', 'the service')}", "scones status, then retry"
        )
    if isinstance(exc, NoCredentialsError):
        return UsageError(
            "no AWS credentials found", "aws configure (or set AWS_PROFILE)" if not local else "scones env"
        )
    if isinstance(exc, NoRegionError):
        return UsageError("no AWS region set", "export AWS_DEFAULT_REGION=us-east-1")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "") or str(exc)
        operation = getattr(exc, "operation_name", "")
        known = _AWS_CODES.get(code)
        if known is None and code in ("404", "NotFound"):
            known = ("not found", "scones status", "check the names")
        if known is None:
            return SconesError(f"{operation} failed: {code}: {message}", "rerun with --debug for details")
        what, next_local, next_aws = known
        failure = NotReadyError if code not in ("ValidationError",) else UsageError
        return failure(f"{what} ({operation}: {message})", next_local if local else next_aws)
    return None


def explain(exc: BaseException, target: str) -> SconesError:
    """Any exception as a SconesError: ours as they are, AWS's translated, the rest logged with a traceback."""
    if isinstance(exc, SconesError):
        return exc
    translated = from_aws(exc, target)
    if translated is not None:
        return translated
    if isinstance(exc, OSError) and exc.filename:  # an unwritable --out, a missing folder, a full disk
        return UsageError(f"cannot use {exc.filename}: {exc.strerror}", "pass a path you can write to")
    return SconesError(
        f"unexpected {type(exc).__name__}: {exc}", f"details in {_log_traceback(exc)}, or rerun with --debug"
    )


def _log_traceback(exc: BaseException) -> str:
    path = settings.error_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            log.write("".join(traceback.format_exception(exc)))
    except OSError:
        return "(the error log could not be written)"
    return str(path)
