"""The strict request check (scones.deploy.validate): botocore's service models, including what botocore skips."""

from __future__ import annotations

import functools

import pytest

from scones.deploy import validate

ROLE = "arn:aws:iam::123456789012:role/scones-sagemaker"


def processing_job(**changes) -> dict:
    request = {
        "ProcessingJobName": "scones-monitor-1",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "123.dkr.ecr.us-east-1.amazonaws.com/x:1", "ContainerEntrypoint": ["sh"]},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
        },
    }
    request.update(changes)
    return request


def rules(service: str, operation: str, params: dict) -> list[tuple[str, str]]:
    return [(p.path, p.rule) for p in validate.problems(service, operation, params)]


def test_a_valid_request_passes():
    assert validate.problems("sagemaker", "create_processing_job", processing_job()) == []
    validate.check("sagemaker", "CreateProcessingJob", processing_job())  # API names work too


def test_an_entrypoint_string_of_257_characters_is_refused_though_botocore_lets_it_pass():
    # Given an entrypoint string one character over ContainerEntrypointString's maximum (256)
    app = {"ImageUri": "i", "ContainerEntrypoint": ["/bin/sh", "-c", "x" * 257]}
    request = processing_job(AppSpecification=app)
    # botocore's own validator has nothing to say
    from botocore.validate import ParamValidator

    shape = validate._model("sagemaker").operation_model("CreateProcessingJob").input_shape
    assert not ParamValidator().validate(request, shape).has_errors()
    # the strict check names the field
    assert rules("sagemaker", "create_processing_job", request) == [
        ("AppSpecification.ContainerEntrypoint[2]", "max-length")
    ]
    app["ContainerEntrypoint"][2] = "x" * 256
    assert rules("sagemaker", "create_processing_job", request) == []


def test_a_value_outside_the_enum_is_refused():
    request = processing_job()
    request["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.m5.huge"
    assert rules("sagemaker", "create_processing_job", request) == [
        ("ProcessingResources.ClusterConfig.InstanceType", "enum")
    ]


def test_too_many_list_members_and_map_entries_are_refused():
    entrypoint = {"ImageUri": "i", "ContainerEntrypoint": ["x"] * 101}  # at most 100
    env = {f"K{i}": "v" for i in range(101)}  # ProcessingEnvironmentMap: at most 100
    found = rules("sagemaker", "create_processing_job", processing_job(AppSpecification=entrypoint, Environment=env))
    assert ("AppSpecification.ContainerEntrypoint", "max-items") in found
    assert ("Environment", "max-entries") in found


def test_a_pattern_mismatch_and_a_numeric_maximum_are_refused():
    request = processing_job(ProcessingJobName="has_underscore", StoppingCondition={"MaxRuntimeInSeconds": 10**7})
    assert sorted(rules("sagemaker", "create_processing_job", request)) == [
        ("ProcessingJobName", "pattern"),
        ("StoppingCondition.MaxRuntimeInSeconds", "max"),
    ]


def test_java_style_patterns_are_compiled_not_skipped():
    # IAM's tag keys use \p{L}; Application Auto Scaling's PolicyName \p{Print}; SageMaker UTF-16 surrogate ranges
    tags = [{"Key": "projet-é", "Value": "scones"}]
    assert (
        validate.problems("iam", "create_role", {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "Tags": tags}) == []
    )
    bad = [{"Key": "a\u0007b", "Value": "x"}]  # a control character is in no class of the pattern
    assert rules("iam", "tag_role", {"RoleName": "r", "Tags": bad}) == [("Tags[0].Key", "pattern")]
    validate.SKIPPED_PATTERNS.clear()
    validate.problems(
        "application-autoscaling",
        "delete_scaling_policy",
        {
            "PolicyName": "p",
            "ServiceNamespace": "sagemaker",
            "ResourceId": "endpoint/e/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        },
    )
    assert not validate.SKIPPED_PATTERNS


def test_botocore_findings_come_first_and_unknown_operations_are_named():
    found = validate.problems("sagemaker", "create_processing_job", {"ProcessingJobName": "x"})
    assert found and all(p.rule == "botocore" for p in found)
    assert any("Missing required parameter" in p.detail for p in found)
    with pytest.raises(validate.InvalidRequestError, match="no operation"):
        validate.problems("sagemaker", "create_nonsense", {})
    with pytest.raises(validate.InvalidRequestError, match=r"ContainerEntrypoint\[0\]: max-length"):
        validate.check(
            "sagemaker",
            "create_processing_job",
            processing_job(AppSpecification={"ImageUri": "i", "ContainerEntrypoint": ["y" * 300]}),
        )


# --- the dry run's plan ------------------------------------------------------------------------------

SPECS = {
    "script-spot": dict(role=ROLE, spot=True),
    "builtin-serverless": dict(role=ROLE, algorithm="builtin", serverless=True),
    "given-model": dict(role="scones-sagemaker", model_uri="s3://b/models/j/output/model.tar.gz"),
    "rollout": dict(role=ROLE, model_uri="s3://b/models/j/output/model.tar.gz", rollout="linear:25:120"),
    "rollout-named-alarms": dict(
        role=ROLE, model_uri="s3://b/models/j/output/model.tar.gz", rollout="canary:10:300", rollout_alarms=("a", "b")
    ),
    "shadow": dict(role=ROLE, model_uri="s3://b/models/j/output/model.tar.gz", shadow_percent=20.0),
}


@functools.cache
def planned(name: str) -> list[tuple[str, str, dict]]:
    """(service, operation, request as sent) for every call of the plan, placeholders filled plausibly; the
    schedule's target request as operation "create_processing_job(scheduled)"."""
    pytest.importorskip("sagemaker", reason="image URIs come from the SDK's table: needs the aws extra")
    from scones.deploy import plan, stack
    from scones.deploy.spec import Spec

    steps = plan.build(Spec(**SPECS[name]))
    requests = validate.plan_requests(steps, stack.TEMPLATE.read_text())
    return [(s, op + ("(scheduled)" if what == "scheduled" else ""), p) for s, op, p, what in requests]


@pytest.mark.parametrize("name", SPECS)
def test_every_call_of_the_dry_run_plan_passes_the_service_model(name):
    assert len(planned(name)) > 12  # the whole plan, not an empty one
    refused = []
    for service, operation, params in planned(name):
        if operation in ("create_training_job", "create_processing_job(scheduled)"):
            continue  # checked below, one test each
        refused += [f"{service}.{operation}: {p}" for p in validate.problems(service, operation, params)]
    assert refused == [], "\n".join(refused)


@pytest.mark.parametrize("name", [n for n in SPECS if "model_uri" not in SPECS[n]])
def test_the_planned_training_request_passes(name):
    (request,) = [p for _s, op, p in planned(name) if op == "create_training_job"]
    validate.check("sagemaker", "create_training_job", request)


@pytest.mark.parametrize("name", SPECS)
def test_the_planned_scheduled_processing_job_passes(name):
    (job,) = [p for _s, op, p in planned(name) if op == "create_processing_job(scheduled)"]
    validate.check("sagemaker", "create_processing_job", job)


def test_placeholders_get_plausible_values_and_an_unknown_one_is_named():
    assert validate.plausible({"a": ["x-<account-id>"]}) == {"a": ["x-123456789012"]}
    with pytest.raises(validate.InvalidRequestError, match="<new thing>"):
        validate.plausible("name-<new thing>")


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (1, "ml.m5.large"),
        (360_000, "ml.m5.large"),  # 100 images/s for an hour
        (14_400_000, "ml.m5.large"),  # 2 vCPUs x 8,000/s x 900 s
        (14_400_001, "ml.m5.xlarge"),
        (40_000_000, "ml.m5.2xlarge"),
        (10**9, "ml.m5.4xlarge"),  # the largest, above every bracket
    ],
)
def test_the_monitoring_job_is_sized_from_its_record_count_and_passes_the_service_model(records, expected):
    from dataclasses import replace

    from scones.deploy import requests
    from scones.deploy.spec import Spec

    # given: a deployment whose monitoring run reads `records` capture records, its instance not chosen
    spec = replace(Spec(), monitor_records=records, role="scones-sagemaker")
    request = requests.processing_job_request(spec, "123456789012", "monitoring/abc/scones-src.tar.gz", lambda *_: "i")
    # then: the smallest instance that reads them in the budget, in a request the service model accepts
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == expected
    request["ProcessingJobName"] = "scones-monitor-1"  # the scheduler fills the execution id
    assert validate.problems("sagemaker", "create_processing_job", request) == []
    # a chosen instance wins
    chosen = requests.processing_job_request(
        replace(spec, monitor_instance_type="ml.m5.xlarge"), "123456789012", "m/a/s.tar.gz", lambda *_: "i"
    )
    assert chosen["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"
