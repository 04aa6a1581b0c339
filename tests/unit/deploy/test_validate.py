"""The strict request check (scones.deploy.validate): botocore's service models, including what botocore skips."""

from __future__ import annotations

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
