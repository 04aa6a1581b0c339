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


def test_lambda_tasks_catch_into_an_alert_and_the_single_flow_fails():
    single = json.loads((ROOT / "statemachine" / "classify_image.asl.json").read_text())
    for name in ("SerializeImageData", "ClassifyImage", "FilterInferences"):
        assert single["States"][name]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert single["States"]["Alert"]["Resource"] == "arn:aws:states:::sns:publish"
    assert single["States"]["Failed"]["Type"] == "Fail"


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
