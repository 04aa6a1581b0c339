"""Monitoring on AWS: an EventBridge Scheduler schedule that starts `python -m scones.monitoring` hourly as a
SageMaker Processing job (Model Monitor schedules are closed to new customers). The job installs the scones
package from a reproducible tarball in S3; the schedule's role may only start those jobs and pass the role.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from scones.core import aws
from scones.deploy import images, plan
from scones.deploy.checks import Report, contains, exists
from scones.deploy.package import ROOT

MONITOR_SOURCES = ("pyproject.toml", "README.md", "scones", "services", "training")


def monitoring_source() -> tuple[str, bytes]:
    """The scones package as a reproducible tarball (the Processing job pip-installs it)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,  # no timestamp in the header: same bytes
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        paths = []
        for name in MONITOR_SOURCES:
            path = ROOT / name
            paths += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            info = tarfile.TarInfo(str(path.relative_to(ROOT)))
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return plan.digest(raw), raw


def ensure_monitoring(spec: plan.Spec, account: str, report: Report, log=print) -> None:
    s3, iam, scheduler = aws.client("s3"), aws.client("iam"), aws.client("scheduler")
    source_digest, body = monitoring_source()
    key = plan.monitoring_source_key(spec, source_digest)
    upload, role, policy, group, schedule = plan.monitoring_calls(spec, account, key, images.retrieve)
    if exists(s3, spec.bucket, key):
        report.add("monitor", "unchanged", f"s3://{spec.bucket}/{key}", log)
    else:
        s3.put_object(**upload.params, Body=body)
        report.add("monitor", "created", f"s3://{spec.bucket}/{key}", log)
    name = role.params["RoleName"]
    try:
        role_arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        report.add("monitor", "unchanged", f"role {name}", log)
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(
            **{**role.params, "AssumeRolePolicyDocument": json.dumps(role.params["AssumeRolePolicyDocument"])}
        )["Role"]["Arn"]
        report.add("monitor", "created", f"role {name}", log)
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=policy.params["PolicyName"])["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        current = None
    if isinstance(current, str):
        current = json.loads(current)
    if current == policy.params["PolicyDocument"]:
        report.add("monitor", "unchanged", f"role policy {policy.params['PolicyName']}", log)
    else:
        iam.put_role_policy(**{**policy.params, "PolicyDocument": json.dumps(policy.params["PolicyDocument"])})
        report.add(
            "monitor", "created" if current is None else "updated", f"role policy {policy.params['PolicyName']}", log
        )
    try:
        scheduler.get_schedule_group(Name=group.params["Name"])
        report.add("monitor", "unchanged", f"schedule group {group.params['Name']}", log)
    except scheduler.exceptions.ResourceNotFoundException:
        scheduler.create_schedule_group(**group.params)
        report.add("monitor", "created", f"schedule group {group.params['Name']}", log)
    wanted = dict(schedule.params)
    wanted["Target"] = {
        **wanted["Target"],
        "RoleArn": role_arn,
        "Input": json.dumps(wanted["Target"]["Input"], sort_keys=True),
    }
    try:
        current = scheduler.get_schedule(Name=wanted["Name"], GroupName=wanted["GroupName"])
    except scheduler.exceptions.ResourceNotFoundException:
        current = None
    if current is None:
        scheduler.create_schedule(**wanted)
        report.add("monitor", "created", f"schedule {wanted['Name']} ({spec.monitor_schedule})", log)
    elif contains(current, {**wanted, "Target": {k: v for k, v in wanted["Target"].items() if k != "Input"}}) and (
        json.loads(current["Target"].get("Input") or "null") == json.loads(wanted["Target"]["Input"])
    ):
        report.add("monitor", "unchanged", f"schedule {wanted['Name']} ({spec.monitor_schedule})", log)
    else:
        scheduler.update_schedule(**wanted)
        report.add("monitor", "updated", f"schedule {wanted['Name']} ({spec.monitor_schedule})", log)
