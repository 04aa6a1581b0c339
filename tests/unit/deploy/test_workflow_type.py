"""`scones deploy --workflow-type express|standard`: the single-image machine's type, from the flag, else
$SCONES_WORKFLOW_TYPE, else standard, reaching template.yaml's WorkflowType parameter on every target."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scones.cli.parser import build_parser
from scones.core import settings
from scones.core.errors import UsageError
from scones.core.target import Target
from scones.deploy import flags, requests, run, stack
from scones.deploy.spec import Spec

TEMPLATE = yaml.safe_load((settings.ROOT / "template.yaml").read_text())


@pytest.fixture
def no_type(monkeypatch):
    monkeypatch.delenv(settings.WORKFLOW_TYPE, raising=False)


def parameters(*argv: str) -> dict[str, str]:
    return requests.stack_parameters(flags.spec_from_args(build_parser().parse_args(["deploy", *argv])))


def test_standard_by_default_express_by_flag_or_setting_and_the_flag_wins(no_type, monkeypatch):
    assert parameters("--target", "aws")["WorkflowType"] == "STANDARD"
    assert parameters("--target", "aws", "--workflow-type", "express")["WorkflowType"] == "EXPRESS"
    monkeypatch.setenv(settings.WORKFLOW_TYPE, "EXPRESS")  # case does not matter in the environment
    assert parameters("--target", "aws")["WorkflowType"] == "EXPRESS"
    assert parameters("--target", "aws", "--workflow-type", "standard")["WorkflowType"] == "STANDARD"


def test_every_value_sent_is_one_the_template_allows():
    allowed = TEMPLATE["Parameters"]["WorkflowType"]["AllowedValues"]
    for kind in settings.WORKFLOW_TYPES:
        assert requests.stack_parameters(Spec(workflow_type=kind))["WorkflowType"] in allowed
    assert set(requests.stack_parameters(Spec())) <= set(TEMPLATE["Parameters"])


def test_a_bad_setting_is_one_line_naming_it(no_type, monkeypatch):
    monkeypatch.setenv(settings.WORKFLOW_TYPE, "turbo")
    with pytest.raises(UsageError, match=f"{settings.WORKFLOW_TYPE}='turbo' is not one of standard, express"):
        parameters("--target", "aws")
    with pytest.raises(SystemExit):  # argparse refuses a bad flag value (one line, scones.cli.parser.Parser)
        build_parser().parse_args(["deploy", "--workflow-type", "turbo"])


def test_the_local_deploy_sends_the_chosen_type(no_type, monkeypatch, tmp_path):
    # given: a local deploy whose cloud, bucket, endpoint and stack are stand-ins
    sent = {}
    monkeypatch.setattr(run.localcloud, "health", lambda url: True)
    monkeypatch.setattr(run.aws, "ensure_bucket", lambda bucket, log: False)
    serving = run.Serving("scones-endpoint", "s3://b/m.tar.gz", Path(tmp_path), "http://127.0.0.1:8080")
    monkeypatch.setattr(run, "local_serving", lambda *a, **k: serving)
    monkeypatch.setattr(run.models, "labels_of", lambda path: ["bicycle", "motorcycle"])
    monkeypatch.setattr(stack, "deploy", lambda parameters, log: sent.update(parameters))
    local = Target("local", "us-east-1", "http://127.0.0.1:4566")
    # when: deployed with --workflow-type express
    run.deploy(local, "scones-unlimited", workflow_type="express", log=lambda _: None)
    # then: the stack's WorkflowType is EXPRESS; without the flag, STANDARD
    assert sent["WorkflowType"] == "EXPRESS"
    run.deploy(local, "scones-unlimited", log=lambda _: None)
    assert sent["WorkflowType"] == "STANDARD"


def test_each_type_names_its_machine_so_switching_replaces_it_under_a_new_name():
    """CloudFormation replaces a machine whose type changes, and cannot replace a named resource under the
    same name: the names differ by type."""
    machine = TEMPLATE["Resources"]["ClassifyImageStateMachine"]["Properties"]
    condition, express, standard = machine["StateMachineName"]["Fn::If"]
    assert condition == "IsExpress" and express != standard
    assert TEMPLATE["Conditions"]["IsExpress"] == {"Fn::Equals": [{"Ref": "WorkflowType"}, "EXPRESS"]}
