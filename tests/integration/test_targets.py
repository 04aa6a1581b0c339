"""What every target must agree on. Lambda errors are shaped as AWS shapes them on the embedded cloud and on
LocalStack host mode alike (both run handlers in services/localcloud/lambda_worker.py); the `aws` test runs
read-only against a real account with SCONES_TARGET=aws."""

from __future__ import annotations

import json
import uuid

import pytest

from scones.core import aws
from scones.deploy import package, stack
from scones.selftest import create_function

CODE = {
    "ok": "import os\ndef handler(event, context):\n    return {'event': event, 'mode': os.environ['MODE']}\n",
    "unhandled": "class LowConfidenceError(Exception):\n    pass\n"
    "def handler(event, context):\n    raise LowConfidenceError('confidence 0.51 < 0.93')\n",
    "timeout": "import time\ndef handler(event, context):\n    time.sleep(30)\n",
    "noimport": "import no_such_module\ndef handler(event, context):\n    return 1\n",
}


@pytest.fixture(scope="module")
def functions(local_cloud):
    lam, names = aws.client("lambda"), {}
    suffix = uuid.uuid4().hex[:8]
    for kind, code in CODE.items():
        name = names[kind] = f"shape-{kind}-{suffix}"
        create_function(
            name, {"lambda.py": code}, "lambda.handler", Timeout=1, Environment={"Variables": {"MODE": "warm"}}
        )
    yield names
    for name in names.values():
        lam.delete_function(FunctionName=name)


def invoke(name: str, event: dict) -> tuple[str | None, dict]:
    response = aws.client("lambda", read_timeout=60).invoke(FunctionName=name, Payload=json.dumps(event))
    return response.get("FunctionError"), json.loads(response["Payload"].read())


@pytest.mark.integration
@pytest.mark.localstack
def test_functions_become_active_and_run_warm_with_their_environment(functions):
    state = aws.client("lambda").get_function(FunctionName=functions["ok"])["Configuration"]["State"]
    assert state == "Active"  # LocalStack host mode: nothing downloaded, no Docker
    for i in range(3):
        assert invoke(functions["ok"], {"i": i}) == (None, {"event": {"i": i}, "mode": "warm"})


@pytest.mark.integration
@pytest.mark.localstack
def test_unhandled_import_and_timeout_errors_are_shaped_as_aws_does(functions):
    error, payload = invoke(functions["unhandled"], {})
    assert error == "Unhandled"
    assert payload["errorType"] == "LowConfidenceError" and payload["errorMessage"] == "confidence 0.51 < 0.93"
    assert any("raise LowConfidenceError" in line for line in payload["stackTrace"])
    error, payload = invoke(functions["noimport"], {})
    assert error == "Unhandled" and payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == "Unable to import module 'lambda': No module named 'no_such_module'"
    error, payload = invoke(functions["timeout"], {})
    assert error == "Unhandled" and payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert invoke(functions["ok"], {"after": "errors"})[0] is None  # other functions unaffected


@pytest.mark.aws
def test_template_validates_and_artifacts_package_on_aws():
    """Read-only on a real account: CloudFormation accepts template.yaml and every Lambda zip is small."""
    cfn = aws.client("cloudformation")
    result = cfn.validate_template(TemplateBody=stack.TEMPLATE.read_text())
    assert {p["ParameterKey"] for p in result["Parameters"]} >= {"CodeBucket", "EndpointName", "Labels"}
    assert "CAPABILITY_NAMED_IAM" in result.get("Capabilities", [])
    for artifact in package.artifacts("deploy/check").values():
        assert len(artifact.body) < 50 * 1024
    identity = aws.client("sts").get_caller_identity()
    assert json.dumps(identity["Account"]).strip('"').isdigit()
