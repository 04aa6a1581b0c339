"""Static checks of statemachine/*.asl.json and template.yaml."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from scones.graph import edges

ROOT = Path(__file__).resolve().parents[2]
MACHINES = sorted((ROOT / "statemachine").glob("*.asl.json"))
TEMPLATE = yaml.safe_load((ROOT / "template.yaml").read_text())
SUBSTITUTED = {
    name
    for resource in TEMPLATE["Resources"].values()
    if resource["Type"] == "AWS::StepFunctions::StateMachine"
    for name in resource["Properties"].get("DefinitionSubstitutions", {})
}


def all_state_sets(definition: dict):
    yield definition
    for state in definition["States"].values():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from all_state_sets(processor)


@pytest.mark.parametrize("path", MACHINES, ids=lambda p: p.name)
def test_every_state_is_reachable(path):
    for machine in all_state_sets(json.loads(path.read_text())):
        seen, todo = set(), [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo += [dst for src, dst, _ in edges(machine["States"]) if src == name]
        assert seen == set(machine["States"]), f"unreachable: {set(machine['States']) - seen}"


@pytest.mark.parametrize("path", MACHINES, ids=lambda p: p.name)
def test_only_placeholders_no_arns_and_a_retry_on_every_task(path):
    text = path.read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= SUBSTITUTED
    assert not re.search(r"arn:aws:(lambda|sns|sagemaker)|\d{12}", text)
    for machine in all_state_sets(json.loads(text)):
        for name, state in machine["States"].items():
            if state["Type"] == "Task":
                assert state.get("Retry"), f"{path.name}: task {name} has no Retry"


SNS_PUBLISH = "arn:aws:states:::sns:publish"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


def path_from(states: dict, name: str) -> list[dict]:
    """The states visited from `name` by following Next until End or a Fail (no Choice in these paths)."""
    path = []
    while True:
        state = states[name]
        path.append(state)
        if state["Type"] in ("Fail", "Succeed") or state.get("End"):
            return path
        name = state["Next"]


def test_lambda_tasks_catch_into_an_alert_and_the_single_flow_fails():
    single = json.loads((ROOT / "statemachine" / "classify_image.asl.json").read_text())
    lambda_tasks = [n for n, s in single["States"].items() if s.get("Resource") == LAMBDA_INVOKE]
    assert lambda_tasks == ["SerializeImageData", "ClassifyImage", "FilterInferences"]
    for name in lambda_tasks:
        (catch,) = single["States"][name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        after = path_from(single["States"], catch["Next"])
        assert [s.get("Resource") for s in after].count(SNS_PUBLISH) == 1, name  # the catch leads to one alert
        assert after[-1]["Type"] == "Fail" and after[-1]["ErrorPath"] == "$.error.Error"  # then fails as the step


def test_every_item_failure_in_the_batch_publishes_its_own_alert():
    batch = json.loads((ROOT / "statemachine" / "classify_batch.asl.json").read_text())
    states = batch["States"]["ClassifyEach"]["ItemProcessor"]["States"]
    lambda_tasks = [n for n, s in states.items() if s.get("Resource") == LAMBDA_INVOKE]
    assert len(lambda_tasks) == 3
    for name in lambda_tasks:
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        after = path_from(states, catch["Next"])
        assert [s.get("Resource") for s in after].count(SNS_PUBLISH) == 1, name
        assert after[-1].get("End") and "Fail" not in [s["Type"] for s in after]  # the item ends, the batch goes on
    assert SNS_PUBLISH not in [s.get("Resource") for s in path_from(states, "SerializeImageData")]  # success: none


def test_iam_policies_name_no_wildcard_action():
    for name, resource in TEMPLATE["Resources"].items():
        for policy in resource.get("Properties", {}).get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not [a for a in actions if "*" in a], f"{name}: {actions}"


def test_everything_taggable_is_tagged():
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] != "AWS::SNS::Subscription":  # subscriptions take no tags
            tags = {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}
            assert tags.get("project") == "scones", name


def test_both_machines_get_the_same_substitutions():
    resources = TEMPLATE["Resources"]
    assert (
        resources["ClassifyImageStateMachine"]["Properties"]["DefinitionSubstitutions"]
        == resources["ClassifyBatchStateMachine"]["Properties"]["DefinitionSubstitutions"]
    )


def test_the_drift_alarm_watches_scones_monitors_metric_and_notifies_the_alert_topic():
    from scones.monitoring import monitor

    alarm = TEMPLATE["Resources"]["DriftAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (monitor.NAMESPACE, monitor.DRIFT_METRIC)
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": {"Ref": "EndpointName"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1


def test_the_batch_items_retry_each_lambda_as_the_single_machine_does():
    """The Map's item tasks carry the single machine's retriers, transient Lambda.* errors included (issue #21:
    removing them from the batch machine went unnoticed). tests/integration/test_statemachine_errors.py runs both."""
    single = json.loads((ROOT / "statemachine" / "classify_image.asl.json").read_text())["States"]
    batch = json.loads((ROOT / "statemachine" / "classify_batch.asl.json").read_text())
    items = batch["States"]["ClassifyEach"]["ItemProcessor"]["States"]
    lambda_tasks = [n for n, s in single.items() if s.get("Resource") == LAMBDA_INVOKE]
    assert lambda_tasks and [n for n, s in items.items() if s.get("Resource") == LAMBDA_INVOKE] == lambda_tasks
    for name in lambda_tasks:
        assert items[name]["Retry"] == single[name]["Retry"], name
        transient = [r for r in items[name]["Retry"] if "Lambda.ServiceException" in r["ErrorEquals"]]
        assert transient and transient[0]["MaxAttempts"] >= 2, name
        assert {"Lambda.TooManyRequestsException", "Lambda.SdkClientException"} <= set(transient[0]["ErrorEquals"])


# --- the backfill: a Distributed Map over an S3 prefix ---------------------------------------------------------

PREFIX_MACHINE = ROOT / "statemachine" / "classify_prefix.asl.json"


def prefix_map() -> dict:
    return json.loads(PREFIX_MACHINE.read_text())["States"]["ClassifyPrefix"]


def test_the_backfill_is_a_distributed_map_over_an_s3_listing_with_express_children():
    state = prefix_map()
    assert state["Type"] == "Map"
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert state["ItemReader"]["Parameters"] == {"Bucket.$": "$.s3_bucket", "Prefix.$": "$.prefix"}
    assert state["ItemReader"]["ReaderConfig"] == {"MaxItemsPath": "$.limit"}  # scones invoke --limit
    assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}


def test_the_backfill_batches_keys_bounds_concurrency_tolerates_some_failures_and_writes_results_to_s3():
    state = prefix_map()
    assert state["ItemBatcher"] == {
        "MaxItemsPerBatchPath": "$.batch_size",
        "BatchInput": {"s3_bucket.$": "$.s3_bucket"},
    }
    assert 1 <= state["MaxConcurrency"] <= 40  # the endpoint, not Step Functions, is the bottleneck
    assert 0 < state["ToleratedFailurePercentage"] < 100
    assert state["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket.$": "$.s3_bucket", "Prefix.$": "$.results_prefix"},
    }
    assert state["ResultPath"] == "$.map_run"  # the output names the manifest, not every result (256 KiB cap)


def test_the_backfill_child_calls_one_lambda_with_the_other_machines_retries_and_alerts_on_failed_images():
    single = json.loads((ROOT / "statemachine" / "classify_image.asl.json").read_text())["States"]
    child = prefix_map()["ItemProcessor"]["States"]
    (task,) = [s for s in child.values() if s.get("Resource") == LAMBDA_INVOKE]
    assert task["Parameters"]["FunctionName"] == "${ClassifyBatchFunctionArn}"
    assert task["Retry"] == single["ClassifyImage"]["Retry"]  # EndpointUnavailableError, then Lambda.*
    assert "Catch" not in task  # an unavailable endpoint fails the child: the Map Run counts it
    choice = child[task["Next"]]
    assert choice["Type"] == "Choice" and choice["Choices"][0]["Variable"] == "$.alerts[0]"
    assert child[choice["Choices"][0]["Next"]]["Resource"] == SNS_PUBLISH


def test_a_failed_backfill_alerts_then_fails():
    state = prefix_map()
    (catch,) = state["Catch"]
    after = path_from(json.loads(PREFIX_MACHINE.read_text())["States"], catch["Next"])
    assert [s.get("Resource") for s in after].count(SNS_PUBLISH) == 1
    assert after[-1]["Type"] == "Fail"


def test_the_backfill_machine_its_lambda_and_the_workflow_type_are_in_the_template_and_its_outputs():
    from scones import stacks
    from scones.deploy import package

    resources, outputs = TEMPLATE["Resources"], TEMPLATE["Outputs"]
    machine = resources["ClassifyPrefixStateMachine"]["Properties"]
    assert machine["DefinitionS3Location"]["Key"] == {"Ref": "PrefixDefinitionKey"}
    assert set(machine["DefinitionSubstitutions"]) == {"ClassifyBatchFunctionArn", "AlertTopicArn"}
    assert {stacks.SINGLE, stacks.BATCH, stacks.PREFIX, stacks.WORKFLOW_TYPE} <= set(outputs)
    # every artifact `scones deploy` uploads is a template parameter
    assert set(package.FUNCTIONS) | set(package.DEFINITIONS) <= set(TEMPLATE["Parameters"])
    assert package.DEFINITIONS["PrefixDefinitionKey"] == PREFIX_MACHINE.name
    assert package.FUNCTIONS["ClassifyBatchCodeKey"] == "classify_batch"
    # the state machine role may list and read the data bucket, write results, and run its children
    statements = resources["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "states:StartExecution"} <= actions


def test_the_single_machine_is_standard_by_default_and_express_on_request():
    parameter = TEMPLATE["Parameters"]["WorkflowType"]
    assert parameter["Default"] == "STANDARD" and parameter["AllowedValues"] == ["STANDARD", "EXPRESS"]
    machine = TEMPLATE["Resources"]["ClassifyImageStateMachine"]["Properties"]
    assert machine["StateMachineType"] == {"Ref": "WorkflowType"}
    assert machine["LoggingConfiguration"]["Fn::If"][0] == "IsExpress"  # Express keeps no history: logs instead


@pytest.mark.parametrize("path", MACHINES, ids=lambda p: p.name)
def test_each_definition_passes_the_step_functions_service_model(path):
    from scones.deploy import validate

    text = path.read_text()
    for operation, params in (
        (
            "create_state_machine",
            {"name": "scones-x", "definition": text, "roleArn": "arn:aws:iam::123456789012:role/r"},
        ),
        ("validate_state_machine_definition", {"definition": text, "type": "STANDARD"}),
    ):
        assert validate.problems("stepfunctions", operation, params) == []


@pytest.mark.parametrize("path", MACHINES, ids=lambda p: p.name)
def test_each_definition_passes_asl_validator_when_it_is_installed(path, tmp_path):
    """npm's asl-validator (4.0.0 was used here: `npm install asl-validator`, then put its bin on PATH)."""
    import shutil
    import subprocess

    validator = shutil.which("asl-validator")
    if validator is None:
        pytest.skip("asl-validator is not installed (npm install asl-validator)")
    filled = re.sub(r"\$\{(\w+)\}", "arn:aws:lambda:us-east-1:123456789012:function:placeholder", path.read_text())
    filled = filled.replace(
        '"arn:aws:lambda:us-east-1:123456789012:function:placeholder"',
        '"arn:aws:lambda:us-east-1:123456789012:function:f"',
    )
    (tmp_path / "d.json").write_text(filled)
    done = subprocess.run([validator, "--json-path", str(tmp_path / "d.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
