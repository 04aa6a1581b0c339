"""A LocalStack execution environment as one warm subprocess on the host (no container, no download).

LocalStack keeps one RuntimeExecutor per execution environment: it starts it with the function's
environment, sends it one invocation at a time, keeps it warm between invocations and stops it after its
keep-alive. Here an environment is one worker process of the embedded cloud (lambda_worker.py) in the
function's unzipped code folder, so both targets run handlers, time out and shape errors identically.
The Docker executor's HTTP round trip (runtime posts /ready, receives /invoke, posts /response) is not
needed: the executor holds the worker's pipes and answers `invoke()` itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from localstack import config
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

# The repository (this package is installed editable from services/localstack): reuse the embedded cloud's
# worker rather than a second copy. lambda_runtime imports only the standard library.
ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from services.localcloud.lambda_runtime import INHERITED, INIT_TIMEOUT_S, Worker, run_on  # noqa: E402

LOG = logging.getLogger(__name__)
HOST = "127.0.0.1"  # host mode: LocalStack, the workers and the model server share the loopback


class SubprocessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id, function_version)
        self._env: dict[str, str] = {}
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._logs: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update({k: str(v) for k, v in env_vars.items() if v is not None})  # some values arrive as int
        code_dir = self._code_dir()
        env["LAMBDA_TASK_ROOT"] = str(code_dir)
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{self.function_version.config.runtime}"
        env["SCONES_FUNCTION_ARN"] = self.function_version.qualified_arn
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._env = env
        self._worker = Worker(code_dir, env)
        # Return once the handler is imported (LocalStack's contract for start()), so that the first
        # invocation's timeout counts the handler only, as on AWS. LocalStack stops waiting at its own
        # LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT; a slow import then finishes inside the first invocation.
        self._worker.wait_ready(max(1.0, config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT - 1.0))

    def stop(self) -> None:
        # Without the lock: LocalStack may stop an environment mid-invocation (function deleted, updated);
        # killing the worker ends that invocation at once (Runtime.ExitError) instead of waiting for it.
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def _code_dir(self) -> Path:
        return Path(self.function_version.config.code.get_unzipped_code_location())

    # --- addresses (all loopback in host mode) -----------------------------------------------------------
    def get_address(self) -> str:
        return HOST

    def get_endpoint_from_executor(self) -> str:
        return HOST

    def get_runtime_endpoint(self) -> str:
        return f"http://{HOST}:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    # --- invocations -------------------------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        with self._lock:  # LocalStack sends one invocation at a time per environment; be safe anyway
            worker = self._worker
            if worker is None or worker.proc.poll() is not None:  # timed out or crashed before: a fresh one
                worker = self._worker = Worker(self._code_dir(), self._env)
                worker.wait_ready(INIT_TIMEOUT_S)
            timeout_s = float(self.function_version.config.timeout)
            result = run_on(worker, payload.get("payload") or "{}", request_id, timeout_s)
            if worker.proc.poll() is not None:
                self._worker = None
        self._logs.append(result.log)
        del self._logs[:-50]  # an environment lives long: keep its recent invocations' logs only
        return InvocationResult(request_id, result.payload.encode(), result.failed, result.log)

    def get_logs(self) -> str:
        return "".join(self._logs)

    # --- versions ----------------------------------------------------------------------------------------
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        # Unzip the code where get_unzipped_code_location() points; nothing is downloaded (the Docker
        # executor fetches its init binary and the runtime image here).
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to clean: the unzipped code belongs to LocalStack's code store."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True
