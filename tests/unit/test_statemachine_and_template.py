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
SUBSTITUTED = set(TEMPLATE["Resources"]["ClassifyImageStateMachine"]["Properties"]["DefinitionSubstitutions"])


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
