"""scones.storage on the local cloud: the project's objects are what its manifest lists and the folders named after
its stack, endpoints and jobs; everything else in the bucket, under the same top-level prefixes too, survives a
delete (issue #21: `scones clean` deleted whole `models/`, `deploy/` and `datacapture/`)."""

from __future__ import annotations

import json

import pytest

from scones import storage
from scones.core import aws

pytestmark = [pytest.mark.integration, pytest.mark.localstack]


def every_key(bucket: str) -> set[str]:
    pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.mark.parametrize(("data", "capture"), [("data", "datacapture"), ("staged/v2", "cap/x")])
def test_only_the_projects_objects_are_listed_and_deleted(local_cloud, unique, data, capture):
    bucket = f"own-{unique}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    manifest = {"files": {"train/a.png": "x", "train.lst": "x"}}
    ours = {
        f"{data}/manifest.json": json.dumps(manifest),
        f"{data}/train/a.png": "png",
        f"{data}/train.lst": "lst",
        "deploy/s-workflow/lambda.zip": "zip",
        f"{capture}/ep/AllTraffic/2025/01/01/00/00-00-000-x.jsonl": "{}",
        "monitoring/ep/report.json": "{}",
        "models/job-1/output/model.tar.gz": "tar",
        "models/s-train-1234abcd-2025-01-01-00-00-00/output/model.tar.gz": "tar",
    }
    foreign = {
        f"{data}/train/not-listed.png": "png",  # beside the staged data, in its folder, not in the manifest
        f"{data}/notes.txt": "txt",
        "deploy/other-workflow/lambda.zip": "zip",
        f"{capture}/other-endpoint/AllTraffic/x.jsonl": "{}",
        f"{capture}/ep-2/x.jsonl": "{}",  # a name that starts like ours
        "monitoring/other-endpoint/report.json": "{}",
        "models/other-job/output/model.tar.gz": "tar",
        "models/job-10/output/model.tar.gz": "tar",
        "models/other-train-1234abcd-2025/output/model.tar.gz": "tar",
        "elsewhere/file": "x",
    }
    for key, body in {**ours, **foreign}.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    names = storage.Names(
        data=data, capture=capture, stack="s-workflow", endpoints=("ep",), jobs=("job-1",), job_bases=("s-train",)
    )

    groups = storage.owned_objects(bucket, names)
    assert {k for g in groups for k in g.keys} == set(ours)
    assert sum(len(g.keys) for g in groups) == len(ours)  # no key in two groups
    assert storage.delete_keys(bucket, [k for g in groups for k in g.keys]) == len(ours)
    assert every_key(bucket) == set(foreign)
    assert storage.owned_objects(bucket, names) == []
