"""Every request of `deploy --target aws` → redeploy → `clean --target aws`, as sent, against the service models.

The calls are those test_deploy_aws.py's chain made on the local cloud (recorded by the `aws_calls` fixture it
uses), the SageMaker SDK's own included (ModelTrainer's CreateTrainingJob through its client), plus the one
request no client sends here: the CreateProcessingJob that the Scheduler schedule's target starts every hour.
Run alone, this module drives the same chain itself once. moto accepts what AWS refuses (it checks no
lengths, patterns or enums), so the strict check (scones.deploy.validate) is what stands for AWS's front door.
"""

from __future__ import annotations

import re

import pytest
from aws_recorder import Call

from scones.deploy import validate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAIN_TESTS = (  # the tests of test_deploy_aws.py that together make the chain
    "test_a_second_deploy_changes_nothing",
    "test_clean_leaves_nothing_tagged_and_a_second_clean_finds_nothing",
    "test_clean_purge_data_deletes_the_objects_and_the_bucket_it_made",
)
# Problems other branches of #20 fix: (operation, path regex, rule) → the branch. Each has its own xfail test
# below, strict, so that the fix shows as XPASS and the entry is removed at merge.
PROCJOB = "branch procjob: the monitoring job's shell command is 296 characters, ContainerEntrypointString allows 256"
KNOWN = {
    ("CreateProcessingJob", r"AppSpecification\.ContainerEntrypoint\[2\]", "max-length"): PROCJOB,
}


def _known(operation: str, problem: validate.Problem) -> bool:
    return any(
        op == operation and re.fullmatch(path, problem.path) and rule == problem.rule for op, path, rule in KNOWN
    )


def drive_chain(cifar_tarball, data_dir) -> None:
    """test_deploy_aws.py's chain, once, when that module did not run in this session."""
    import os
    import uuid

    import test_deploy_aws as chain

    from scones.core import aws, settings
    from scones.core.errors import NotReadyError
    from scones.deploy import aws_clean, plan, sagemaker

    suffix = uuid.uuid4().hex[:8]
    os.environ[settings.DATA_DIR] = str(data_dir)
    try:
        spec = plan.Spec(
            stack=f"s{suffix}-workflow",
            bucket=f"s-{suffix}",
            endpoint=f"sep-{suffix}",
            region=settings.region(),
            role=chain.make_role(f"sms-{suffix}"),
            spot=True,
            source=str(cifar_tarball),
        )
        with pytest.raises(NotReadyError):
            sagemaker.deploy(spec, poll_s=0.01, log=lambda _m: None)
        sm = aws.client("sagemaker")
        (job,) = sm.list_training_jobs(NameContains=plan.training_base_name(spec))["TrainingJobSummaries"]
        artifact = sm.describe_training_job(TrainingJobName=job["TrainingJobName"])["ModelArtifacts"]
        bucket, key = artifact["S3ModelArtifacts"][5:].split("/", 1)
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=chain.fake_artifact())
        for _ in range(2):
            sagemaker.deploy(spec, poll_s=0.01, log=lambda _m: None)
        assert aws_clean.clean(spec, poll_s=0.01, log=lambda _m: None).left == []
        assert aws_clean.clean(spec, purge_data=True, poll_s=0.01, log=lambda _m: None).left == []
    finally:
        os.environ.pop(settings.DATA_DIR, None)


@pytest.fixture(scope="module")
def chain_calls(aws_calls, local_cloud, cifar_tarball, tmp_path_factory) -> list[Call]:
    """The calls scones (and the SDK it drives) made in the chain; a test's own checks are left out."""
    recorded = [c for c in aws_calls.calls if "test_deploy_aws.py::" in c.nodeid and c.by_scones]
    ran = {c.nodeid.rsplit("::", 1)[-1] for c in recorded}
    if not set(CHAIN_TESTS) <= ran:
        start = len(aws_calls.calls)
        drive_chain(cifar_tarball, tmp_path_factory.mktemp("data"))
        recorded = [c for c in aws_calls.calls[start:] if c.by_scones]
    return recorded


def scheduled_jobs(calls: list[Call]) -> list[dict]:
    return [validate.scheduled_job(c.params) for c in calls if c.operation in ("CreateSchedule", "UpdateSchedule")]


def test_the_chain_was_recorded_whole(chain_calls):
    operations = {c.operation for c in chain_calls}
    # the SDK's own request, the stack, the schedule, and the clean's deletions are all there
    assert {"CreateTrainingJob", "CreateModel", "CreateEndpointConfig", "CreateEndpoint"} <= operations
    assert {"PutScalingPolicy", "CreateStack", "CreateSchedule", "PutRolePolicy"} <= operations
    assert {"DeleteScalingPolicy", "DeleteEndpoint", "DeleteStack", "DeleteRole", "DeleteBucket"} <= operations
    for training in [c for c in chain_calls if c.operation == "CreateTrainingJob"]:
        assert training.origin.startswith("sagemaker."), training.origin  # sent by ModelTrainer, not by scones


def test_every_call_of_the_deploy_and_clean_chain_passes_the_service_model(chain_calls):
    refused = []
    for call in chain_calls:
        for problem in validate.problems(call.service, call.operation, call.params):
            if not _known(call.operation, problem):
                refused.append(f"{call.service}.{call.operation} ({call.origin}): {problem}")
    assert refused == [], "\n".join(refused)


def test_the_scheduler_target_input_is_a_create_processing_job_request_apart_from_known_problems(chain_calls):
    jobs = scheduled_jobs(chain_calls)
    assert jobs, "the chain made no schedule"
    for job in jobs:
        problems = validate.problems("sagemaker", "CreateProcessingJob", job)
        assert [str(p) for p in problems if not _known("CreateProcessingJob", p)] == []


@pytest.mark.xfail(strict=True, reason=PROCJOB)
def test_the_scheduler_target_input_passes_as_create_processing_job(chain_calls):
    for job in scheduled_jobs(chain_calls):
        validate.check("sagemaker", "CreateProcessingJob", job)
