"""The plux plugin LocalStack finds by entry point (namespace localstack.lambda.runtime_executor)."""

from __future__ import annotations

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin

NAME = "scones"  # LAMBDA_RUNTIME_EXECUTOR=scones selects it


class SubprocessExecutorPlugin(RuntimeExecutorPlugin):
    name = NAME

    def load(self, *args, **kwargs):
        from scones_localstack.executor import SubprocessRuntimeExecutor

        return SubprocessRuntimeExecutor
