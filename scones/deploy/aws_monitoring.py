"""Monitoring on AWS: an EventBridge Scheduler schedule that starts `python -m scones.monitoring` hourly as a
SageMaker Processing job (Model Monitor schedules are closed to new customers). The job's code input is one S3
folder per content hash holding run.sh (its command) and a reproducible tarball of the scones source; the
schedule's role may only start those jobs, pass the SageMaker role and send to the schedule's dead-letter
queue, whose alarm tells the stack's alert topic when an hourly start failed after its retries.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from scones import stacks
from scones.core import aws
from scones.core.errors import NotReadyError
from scones.core.settings import ROOT
from scones.deploy import images, naming, requests
from scones.deploy.checks import Report, contains, exists
from scones.deploy.spec import Spec

MONITOR_SOURCES = ("pyproject.toml", "README.md", "scones", "services", "training")
RUN_SCRIPT = ROOT / "scones" / "monitoring" / naming.MONITOR_SCRIPT  # the job's command, beside the tarball


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
    return naming.digest(raw), raw


def ensure_dead_letter_queue(queue: requests.Call, report: Report, log=print) -> str:
    """The schedule's DLQ (create_queue is idempotent with the same attributes); returns its URL."""
    sqs, name = aws.client("sqs"), queue.params["QueueName"]
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        url = sqs.create_queue(**queue.params)["QueueUrl"]
        report.add("monitor", "created", f"dead-letter queue {name}", log)
        return url
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
    if contains(current, queue.params["Attributes"]):
        report.add("monitor", "unchanged", f"dead-letter queue {name}", log)
    else:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=queue.params["Attributes"])
        report.add("monitor", "updated", f"dead-letter queue {name}", log)
    return url


def ensure_alarm(alarm: requests.Call, report: Report, log=print) -> None:
    cloudwatch, name = aws.client("cloudwatch"), alarm.params["AlarmName"]
    found = cloudwatch.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    wanted = {k: v for k, v in alarm.params.items() if k != "Tags"}
    if found and contains(found[0], wanted):
        report.add("monitor", "unchanged", f"alarm {name}", log)
        return
    cloudwatch.put_metric_alarm(**alarm.params)
    report.add("monitor", "updated" if found else "created", f"alarm {name}", log)


def ensure_monitoring(spec: Spec, account: str, report: Report, log=print) -> None:
    s3, iam, scheduler = aws.client("s3"), aws.client("iam"), aws.client("scheduler")
    source_digest, body = monitoring_source()
    key = naming.monitoring_source_key(spec, source_digest)
    try:
        topic = stacks.outputs(spec.stack).get("AlertTopicArn") or ""
    except NotReadyError:  # no workflow stack: the alarm has nobody to tell
        topic = ""
    calls = requests.monitoring_calls(spec, account, key, images.retrieve, topic_arn=topic)
    upload, script, queue, alarm, role, policy, group, schedule = calls
    for call, data in ((upload, body), (script, RUN_SCRIPT.read_bytes())):
        where = f"s3://{spec.bucket}/{call.params['Key']}"
        if exists(s3, spec.bucket, call.params["Key"]):
            report.add("monitor", "unchanged", where, log)
        else:
            s3.put_object(**call.params, Body=data)
            report.add("monitor", "created", where, log)
    ensure_dead_letter_queue(queue, report, log)
    if topic:
        ensure_alarm(alarm, report, log)
    else:
        report.add("monitor", "skipped", f"alarm {alarm.params['AlarmName']} (the stack has no AlertTopicArn)", log)
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
