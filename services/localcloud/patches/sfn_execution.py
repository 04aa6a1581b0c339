"""Step Functions executions run their ASL (moto's parser backend) instead of only being recorded."""

from __future__ import annotations

from typing import Any

NAME = "sfn-execution"
WHAT = "Step Functions executions run their ASL"
TOUCHES = ("moto.core.config:default_user_config",)


def apply(context: Any) -> None:
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
