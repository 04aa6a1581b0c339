"""The Step Functions interpreter's own boto3 clients are cached and talk to 127.0.0.1.

moto builds a new client for every Task (~30 ms each). The modules that imported `boto_client_for` by name
hold their own reference, so each is listed in TOUCHES and rebound.
"""

from __future__ import annotations

import threading
from typing import Any

from scones.core import settings

NAME = "sfn-clients"
WHAT = "the Step Functions interpreter reuses one boto3 client per service"
_PARSER = "moto.stepfunctions.parser.asl"
_TASK = f"{_PARSER}.component.state.exec.state_task"
_MAP = f"{_PARSER}.component.state.exec.state_map"
MODULES = (
    f"{_PARSER}.utils.boto_client",
    f"{_TASK}.lambda_eval_utils",
    *(
        f"{_TASK}.service.state_task_service_{name}"
        for name in ("aws_sdk", "batch", "dynamodb", "ecs", "events", "glue", "sfn", "sns", "sqs", "unsupported")
    ),
    f"{_MAP}.item_reader.eval.resource_eval_s3",
    f"{_MAP}.result_writer.resource_eval.resource_eval_s3",
)
TOUCHES = tuple(f"{module}:boto_client_for" for module in MODULES)
STATS = {"created": 0, "calls": 0}


def apply(context: Any) -> None:
    import importlib

    import boto3
    from botocore.config import Config

    cache: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service)
        with lock:
            STATS["calls"] += 1
            found = cache.get(key)
            if found is None:
                STATS["created"] += 1
                found = boto3.session.Session().client(
                    service,
                    region_name=region,
                    endpoint_url=f"http://127.0.0.1:{context.port}",  # the emulator calling itself
                    # the local cloud's own credentials: what SCONES_VERIFY_SIGNATURES=1 checks
                    aws_access_key_id=settings.FAKE_CREDENTIALS[settings.AWS_ACCESS_KEY_ID],
                    aws_secret_access_key=settings.FAKE_CREDENTIALS[settings.AWS_SECRET_ACCESS_KEY],
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

    for module in MODULES:
        importlib.import_module(module).boto_client_for = boto_client_for
