"""Staging to S3 on the local cloud: layout, idempotence, stale objects (only what a manifest listed: issue #21),
bad buckets, interrupted uploads."""

from __future__ import annotations

import pytest

from scones.core import aws
from scones.data import staged as staged_data
from scones.data import staging

pytestmark = [pytest.mark.integration, pytest.mark.localstack]


@pytest.fixture
def staged(cifar_tarball, tmp_path):
    source = staging.resolve_source(str(cifar_tarball), ["bicycle", "motorcycle"])
    workdir = tmp_path / "staged"
    return workdir, staging.build(source, ["bicycle", "motorcycle"], workdir, "none")  # upload mechanics only


@pytest.fixture
def bucket(local_cloud, unique):
    name = f"stage-{unique}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


def keys(bucket: str, prefix: str) -> dict[str, str]:
    found = {}
    for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix) + 1 :]] = obj["ETag"].strip('"')
    return found


def test_upload_layout_and_idempotent_rerun(staged, bucket):
    workdir, manifest = staged
    report = staging.upload(workdir, manifest, bucket, "data")
    assert report.uploaded == 18 and report.deleted == 0
    remote = keys(bucket, "data")
    assert set(remote) == set(manifest["files"]) | {"manifest.json"}
    assert sum(k.startswith("train/") for k in remote) == 12 and sum(k.startswith("test/") for k in remote) == 4
    assert all(remote[k] == md5 for k, md5 in manifest["files"].items())
    lst = aws.client("s3").get_object(Bucket=bucket, Key="data/train.lst")["Body"].read().decode()
    assert lst.splitlines()[0] == "0\t0\tbicycle_s_000000.png"

    again = staging.upload(workdir, manifest, bucket, "data")
    assert (again.uploaded, again.deleted, again.unchanged) == (0, 0, 18)


def test_only_changed_objects_are_sent(staged, bucket):
    workdir, manifest = staged
    staging.upload(workdir, manifest, bucket, "data")
    aws.client("s3").delete_object(Bucket=bucket, Key="data/train/bicycle_s_000003.png")
    aws.client("s3").put_object(Bucket=bucket, Key="data/test/motorcycle_s_001000.png", Body=b"tampered")
    report = staging.upload(workdir, manifest, bucket, "data")
    assert report.uploaded == 2


FOREIGN = ("train/someone_elses.png", "test/motorcycle_s_999999.png", "notes.txt", "train.lst.bak", "other/x.png")


@pytest.mark.parametrize("prefix", ["data", "staged/v2", "a/b/c"])
def test_deselected_images_are_deleted_and_nothing_the_manifest_did_not_list(
    staged, bucket, cifar_tarball, tmp_path, prefix
):
    workdir, manifest = staged
    staging.upload(workdir, manifest, bucket, prefix)
    for rel in FOREIGN:  # beside the staged data, in its folders too, with a staged-looking name even
        aws.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=b"not ours")
    source = staging.resolve_source(str(cifar_tarball), ["bicycle"])
    only_bikes = staging.build(source, ["bicycle"], tmp_path / "bikes", "none")
    report = staging.upload(tmp_path / "bikes", only_bikes, bucket, prefix)
    assert report.deleted == 8  # the previous manifest's motorcycle files
    remote = keys(bucket, prefix)
    assert set(remote) == set(only_bikes["files"]) | {"manifest.json"} | set(FOREIGN)


def test_an_interrupted_upload_still_knows_its_stale_files_next_time(
    staged, bucket, cifar_tarball, tmp_path, monkeypatch
):
    workdir, manifest = staged
    staging.upload(workdir, manifest, bucket, "data")
    source = staging.resolve_source(str(cifar_tarball), ["bicycle"])
    only_bikes = staging.build(source, ["bicycle"], tmp_path / "bikes", "none")
    real_client = aws.client

    class StopsBeforeDeleting:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def delete_objects(self, **kwargs):
            raise KeyboardInterrupt  # the user stops it after the images, before the stale ones go

    monkeypatch.setattr(aws, "client", lambda service, **kw: StopsBeforeDeleting(real_client(service, **kw)))
    with pytest.raises(KeyboardInterrupt):
        staging.upload(tmp_path / "bikes", only_bikes, bucket, "data")
    monkeypatch.setattr(aws, "client", real_client)
    assert "manifest.json" not in keys(bucket, "data") and staged_data.JOURNAL in keys(bucket, "data")
    report = staging.upload(tmp_path / "bikes", only_bikes, bucket, "data")
    assert report.deleted == 8 and not [k for k in keys(bucket, "data") if "motorcycle" in k]
    assert staged_data.JOURNAL not in keys(bucket, "data")


def test_missing_bucket_is_named(staged, local_cloud, unique):
    workdir, manifest = staged
    with pytest.raises(staging.StagingError, match=f"bucket 'absent-{unique}' does not exist"):
        staging.upload(workdir, manifest, f"absent-{unique}", "data")


def test_interrupted_upload_leaves_no_manifest_and_resumes(staged, bucket, monkeypatch):
    workdir, manifest = staged
    real_client, calls = aws.client, {"n": 0}

    class FailingS3:
        """The real client, except that the 7th put_object loses the connection."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def put_object(self, **kwargs):
            calls["n"] += 1
            if calls["n"] == 7:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
            return self.inner.put_object(**kwargs)

    monkeypatch.setattr(aws, "client", lambda service, **kw: FailingS3(real_client(service, **kw)))
    from botocore.exceptions import EndpointConnectionError

    with pytest.raises(EndpointConnectionError):  # the CLI names the next step (scones.core.errors)
        staging.upload(workdir, manifest, bucket, "data", threads=1)
    landed = keys(bucket, "data")
    assert landed.pop(staged_data.JOURNAL)  # what it may leave is listed until the manifest lands
    assert "manifest.json" not in landed  # incomplete prefixes have no manifest
    assert 6 <= len(landed) < 18  # the first failure stopped the upload
    monkeypatch.setattr(aws, "client", real_client)
    report = staging.upload(workdir, manifest, bucket, "data", threads=1)
    assert (report.uploaded, report.unchanged) == (18 - len(landed), len(landed))  # only what was missing
    assert "manifest.json" in keys(bucket, "data") and staged_data.JOURNAL not in keys(bucket, "data")
