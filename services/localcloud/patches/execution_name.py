"""Executions started without a name get a uuid, as on AWS (moto would name them `None`)."""

from __future__ import annotations

import uuid
from typing import Any

NAME = "execution-name"
WHAT = "executions started without a name get a uuid"
TOUCHES = ("moto.stepfunctions.parser.models:StepFunctionsParserBackend.start_execution",)


def apply(context: Any) -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution
