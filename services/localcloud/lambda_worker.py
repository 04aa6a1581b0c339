"""A warm Lambda worker: imports one handler once, then serves invocations until stdin closes.

Run as a script with the function's unpacked code as its working directory:
    python lambda_worker.py REPLY_FD  (handler from _HANDLER, e.g. "lambda.lambda_handler")
Protocol: one JSON request per line on stdin; one JSON reply per line on the file descriptor named by
the first argument (first `{"ready": true}` once the handler is imported), so that
whatever the handler prints (its log) never mixes with replies. Standard library only.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import sys
import time
import traceback


class LambdaContext:
    """The attributes and method of the real runtime's context object that handlers use."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("SCONES_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _CurrentStdout(io.TextIOBase):
    """Logging writes here; it follows whatever sys.stdout is during an invocation."""

    def write(self, s: str) -> int:
        return sys.stdout.write(s)


def _error(error_type: str, message: str, stack: list[str] | None = None) -> dict:
    return {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": stack or []}


def _load_handler():
    spec = os.environ.get("_HANDLER", "")
    module_name, _, func_name = spec.rpartition(".")
    if not module_name:
        return None, _error("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as exc:  # the real runtime reports any import failure this way
        message = f"Unable to import module '{module_name}': {exc}"
        return None, _error("Runtime.ImportModuleError", message)
    handler = getattr(module, func_name, None)
    if handler is None:
        message = f"Handler '{func_name}' missing on module '{module_name}'"
        return None, _error("Runtime.HandlerNotFound", message)
    return handler, None


def main() -> None:
    sys.path[0] = os.getcwd()  # the function's code, not this script's folder, as on the real runtime
    replies = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    real_stdout = sys.stdout
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    log_handler = logging.StreamHandler(_CurrentStdout())
    log_handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s\t%(message)s"))
    root.addHandler(log_handler)

    handler, load_error = _load_handler()
    replies.write('{"ready": true}\n')  # init is over: what follows is each invocation's own time
    for line in sys.stdin:
        request = json.loads(line)
        log = io.StringIO()
        sys.stdout = sys.stderr = log
        request_id = request["request_id"]
        print(f"START RequestId: {request_id} Version: $LATEST")
        started = time.perf_counter()
        if load_error is not None:
            result, failed = dict(load_error, requestId=request_id), True
        else:
            try:
                context = LambdaContext(request_id, request["deadline_ms"])
                value = handler(json.loads(request["event"]), context)
                result, failed = json.dumps(value), False
            except Exception as exc:
                stack = traceback.format_tb(exc.__traceback__)[1:]
                result = _error(type(exc).__name__, str(exc), stack)
                result["requestId"] = request_id
                failed = True
                print(f"[ERROR] {type(exc).__name__}: {exc}")
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"END RequestId: {request_id}")
        print(f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms")
        sys.stdout, sys.stderr = real_stdout, sys.__stderr__
        if failed:
            result = json.dumps(result)
        replies.write(json.dumps({"payload": result, "failed": failed, "log": log.getvalue()}) + "\n")


if __name__ == "__main__":
    main()
