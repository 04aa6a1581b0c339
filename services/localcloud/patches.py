"""Patches that turn moto 5.2.5's server into a docker-free local cloud.

They touch moto internals, so moto is pinned exactly and `selftest.py` (run by `scones up --check` and the
tests) exercises each one: an upgrade that breaks a patch fails loudly there, not in a user's workflow.

1. Lambda Invoke runs the function's real zip in warm worker subprocesses (lambda_runtime.py), with
   AWS-shaped errors, LogType=Tail and asynchronous Event invokes.
2. Step Functions executes ASL (moto's parser backend) for executions started through the API and for
   state machines created by CloudFormation, whose Definition / DefinitionSubstitutions are honoured.
3. JSONata state machines evaluate with the pure-Python jsonata-python package.
4. Executions started without a name get a uuid, as on AWS.
5. The interpreter's own boto3 clients are cached and talk to 127.0.0.1 (one client per call cost ~30 ms).
6. The request dispatcher remembers which backend serves a host: moto lists its ~200 package folders on
   disk and tries every URL pattern for each request, under a global lock.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from typing import Any

MOTO_VERSION = "5.2.5"
APPLIED: list[str] = []


def apply_all(runtime: Any, port: int) -> list[str]:
    """Apply every patch once; returns their names."""
    if APPLIED:
        return APPLIED
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"the local cloud's patches are written for moto=={MOTO_VERSION}, found {moto.__version__}; "
            f"run `make venv` (pyproject pins it)"
        )
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    _patch_lambda(runtime)
    _patch_stepfunctions_cfn()
    _patch_jsonata()
    _patch_execution_name()
    _patch_interpreter_clients(port)
    _patch_dispatch_cache()
    APPLIED.extend(
        ["lambda-subprocess", "sfn-cloudformation", "jsonata", "execution-name", "sfn-clients", "dispatch-cache"]
    )
    return APPLIED


# --- 1. Lambda ---------------------------------------------------------------------------------------


def _spec_for(fn: Any, concurrency: int):
    from .lambda_runtime import FunctionSpec

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


def _patch_lambda(runtime: Any) -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    from scones.core import settings

    concurrency = settings.lambda_concurrency()

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        if not getattr(self, "code_bytes", b""):
            message = "Function code is empty or was not found (zip missing in S3?)"
            return json.dumps({"errorMessage": message, "errorType": "Runtime.InvalidEntrypoint"}), True, ""
        text = event if isinstance(event, str) else json.dumps({} if event is None else event)
        self.logs_backend.ensure_log_group(self.logs_group_name)
        result = runtime.invoke(_spec_for(self, concurrency), text or "{}")
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


# --- 2. Step Functions under CloudFormation ---------------------------------------------------------


def _definition_from(properties: dict[str, Any], account_id: str) -> str | None:
    definition = properties.get("DefinitionString")
    if definition is None and "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    if definition is None and "DefinitionS3Location" in properties:
        from moto.s3.models import s3_backends

        location = properties["DefinitionS3Location"]
        key = s3_backends[account_id]["aws"].get_object(location["Bucket"], location["Key"])
        if key is None:
            raise ValueError(f"DefinitionS3Location s3://{location['Bucket']}/{location['Key']} does not exist")
        definition = key.value.decode()
    if definition is None:
        return None
    for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    unresolved = re.findall(r"\$\{[A-Za-z0-9_]+\}", definition)
    if unresolved:
        raise ValueError(f"state machine definition has unresolved placeholders: {sorted(set(unresolved))}")
    return definition


def _patch_stepfunctions_cfn() -> None:
    import moto.stepfunctions.models as sfn_models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.stepfunctions.utils import cfn_to_api_tags

    sfn_models.stepfunctions_backends = stepfunctions_parser_backends
    machine = sfn_models.StateMachine

    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = cloudformation_json["Properties"]
        name = properties.get("StateMachineName", resource_name)
        backend = stepfunctions_parser_backends[account_id][region_name]
        tags = cfn_to_api_tags(properties.get("Tags", []))
        return backend.create_state_machine(
            name,
            _definition_from(properties, account_id) or "",
            properties.get("RoleArn", ""),
            tags=tags,
            sm_type=properties.get("StateMachineType"),
        )

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("StateMachineName", original_resource.name)
        backend = stepfunctions_parser_backends[account_id][region_name]
        if name != original_resource.name:
            new = create(cls, name, cloudformation_json, account_id, region_name)
            backend.delete_state_machine(original_resource.arn)
            return new
        return backend.update_state_machine(
            original_resource.arn,
            definition=_definition_from(properties, account_id),
            role_arn=properties.get("RoleArn"),
        )

    machine.create_from_cloudformation_json = classmethod(create)
    machine.update_from_cloudformation_json = classmethod(update)
    _keep_nulls_in_definitions()


_NULL = "\x00scones-json-null\x00"


def _swap(value: Any, old: Any, new: Any) -> Any:
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return new if value == old and type(value) is type(old) else value


def _keep_nulls_in_definitions() -> None:
    """moto's template cleaner drops keys whose value is null; in an ASL `Definition` a null is meaningful
    (`"ResultPath": null` keeps the state's input), so protect nulls inside it."""
    from moto.cloudformation import parsing

    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and isinstance(resource_json.get("Definition"), dict):
            protected = dict(resource_json, Definition=_swap(resource_json["Definition"], None, _NULL))
            cleaned = original(protected, resources_map)
            cleaned["Definition"] = _swap(cleaned["Definition"], _NULL, None)
            return cleaned
        return original(resource_json, resources_map)

    parsing.clean_json = clean_json


# --- 3. JSONata ------------------------------------------------------------------------------------------


def _patch_jsonata() -> None:
    import jsonata
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
        except Exception as exc:  # jsonata-python raises its own JException and plain errors
            raise moto_jsonata.JSONataException("JSONataError", str(exc)) from exc
        # jsonata-python returns list subclasses (sequences); hand moto plain JSON values.
        return None if result is None else json.loads(json.dumps(result))

    moto_jsonata._eval_jsonata = evaluate


# --- 4. execution names ----------------------------------------------------------------------------------


def _patch_execution_name() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution


# --- 5. the interpreter's boto3 clients ------------------------------------------------------------------


def _patch_interpreter_clients(port: int) -> None:
    import boto3
    from botocore.config import Config

    cache: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service)
        with lock:
            found = cache.get(key)
            if found is None:
                found = boto3.session.Session().client(
                    service,
                    region_name=region,
                    endpoint_url=f"http://127.0.0.1:{port}",  # the emulator calling itself
                    aws_access_key_id="ak",
                    aws_secret_access_key="sk",
                    config=Config(
                        parameter_validation=False,
                        retries={"max_attempts": 0, "total_max_attempts": 1},
                        connect_timeout=10,
                        read_timeout=910,
                        max_pool_connections=64,
                    ),
                )
                cache[key] = found
        return found

    # Modules that imported the function by name hold their own reference: import and rebind each.
    import importlib
    from pathlib import Path

    import moto

    root = Path(moto.__file__).parent
    for path in (root / "stepfunctions" / "parser").rglob("*.py"):
        if "boto_client_for" in path.read_text():
            name = ".".join(("moto", *path.relative_to(root).with_suffix("").parts))
            importlib.import_module(name).boto_client_for = boto_client_for


# --- 6. request dispatch --------------------------------------------------------------------------------


def _patch_dispatch_cache() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    cache: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            return cache[host]
        except KeyError:
            found = original(self, host)
            if found is not None:  # a miss may be answered otherwise later (it is inferred from the body)
                cache[host] = found
            return found

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host
