"""One test per patch of the local cloud, each named after the behaviour the patch gives."""

from __future__ import annotations

import json

import pytest

from scones import localcloud, selftest
from scones.core import aws
from scones.workflow import wait

pytestmark = pytest.mark.integration


def run_machine(definition: dict, payload: dict, name: str | None = None) -> dict:
    sfn = aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"patch-{json.dumps(definition).__hash__() & 0xFFFFFF:x}-{id(payload):x}",
        definition=json.dumps(definition),
        roleArn=selftest.ensure_role(),
    )["stateMachineArn"]
    try:
        kwargs = {"name": name} if name else {}
        started = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload), **kwargs)
        return wait(sfn, started["executionArn"])
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)


PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ran": True}, "End": True}}}


def test_sfn_execution_runs_the_asl(local_cloud):
    done = run_machine(PASS, {})
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"ran": True}


def test_lambda_subprocess_runs_the_real_zip_in_a_warm_worker(local_cloud, unique):
    name = selftest._lambda(f"patch-{unique}")
    try:
        body = json.loads(aws.client("lambda").invoke(FunctionName=name, Payload=b'{"n": 41}')["Payload"].read())
        assert body == {"n": 42, "greeting": "scones"}
        assert localcloud.health(local_cloud)["lambda_workers"]  # a worker process stays warm
    finally:
        aws.client("lambda").delete_function(FunctionName=name)


def test_sfn_cloudformation_state_machines_execute_with_substitutions_and_nulls(local_cloud, unique):
    selftest.check_cloudformation(unique)  # raises SelfTestError naming what differs


def test_jsonata_expressions_evaluate(local_cloud):
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "S",
        "States": {"S": {"Type": "Pass", "Output": {"max": "{% $max($states.input.v) %}"}, "End": True}},
    }
    done = run_machine(definition, {"v": [3, 9, 4]})
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"max": 9}


def test_execution_name_an_unnamed_execution_gets_a_uuid(local_cloud):
    done = run_machine(PASS, {})
    name = done["executionArn"].rsplit(":", 1)[-1]
    assert name != "None" and len(name) == 36 and name.count("-") == 4


def test_sfn_clients_the_interpreter_reuses_one_client_per_service(local_cloud, unique):
    name = selftest._lambda(f"clients-{unique}")
    arn = aws.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": arn}}
    definition = {"StartAt": "A", "States": {"A": {**task, "Next": "B"}, "B": {**task, "End": True}}}
    try:
        run_machine(definition, {})  # the first execution may create the lambda client
        before = localcloud.health(local_cloud)["sfn_clients"]
        assert run_machine(definition, {})["status"] == "SUCCEEDED"
        after = localcloud.health(local_cloud)["sfn_clients"]
    finally:
        aws.client("lambda").delete_function(FunctionName=name)
    assert after["calls"] - before["calls"] >= 2
    assert after["created"] == before["created"]  # two Task calls, no new client


def test_dispatch_cache_answers_repeated_hosts_from_the_cache(local_cloud):
    before = localcloud.health(local_cloud)["dispatch_cache"]
    for _ in range(3):
        aws.client("s3").list_buckets()
    after = localcloud.health(local_cloud)["dispatch_cache"]
    assert after["hits"] >= before["hits"] + 3


def test_a_distributed_map_lists_a_prefix_batches_runs_express_children_and_writes_results(local_cloud, unique):
    """sfn-map-definition, sfn-item-reader, sfn-item-batcher, sfn-result-writer: 2,100 keys (three pages of the
    listing), MaxItems, batches of the size asked, EXPRESS children, result files, a Map Run past its tolerance
    (broken by hand once each: the batcher not closing batches, the reader stopping at 1,000 keys)."""
    selftest.check_distributed_map(unique[:8])  # raises SelfTestError naming the patch


def test_cloudwatch_percentiles_are_answered_from_the_stored_values(local_cloud, unique):
    selftest.check_percentiles(unique)  # raises SelfTestError naming what differs


def test_a_percentile_is_the_nearest_rank_and_none_without_values():
    from services.localcloud.patches.cloudwatch_percentiles import percentile

    assert percentile([float(v) for v in range(1, 101)], "p95") == 95.0
    assert percentile([3.0, 1.0, 2.0], "p50") == 2.0 and percentile([5.0], "p99.9") == 5.0
    assert percentile([], "p95") is None and percentile([1.0], "Sum") is None


def test_sfn_sync_execution_answers_express_at_once_and_refuses_standard(local_cloud, unique):
    selftest.check_sync_execution(unique)  # raises SelfTestError naming what differs


def test_sagemaker_update_endpoint_moves_an_endpoint_to_another_configuration(local_cloud, unique):
    selftest.check_update_endpoint(unique)  # raises SelfTestError naming what differs
