"""template.yaml declares each Lambda's log group, so the stack deletes it and its logs expire."""

from __future__ import annotations

from pathlib import Path

import yaml

TEMPLATE = yaml.safe_load((Path(__file__).resolve().parents[2] / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, dict]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def test_every_function_has_its_log_group_under_the_name_lambda_writes_to():
    functions, groups = of_type("AWS::Lambda::Function"), of_type("AWS::Logs::LogGroup")
    assert len(functions) == 4
    for name, function in functions.items():
        group_name = function.get("DependsOn")  # the group exists before the function and outlives it
        assert group_name in groups, f"{name} depends on no log group"
        group = groups[group_name]["Properties"]
        function_name = function["Properties"]["FunctionName"]["Fn::Sub"]
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{function_name}"}, name
        assert 1 <= group["RetentionInDays"] <= 90, name  # they expire; CloudWatch's allowed values include 30
    express = {n for n, g in groups.items() if g.get("Condition") == "IsExpress"}  # an Express machine's runs
    assert express == {"ClassifyImageLogGroup"}
    assert len(groups) == len(functions) + len(express)  # no other log group without its function
