"""`scones clean` on the local target, against a local cloud of its own (clean stops the cloud it cleans).

What is left in the cloud is read at the moment clean stops it (a spy on `localcloud.down`), because an
in-memory cloud that is gone would prove nothing; then the processes are checked to be gone.
"""

from __future__ import annotations

import uuid

import pytest
from helpers import make_brightness_model, solid_png

from scones import cli, endpoint, localcloud, stacks, storage, workflow
from scones.core import aws, service, settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def alive(pid: int) -> bool:
    return service.alive(pid)


def leftovers(bucket: str, name_prefix: str, stack_name: str) -> dict:
    """Everything of the project's still in the cloud."""
    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    objects = [
        o["Key"]
        for prefix in storage.project_prefixes()
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    ]
    found_stacks = [
        s["StackName"]
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackName"] == stack_name and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    functions = [
        f["FunctionName"]
        for f in aws.client("lambda").list_functions()["Functions"]
        if f["FunctionName"].startswith(name_prefix)
    ]
    machines = [
        m["name"]
        for m in aws.client("stepfunctions").list_state_machines()["stateMachines"]
        if m["name"].startswith(name_prefix)
    ]
    kept = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="keep/").get("Contents", [])]
    return {"objects": objects, "stacks": found_stacks, "functions": functions, "machines": machines, "kept": kept}


@pytest.fixture
def own_cloud(tmp_path, monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv(settings.BUCKET, f"clean-{suffix}")
    monkeypatch.setenv(settings.STACK_NAME, f"c{suffix}-workflow")
    monkeypatch.setenv(settings.SCONES_ENDPOINT_NAME, f"ep-clean-{suffix}")
    monkeypatch.setenv(settings.ENDPOINT_PORT, "0")
    monkeypatch.setenv(settings.TARGET, "local")
    for name in (settings.AWS_ENDPOINT_URL, settings.SAGEMAKER_RUNTIME_URL):  # ours for now, restored after
        monkeypatch.delenv(name, raising=False)
    try:
        with localcloud.ephemeral("scones-clean-") as cloud:  # points AWS_ENDPOINT_URL at it, creates the bucket
            try:
                yield cloud, suffix
            finally:
                endpoint.stop(f"ep-clean-{suffix}", log=lambda _m: None)  # when clean did not
    finally:
        aws.reset()


def test_clean_leaves_no_stack_endpoint_worker_or_object(own_cloud, tmp_path, monkeypatch, capsys):
    cloud, suffix = own_cloud
    bucket, stack_name, name_prefix = f"clean-{suffix}", f"c{suffix}-workflow", f"c{suffix}-"
    model = make_brightness_model(tmp_path / "model")
    assert cli.main(["deploy", "--target", "local", "--model", str(model)]) == 0
    s3 = aws.client("s3")
    for key in ("data/test/bright.png", "models/job/output/model.tar.gz", "datacapture/x/1.jsonl", "keep/me.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=solid_png(230))
    outputs = stacks.outputs(stack_name)
    (row,) = workflow.run_single(
        aws.client("stepfunctions"), outputs["ClassifyImageStateMachineArn"], bucket, ["data/test/bright.png"]
    )
    assert row.status == "SUCCEEDED"  # the Lambdas have warm workers, the endpoint has captured the request
    workers = localcloud.health(cloud.url)["lambda_workers"]
    endpoint_pid = endpoint.record(settings.endpoint_name())["pid"]
    before = leftovers(bucket, name_prefix, stack_name)
    assert workers and alive(endpoint_pid) and alive(cloud.pid)
    assert before["stacks"] and len(before["functions"]) == 4 and len(before["machines"]) == 3
    assert {k.split("/")[0] for k in before["objects"]} == {"data", "models", "deploy", "datacapture"}

    seen = {}
    real_down = localcloud.down

    def spy(*args, **kwargs):
        if not seen:  # the first call is clean's; the fixture's own stop comes later
            health = localcloud.health(cloud.url) or {}
            seen.update(leftovers(bucket, name_prefix, stack_name), workers=health.get("lambda_workers"))
        return real_down(*args, **kwargs)

    monkeypatch.setattr(localcloud, "down", spy)
    assert cli.main(["clean"]) == 0
    printed = capsys.readouterr().out

    assert seen, "clean never stopped the local cloud"
    assert seen["stacks"] == [] and seen["functions"] == [] and seen["machines"] == [], seen
    assert seen["objects"] == [], seen["objects"]
    assert seen["kept"] == ["keep/me.png"]  # only the project's prefixes
    assert seen["workers"] == []  # deleting the functions retired their workers
    assert f"deleted stack {stack_name}" in printed and "stopped the local cloud" in printed
    assert not alive(endpoint_pid) and not endpoint.record(settings.endpoint_name())
    assert not alive(cloud.pid) and not localcloud.status().running
    assert not [pid for pid in workers if alive(pid)]
