"""Every request of `deploy --target aws` → redeploy → `clean --target aws`, as sent, against the service models.

The calls are those test_deploy_aws.py's chain made on the local cloud (recorded by the `aws_calls` fixture it
uses), the SageMaker SDK's own included (ModelTrainer's CreateTrainingJob through its client), plus the one
request no client sends here: the CreateProcessingJob that the Scheduler schedule's target starts every hour.
Run alone, this module drives the same chain itself once. moto accepts what AWS refuses (it checks no
lengths, patterns or enums), so the strict check (scones.deploy.validate) is what stands for AWS's front door.
"""

from __future__ import annotations

import pytest

from scones.deploy import validate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scheduled_jobs(calls: list) -> list[dict]:
    return [validate.scheduled_job(c.params) for c in calls if c.operation in ("CreateSchedule", "UpdateSchedule")]


def test_the_chain_was_recorded_whole(aws_chain_calls):
    operations = {c.operation for c in aws_chain_calls}
    # the SDK's own request, the stack, the schedule, and the clean's deletions are all there
    assert {"CreateTrainingJob", "CreateModel", "CreateEndpointConfig", "CreateEndpoint"} <= operations
    assert {"PutScalingPolicy", "CreateStack", "CreateSchedule", "PutRolePolicy"} <= operations
    assert {"DeleteScalingPolicy", "DeleteEndpoint", "DeleteStack", "DeleteRole", "DeleteBucket"} <= operations
    for training in [c for c in aws_chain_calls if c.operation == "CreateTrainingJob"]:
        assert training.origin.startswith("sagemaker."), training.origin  # sent by ModelTrainer, not by scones


def test_every_call_of_the_deploy_and_clean_chain_passes_the_service_model(aws_chain_calls):
    refused = []
    for call in aws_chain_calls:
        for problem in validate.problems(call.service, call.operation, call.params):
            refused.append(f"{call.service}.{call.operation} ({call.origin}): {problem}")
    assert refused == [], "\n".join(refused)


def test_the_scheduler_target_input_passes_as_create_processing_job(aws_chain_calls):
    jobs = scheduled_jobs(aws_chain_calls)
    assert jobs, "the chain made no schedule"
    for job in jobs:
        validate.check("sagemaker", "CreateProcessingJob", job)
