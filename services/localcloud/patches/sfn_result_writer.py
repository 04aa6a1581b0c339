"""A Distributed Map's children are recorded, its ToleratedFailure* is enforced and its ResultWriter writes them.

moto 5.2.5 forgets a failed child's error, never fails a Map Run for too many failed children, reads the
ResultWriter's `Bucket.$` / `Prefix.$` paths from the children's outputs instead of the state's input, and its
ResultWriter writes a manifest that lists no result file. Here each child's outcome (input, output or error and
cause, times) is kept on its Map Run; a Map Run whose failed children pass ToleratedFailureCount or
ToleratedFailurePercentage (none tolerated when neither is set) fails with States.ExceedToleratedFailureThreshold,
after its results are written; and the ResultWriter writes AWS's layout under Prefix/<map run id>/:
manifest.json plus SUCCEEDED_0.json and FAILED_0.json (the files of a status that has children), each a JSON list
of {"ExecutionArn", "Name", "Input", "Output" | "Error", "Cause", "Status", "StartDate", "StopDate", ...}.
"""

from __future__ import annotations

import datetime
import importlib
import json
import threading
from typing import Any

NAME = "sfn-result-writer"
WHAT = "a Distributed Map records its children, enforces ToleratedFailure*, and its ResultWriter writes them to S3"
_MAP = "moto.stepfunctions.parser.asl.component.state.exec.state_map"
TOUCHES = (
    f"{_MAP}.iteration.itemprocessor.distributed_item_processor_worker:DistributedItemProcessorWorker._eval_job",
    f"{_MAP}.iteration.distributed_iteration_component:DistributedIterationComponent._map_run",
    f"{_MAP}.result_writer.result_writer_decl:ResultWriter._eval_body",
    f"{_MAP}.result_writer.resource_eval.resource_eval_s3:ResourceEvalS3._handle_put_object",
    f"{_MAP}.result_writer.resource_eval.resource_eval_s3:ResourceEvalS3._get_s3_client",
    "moto.stepfunctions.parser.asl.eval.program_state:ProgramError",
    "moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type:StatesErrorNameType",
)
_LOCK = threading.Lock()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exceeded(failed: int, total: int, count: int | None, percentage: float | None) -> bool:
    """AWS's rule: past either tolerance given; with neither given, any failure."""
    if count is None and percentage is None:
        return failed > 0
    return (count is not None and failed > count) or (
        percentage is not None and total > 0 and failed * 100 / total > percentage
    )


def result_files(children: list[dict], map_run_arn: str, state_machine_arn: str) -> dict[str, list[dict]]:
    """{status: [AWS's record of each child]}, children in item order."""
    run_id = map_run_arn.rsplit(":", 1)[-1]
    by_status: dict[str, list[dict]] = {}
    for child in sorted(children, key=lambda c: c["index"]):
        name = f"{run_id.split('/')[-1][:24]}-{child['index']}"
        record = {
            "ExecutionArn": f"{state_machine_arn.replace(':stateMachine:', ':express:')}/{run_id}/{name}",
            "Input": json.dumps(child["input"]),
            "InputDetails": {"Included": True},
            "Name": name,
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
            "StartDate": child["start"],
            "StateMachineArn": state_machine_arn,
            "Status": child["status"],
            "StopDate": child["stop"],
        }
        if child["status"] == "SUCCEEDED":
            record.update(Output=json.dumps(child["output"]), OutputDetails={"Included": True})
        else:
            record.update(Error=child.get("error") or "", Cause=child.get("cause") or "")
        by_status.setdefault(child["status"], []).append(record)
    return by_status


def apply(context: Any) -> None:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError

    worker_module = importlib.import_module(f"{_MAP}.iteration.itemprocessor.distributed_item_processor_worker")
    DistributedItemProcessorWorker = worker_module.DistributedItemProcessorWorker
    ResourceEvalS3 = importlib.import_module(f"{_MAP}.result_writer.resource_eval.resource_eval_s3").ResourceEvalS3

    original_job = DistributedItemProcessorWorker._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        started = _now()
        original_job(self, env, job)
        child = {"index": job.job_index, "input": job.job_input, "start": started, "stop": _now()}
        state = env.program_state()
        if job.job_output is not None:
            child.update(status="SUCCEEDED", output=job.job_output)
        elif isinstance(state, ProgramError) and state.error:
            child.update(status="FAILED", error=state.error.get("error"), cause=state.error.get("cause"))
        else:
            child.update(status="FAILED", error="States.Runtime", cause="the child execution did not finish")
        children = getattr(self._map_run_record, "scones_children", None)
        if children is not None:
            with _LOCK:
                children.append(child)

    original_map_run = DistributedIterationComponent._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        record = eval_input.map_run_record
        record.scones_children = []
        original_map_run(self, env, eval_input)
        tolerance = getattr(self, "scones_tolerance", None)
        if tolerance is None:
            return  # a Map sfn-map-definition did not rewrite: moto's own behaviour
        children = record.scones_children
        failed = sum(c["status"] != "SUCCEEDED" for c in children)
        count = eval_input.tolerated_failure_count if "count" in tolerance else None
        percentage = eval_input.tolerated_failure_percentage if "percentage" in tolerance else None
        if not exceeded(failed, len(children), count, percentage):
            return
        state = getattr(self, "scones_state", None)
        if state is not None and state.result_writer is not None:  # AWS writes a failed Map Run's results too
            state.result_writer.eval(env)
            env.stack.pop()
        error = StatesErrorNameType.StatesExceedToleratedFailureThreshold
        raise FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=error),
                event_type=HistoryEventType.ExecutionFailed,
                event_details=EventDetails(
                    executionFailedEventDetails=ExecutionFailedEventDetails(
                        error=error.to_name(),
                        cause=f"The specified tolerated failure threshold was exceeded: {failed} of "
                        f"{len(children)} child executions failed",
                    )
                ),
            )
        )

    def _handle_put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        parameters = env.stack.pop()
        env.stack.pop()  # the children's outputs: their records (with the failed ones) are on the Map Run
        s3 = ResourceEvalS3._get_s3_client(resource_runtime_part, state_credentials)
        record = env.map_run_record_pool_manager.get_all()[-1]
        run_id = record.map_run_arn.split(":")[-1]
        prefix = parameters.get("Prefix", "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        files: dict[str, list] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        machine = env.states.context_object.context_object_data["StateMachine"]["Id"]
        for status, records in result_files(
            getattr(record, "scones_children", []), record.map_run_arn, machine
        ).items():
            key, body = f"{prefix}{run_id}/{status}_0.json", json.dumps(records).encode()
            s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
            files.setdefault(status, []).append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": parameters["Bucket"], "MapRunArn": record.map_run_arn, "ResultFiles": files}
        key = f"{prefix}{run_id}/manifest.json"
        s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=json.dumps(manifest, indent=2).encode())
        env.stack.append(
            {"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": parameters["Bucket"], "Key": key}}
        )

    ResultWriter = importlib.import_module(f"{_MAP}.result_writer.result_writer_decl").ResultWriter

    def _result_writer_eval_body(self: Any, env: Any) -> None:
        outputs = env.stack.pop()
        env.stack.append(env.states.get_input())  # Parameters' paths read the Map state's input, as on AWS
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(outputs)
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    ResultWriter._eval_body = _result_writer_eval_body
    DistributedItemProcessorWorker._eval_job = _eval_job
    DistributedIterationComponent._map_run = _map_run
    ResourceEvalS3._handle_put_object = staticmethod(_handle_put_object)
