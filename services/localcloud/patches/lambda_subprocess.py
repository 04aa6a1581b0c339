"""Lambda Invoke runs the function's real zip in warm worker subprocesses (../lambda_runtime.py).

moto's own executor needs Docker (`use_docker=False` is an echo stub). Results are shaped as AWS shapes
them (FunctionError: Unhandled, errorType/stackTrace, Sandbox.Timedout), with LogType=Tail and
asynchronous Event invokes; deleting a function retires its workers.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

NAME = "lambda-subprocess"
WHAT = "Lambda Invoke runs the real zip in warm worker subprocesses"
TOUCHES = (
    "moto.awslambda.models:LambdaFunction._invoke_lambda",
    "moto.awslambda.models:LambdaFunction.invoke",
    "moto.awslambda.models:LambdaFunction.save_logs",
    "moto.awslambda.models:LambdaBackend.delete_function",
    "moto.awslambda.models:LambdaBackend.get_function",
)


def spec_for(fn: Any, concurrency: int):
    """moto's LambdaFunction as the runtime's FunctionSpec (the runtime knows nothing of moto)."""
    from ..lambda_runtime import FunctionSpec

    reserved = fn.reserved_concurrency
    cap = int(reserved) if reserved not in (None, "") and int(reserved) > 0 else concurrency
    return FunctionSpec(
        arn=fn.function_arn,
        name=fn.function_name,
        handler=fn.handler or "",
        runtime=fn.run_time or "python3.12",
        timeout_s=float(fn.timeout or 3),
        memory_mb=int(fn.memory_size or 128),
        code=fn.code_bytes,
        code_sha256=fn.code_sha_256,
        environment={k: str(v) for k, v in (fn.environment_vars or {}).items()},
        concurrency=cap,
    )


def apply(context: Any) -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    runtime = context.runtime

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        if not getattr(self, "code_bytes", b""):
            message = "Function code is empty or was not found (zip missing in S3?)"
            return json.dumps({"errorMessage": message, "errorType": "Runtime.InvalidEntrypoint"}), True, ""
        text = event if isinstance(event, str) else json.dumps({} if event is None else event)
        self.logs_backend.ensure_log_group(self.logs_group_name)
        result = runtime.invoke(spec_for(self, context.lambda_concurrency), text or "{}")
        self.save_logs(result.log)
        return result.payload, result.failed, result.log

    def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
        inv_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
        if inv_type == "DryRun":
            return b""
        if inv_type == "Event":
            threading.Thread(target=self._invoke_lambda, args=(body,), daemon=True).start()
            return b""
        payload, failed, log = self._invoke_lambda(body)
        if failed:
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["x-amz-executed-version"] = "$LATEST"
        tail = log.encode()[-4096:]  # AWS returns the last 4 KB
        response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
        return payload.encode()

    original_delete = LambdaBackend.delete_function

    def delete_function(self: Any, function_name: str, qualifier: str | None = None) -> Any:
        try:
            arn = self.get_function(function_name).function_arn
        except Exception:  # moto raises its own not-found error below
            arn = None
        result = original_delete(self, function_name, qualifier)
        if arn:
            runtime.retire(arn)
        return result

    LambdaFunction._invoke_lambda = _invoke_lambda
    LambdaFunction.invoke = invoke
    LambdaBackend.delete_function = delete_function
