"""StartSyncExecution: an Express execution run to its end within the request, answered as AWS answers it.

moto 5.2.5 routes no such action (its parser carries LocalStack's `SyncExecution`, but no backend method or
response calls it). AWS's contract (botocore's stepfunctions model, StartSyncExecution): the answer holds
executionArn, stateMachineArn, name, startDate, stopDate, status (SUCCEEDED | FAILED | TIMED_OUT), input and
inputDetails, output and outputDetails on success, error and cause on failure, and billingDetails (billed memory
and duration, in 100 ms steps as Express bills). A Standard machine is refused with StateMachineTypeNotSupported.
As on AWS, the execution is not listed by ListExecutions nor described afterwards: an Express machine keeps no
history. Clients must not send the request to the `sync-` host prefix (scones.core.aws turns injection off for
a custom endpoint URL).
"""

from __future__ import annotations

import datetime
import json
import math
import uuid
from typing import Any

NAME = "sfn-sync-execution"
WHAT = "StartSyncExecution runs an Express execution to its end and answers status/output/error/cause; Standard refused"
TOUCHES = (
    "moto.stepfunctions.responses:StepFunctionResponse",
    "moto.stepfunctions.parser.models:StepFunctionsParserBackend.describe_state_machine",
    "moto.stepfunctions.parser.backend.execution:SyncExecution.to_start_sync_execution_output",
    "moto.core.exceptions:AWSError",
)
BILLED_MEMORY_MB = 64  # what Express bills at the least; the local cloud does not measure memory
NOT_SUPPORTED = "StateMachineTypeNotSupported"


def billed_ms(started: datetime.datetime, stopped: datetime.datetime) -> int:
    """Express bills duration rounded up to the next 100 ms."""
    elapsed = (stopped - started).total_seconds() * 1000
    return max(100, math.ceil(elapsed / 100) * 100)


def answer(output: dict[str, Any]) -> dict[str, Any]:
    """The response body: the sync output with plain strings for enums, and billingDetails."""
    body = {k: (v.value if hasattr(v, "value") else v) for k, v in output.items() if v is not None}
    body["billingDetails"] = {
        "billedMemoryUsedInMB": BILLED_MEMORY_MB,
        "billedDurationInMilliseconds": billed_ms(output["startDate"], output["stopDate"]),
    }
    return body


def apply(context: Any) -> None:
    from moto.core.exceptions import AWSError
    from moto.core.responses import ActionResult
    from moto.stepfunctions.exceptions import InvalidExecutionInput
    from moto.stepfunctions.parser.backend.execution import SyncExecution
    from moto.stepfunctions.responses import StepFunctionResponse

    def start_sync_execution(self: Any) -> Any:
        backend = self.stepfunction_backend
        machine = backend.describe_state_machine(self._get_param("stateMachineArn"))
        if machine.type != "EXPRESS":
            raise AWSError(
                f"{machine.arn} is a {machine.type} state machine: StartSyncExecution needs EXPRESS", NOT_SUPPORTED
            )
        text = self._get_param("input", if_none="{}")
        try:
            json.loads(text)
        except ValueError as exc:
            raise InvalidExecutionInput(str(exc)) from None
        name = self._get_param("name") or str(uuid.uuid4())
        execution = SyncExecution(
            name=name,
            sm_type=machine.sm_type,
            role_arn=machine.roleArn,
            exec_arn=f"arn:{backend.partition}:states:{backend.region_name}:{backend.account_id}:express:"
            f"{machine.name}:{name}:{uuid.uuid4()}",  # AWS's Express execution ARNs are of this form
            account_id=backend.account_id,
            region_name=backend.region_name,
            state_machine=machine,
            start_date=datetime.datetime.now(tz=datetime.UTC),
            cloud_watch_logging_session=None,
            activity_store={},
            input_data=text,
            trace_header=self._get_param("traceHeader"),
        )
        execution.start()  # a SyncExecutionWorker runs the program in this thread, to its end
        return ActionResult(answer(execution.to_start_sync_execution_output()))

    StepFunctionResponse.start_sync_execution = start_sync_execution
