"""`scones clean` on the local target, against a local cloud of its own (clean stops the cloud it cleans).

It lists what it will delete, grouped with counts, and asks (--yes answers; no terminal and no --yes: refused in
one line). It deletes only the project's own objects (scones.storage): other stacks', endpoints' and jobs' folders
and keys the staged manifest does not list stay (issue #21).

What is left in the cloud is read at the moment clean stops it (a spy on `localcloud.down`), because an
in-memory cloud that is gone would prove nothing; then the processes are checked to be gone.
"""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import make_brightness_model, solid_png

from scones import cli, endpoint, localcloud, stacks, workflow
from scones.core import aws, service, settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def alive(pid: int) -> bool:
    return service.alive(pid)


def leftovers(bucket: str, name_prefix: str, stack_name: str) -> dict:
    """Everything of the project's still in the cloud."""
    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
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
    return {"objects": objects, "stacks": found_stacks, "functions": functions, "machines": machines}


FOREIGN = (  # under the project's top-level prefixes, but another stack's, endpoint's or job's, or not staged
    "keep/me.png",
    "data/test/not-in-the-manifest.png",
    "models/other-job/output/model.tar.gz",
    "datacapture/other-endpoint/AllTraffic/1.jsonl",
    "deploy/other-workflow/lambdas.zip",
    "monitoring/other-endpoint/report.json",
)


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
    for key in ("data/test/bright.png", "models/job/output/model.tar.gz", *FOREIGN):
        s3.put_object(Bucket=bucket, Key=key, Body=solid_png(230))
    manifest = {"classes": ["bicycle", "motorcycle"], "files": {"test/bright.png": "md5"}}
    s3.put_object(Bucket=bucket, Key="data/manifest.json", Body=json.dumps(manifest).encode())  # as stage leaves it
    (settings.state_dir() / "jobs" / "job").mkdir(parents=True)  # `scones train --job-name job` ran here
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
    assert {k.split("/")[0] for k in before["objects"]} == {
        "data",
        "models",
        "deploy",
        "datacapture",
        "keep",
        "monitoring",
    }

    seen = {}
    real_down = localcloud.down

    def spy(*args, **kwargs):
        if not seen:  # the first call is clean's; the fixture's own stop comes later
            health = localcloud.health(cloud.url) or {}
            seen.update(leftovers(bucket, name_prefix, stack_name), workers=health.get("lambda_workers"))
        return real_down(*args, **kwargs)

    monkeypatch.setattr(localcloud, "down", spy)
    assert cli.main(["clean"]) == 2  # no terminal to ask on, no --yes: refused, nothing deleted
    refused = capsys.readouterr()
    assert "not deleting without confirmation" in refused.err and "scones clean --yes" in refused.err
    assert sorted(leftovers(bucket, name_prefix, stack_name)["objects"]) == sorted(before["objects"])
    assert f"stack {stack_name}" in refused.out and f"s3://{bucket}/deploy/{stack_name}/" in refused.out
    assert f"s3://{bucket}/data/  (staged data" in refused.out and "1 objects" in refused.out  # grouped, counted

    assert cli.main(["clean", "--yes"]) == 0
    printed = capsys.readouterr().out

    assert seen, "clean never stopped the local cloud"
    assert seen["stacks"] == [] and seen["functions"] == [] and seen["machines"] == [], seen
    assert sorted(seen["objects"]) == sorted(FOREIGN)  # only the project's own objects went
    assert seen["workers"] == []  # deleting the functions retired their workers
    assert f"deleted stack {stack_name}" in printed and "stopped the local cloud" in printed
    assert not alive(endpoint_pid) and not endpoint.record(settings.endpoint_name())
    assert not alive(cloud.pid) and not localcloud.status().running
    assert not [pid for pid in workers if alive(pid)]
