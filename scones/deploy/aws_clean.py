"""`scones clean --target aws`: find what a deploy made, list it, delete it in dependency order, wait, verify.

Resources are found by the project's tags (Resource Groups Tagging API: `scones:stack=<stack>`) plus the names
a deploy derives and records (scaling target and policy, schedule, scheduler role, log groups: kinds the
tagging API does not list). Order: scaling policy → scalable target → schedule → endpoint → endpoint config
→ model → stack (and what it created) → the schedule's alarm and dead-letter queue → scheduler role → job records →
log groups → (with --purge-data) S3 objects and bucket. What the workflow stack created carries the stack's tags on
AWS (CloudFormation propagates them): it is listed with the stack and counts as deleted once the stack's deletion
completes. The S3 objects are the project's own only (scones.storage: the staged manifest's files, deploy/<stack>/,
the endpoint's capture and monitoring folders, the stack's training jobs' models/<job>/), one item per group with
its count; another stack's or endpoint's objects stay, and so does a bucket they are in.
A second run finds nothing and deletes nothing. Exit status non-zero when anything is left.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field

from scones import stacks, storage
from scones.core import aws
from scones.core.errors import SconesError
from scones.deploy import naming
from scones.deploy.checks import code as error_code
from scones.deploy.sagemaker import record_path
from scones.deploy.spec import TAG_PROJECT, TAG_STACK, Spec

CFN_STACK_TAG = "aws:cloudformation:stack-name"  # CloudFormation's own tag on what a stack creates


@dataclass
class Item:
    kind: str  # scaling-policy | scalable-target | schedule | schedule-group | endpoint | endpoint-config | …
    name: str
    arn: str = ""
    owner: str = ""  # the CloudFormation stack that created it: deleting the stack deletes it
    keys: tuple[str, ...] = ()  # s3-objects: exactly the keys it deletes


@dataclass
class CleanResult:
    deleted: list[Item] = field(default_factory=list)
    left: list[tuple[Item, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


ORDER = (
    "scaling-policy",
    "scalable-target",
    "schedule",
    "schedule-group",
    "endpoint",
    "endpoint-config",
    "model",
    "stack",
    "alarm",
    "dead-letter-queue",
    "scheduler-role",
    "training-job",
    "processing-job",
    "log-group",
    "s3-objects",
    "bucket",
)
SAGEMAKER_KINDS = {
    "endpoint": "endpoint",
    "endpoint-config": "endpoint-config",
    "model": "model",
    "training-job": "training-job",
    "processing-job": "processing-job",
}


def arn_of(raw: str) -> str:
    """The ARN in a tagging API answer. moto 5.2.5 reports endpoint configurations as "('arn:…',)"."""
    match = re.search(r"arn:[^'\"\s,()]+", raw)
    return match.group(0) if match else raw


def tagged(stack: str) -> list[Item]:
    """Everything the tagging API lists with scones:stack=<stack>.

    On AWS that includes what the workflow stack created: CloudFormation puts the stack's tags on its resources,
    with aws:cloudformation:stack-name, which marks them as the stack's own (`owner`).
    """
    found = []
    pages = aws.client("resourcegroupstaggingapi").get_paginator("get_resources")
    for page in pages.paginate(TagFilters=[{"Key": TAG_STACK, "Values": [stack]}]):
        for mapping in page.get("ResourceTagMappingList", []):
            arn = arn_of(mapping["ResourceARN"])
            owner = {t["Key"]: t["Value"] for t in mapping.get("Tags", [])}.get(CFN_STACK_TAG, "")
            service, rest = arn.split(":")[2], arn.split(":", 5)[5]
            kind, name = re.fullmatch(r"([^/:]*)[/:]?(.*)", rest).groups()  # type/name, type:name or name
            if owner:
                found.append(Item(f"{service}:{kind}" if kind and name else service, name or rest, arn, owner))
                continue
            if service == "sagemaker" and kind in SAGEMAKER_KINDS:
                found.append(Item(SAGEMAKER_KINDS[kind], name, arn))
            elif service == "cloudformation" and kind == "stack":
                found.append(Item("stack", name.split("/")[0], arn))
            elif service == "s3":
                found.append(Item("bucket", rest, arn))
            elif service == "scheduler" and kind == "schedule-group":
                found.append(Item("schedule-group", name, arn))
            elif service == "sqs":  # the monitoring schedule's dead-letter queue
                found.append(Item("dead-letter-queue", rest, arn))
            elif service == "cloudwatch" and rest.startswith("alarm:"):
                found.append(Item("alarm", rest.split(":", 1)[1], arn))
            else:
                found.append(Item(f"{service}:{kind}", name or rest, arn))
    return found


def _scaling(spec: Spec) -> list[Item]:
    scaling = aws.client("application-autoscaling")
    resource = naming.scaling_resource_id(spec.endpoint)
    items = [
        Item("scaling-policy", p["PolicyName"], resource)
        for p in scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource).get(
            "ScalingPolicies", []
        )
    ]
    if scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource]).get("ScalableTargets"):
        items.append(Item("scalable-target", resource))
    return items


def _recorded(spec: Spec) -> dict[str, str]:
    import json

    try:
        return json.loads(record_path(spec.stack).read_text())
    except (OSError, ValueError):
        return {}


def _named(spec: Spec) -> list[Item]:
    """What the tagging API does not list, found by the names a deploy gives it."""
    items = _scaling(spec)
    scheduler, iam, logs = aws.client("scheduler"), aws.client("iam"), aws.client("logs")
    try:
        scheduler.get_schedule(Name=naming.schedule_name(spec), GroupName=naming.schedule_group(spec))
        items.append(Item("schedule", naming.schedule_name(spec), naming.schedule_group(spec)))
    except scheduler.exceptions.ResourceNotFoundException:
        pass
    try:
        scheduler.get_schedule_group(Name=naming.schedule_group(spec))
        items.append(Item("schedule-group", naming.schedule_group(spec)))
    except scheduler.exceptions.ResourceNotFoundException:
        pass
    try:
        iam.get_role(RoleName=naming.scheduler_role_name(spec))
        items.append(Item("scheduler-role", naming.scheduler_role_name(spec)))
    except iam.exceptions.NoSuchEntityException:
        pass
    sqs, cloudwatch = aws.client("sqs"), aws.client("cloudwatch")
    try:
        sqs.get_queue_url(QueueName=naming.monitor_dlq_name(spec))
        items.append(Item("dead-letter-queue", naming.monitor_dlq_name(spec)))
    except sqs.exceptions.QueueDoesNotExist:
        pass
    if cloudwatch.describe_alarms(AlarmNames=[naming.monitor_alarm_name(spec)]).get("MetricAlarms"):
        items.append(Item("alarm", naming.monitor_alarm_name(spec)))
    sm = aws.client("sagemaker")
    for kind, name in _recorded(spec).items():  # what the last deploy recorded, should its tags be gone
        try:
            if kind == "endpoint_config":
                sm.describe_endpoint_config(EndpointConfigName=name)
                items.append(Item("endpoint-config", name))
            elif kind == "model":
                sm.describe_model(ModelName=name)
                items.append(Item("model", name))
        except sm.exceptions.ClientError:
            pass
    try:
        config = sm.describe_endpoint(EndpointName=spec.endpoint)["EndpointConfigName"]
        items.append(Item("endpoint", spec.endpoint))
        items.append(Item("endpoint-config", config))
        for variant in sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]:
            items.append(Item("model", variant["ModelName"]))
    except sm.exceptions.ClientError:
        pass
    group = f"/aws/sagemaker/Endpoints/{spec.endpoint}"
    for found in logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", []):
        if found["logGroupName"] == group:
            items.append(Item("log-group", group))
    return items


def stack_resources(stack: str) -> list[dict] | None:
    """The stack's resources (CloudFormation's StackResourceSummaries); None when no such stack exists."""
    cfn = aws.client("cloudformation")
    try:
        pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
        return [summary for page in pages for summary in page.get("StackResourceSummaries", [])]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _owned_by(item: Item, physical_ids: set[str]) -> bool:
    """Whether CloudFormation made it: its ARN or name is one of the stack's physical resource ids."""
    return bool(physical_ids & {item.arn, item.name, item.arn.rsplit(":", 1)[-1], item.arn.rsplit("/", 1)[-1]})


def _lambda_log_groups(resources: list[dict], physical_ids: set[str]) -> list[Item]:
    """Log groups the stack's functions made themselves (stacks from before template.yaml declared them)."""
    logs, items = aws.client("logs"), []
    for resource in resources:
        if resource["ResourceType"] != "AWS::Lambda::Function":
            continue
        group = f"/aws/lambda/{resource['PhysicalResourceId']}"
        if group in physical_ids:
            continue
        found = logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", [])
        items += [Item("log-group", group) for g in found if g["logGroupName"] == group]
    return items


def inventory(spec: Spec, purge_data: bool = False) -> list[Item]:
    """What a clean would delete, in deletion order, without duplicates.

    What the workflow stack created is listed right after the stack, with `owner` set: the stack's deletion
    deletes it. Once the stack is gone, the tagging API may still list its resources for a while; CloudFormation
    has deleted them, so they are not listed.
    """
    resources = stack_resources(spec.stack)
    physical_ids = {r.get("PhysicalResourceId", "") for r in resources or []} - {""}
    seen, items = set(), []
    for item in _named(spec) + tagged(spec.stack) + _lambda_log_groups(resources or [], physical_ids):
        if item.kind == "bucket" and not purge_data:
            continue
        if item.kind != "stack" and (item.owner == spec.stack or _owned_by(item, physical_ids)):
            if resources is None:
                continue  # its stack is deleted, and CloudFormation with it
            item.owner = spec.stack
        if (item.kind, item.name) not in seen:
            seen.add((item.kind, item.name))
            items.append(item)
    if purge_data:
        jobs = [i.name for i in items if i.kind == "training-job"]
        for group in owned_objects(spec, jobs):
            where = f"s3://{spec.bucket}/{group.prefix} ({len(group.keys)} objects: {group.what})"
            items.append(Item("s3-objects", where, keys=tuple(group.keys)))
    rank = {kind: i for i, kind in enumerate(ORDER)}
    return sorted(items, key=lambda i: rank["stack"] + 0.5 if i.owner else rank.get(i.kind, len(ORDER)))


def owned_objects(spec: Spec, jobs: list[str]) -> list[storage.Owned]:
    """The project's objects in the spec's bucket (none when the bucket is gone): scones.storage's rule, with this
    stack's training jobs (tagged, recorded, or named by its job base) and the serving copy of a model it deployed."""
    from botocore.exceptions import ClientError

    recorded = _recorded(spec)
    jobs = [*jobs, *([recorded["training_job"]] if recorded.get("training_job") else [])]
    serving = str(recorded.get("model_data", ""))
    if serving.startswith(f"s3://{spec.bucket}/models/"):  # models/<job or external-…>/serving/…
        jobs.append(serving.split("/")[4])
    names = storage.Names(
        data=spec.prefix,
        capture=spec.capture_prefix,
        stack=spec.stack,
        endpoints=(spec.endpoint,),
        jobs=tuple(jobs),
        job_bases=(f"{spec.name_prefix}-train",),
    )
    try:
        return storage.owned_objects(spec.bucket, names)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchBucket", "404"):
            return []
        raise


def _wait_gone(check, timeout_s: float, poll_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not check():
            return True
        time.sleep(poll_s)
    return not check()


def _delete(item: Item, spec: Spec, poll_s: float) -> str | None:
    """Delete one item and wait until it is gone; returns a note when it stays (on purpose or not)."""
    sm = aws.client("sagemaker")
    if item.kind == "scaling-policy":
        aws.client("application-autoscaling").delete_scaling_policy(
            ServiceNamespace="sagemaker",
            ResourceId=item.arn,
            ScalableDimension=naming.SCALABLE_DIMENSION,
            PolicyName=item.name,
        )
    elif item.kind == "scalable-target":
        aws.client("application-autoscaling").deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=item.name, ScalableDimension=naming.SCALABLE_DIMENSION
        )
    elif item.kind == "schedule":
        aws.client("scheduler").delete_schedule(Name=item.name, GroupName=item.arn)
    elif item.kind == "schedule-group":
        aws.client("scheduler").delete_schedule_group(Name=item.name)
    elif item.kind == "endpoint":
        sm.delete_endpoint(EndpointName=item.name)

        def exists() -> bool:
            try:
                sm.describe_endpoint(EndpointName=item.name)
                return True
            except sm.exceptions.ClientError:
                return False

        if not _wait_gone(exists, 900, poll_s):
            return "still deleting after 15 minutes"
    elif item.kind == "endpoint-config":
        sm.delete_endpoint_config(EndpointConfigName=item.name)
    elif item.kind == "model":
        sm.delete_model(ModelName=item.name)
    elif item.kind == "stack":
        stacks.delete(item.name, log=lambda _m: None)
    elif item.kind == "alarm":
        aws.client("cloudwatch").delete_alarms(AlarmNames=[item.name])
    elif item.kind == "dead-letter-queue":
        sqs = aws.client("sqs")
        with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=item.name)["QueueUrl"])
    elif item.kind == "scheduler-role":
        iam = aws.client("iam")
        for policy in iam.list_role_policies(RoleName=item.name).get("PolicyNames", []):
            iam.delete_role_policy(RoleName=item.name, PolicyName=policy)
        iam.delete_role(RoleName=item.name)
    elif item.kind in ("training-job", "processing-job"):
        return _delete_job(item)
    elif item.kind == "log-group":
        logs = aws.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):  # gone already: as asked
            logs.delete_log_group(logGroupName=item.name)
    elif item.kind == "s3-objects":
        storage.delete_keys(spec.bucket, list(item.keys))
    elif item.kind == "bucket":
        aws.client("s3").delete_bucket(Bucket=item.name)
    else:
        return "not a kind scones creates: left alone"
    return None


def _delete_job(item: Item) -> str | None:
    """A running job is stopped (it bills); a finished job's record is deleted, or untagged where the API is absent."""
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError

    sm = aws.client("sagemaker")
    kind = "TrainingJob" if item.kind == "training-job" else "ProcessingJob"
    snake = "training_job" if item.kind == "training-job" else "processing_job"
    described = getattr(sm, f"describe_{snake}")(**{f"{kind}Name": item.name})
    _delete_log_streams(f"/aws/sagemaker/{kind}s", item.name)
    if described[f"{kind}Status"] in ("InProgress", "Stopping"):
        getattr(sm, f"stop_{snake}")(**{f"{kind}Name": item.name})
        return "stopped; its record stays until it has ended (run clean again)"
    try:
        getattr(aws.client("sagemaker", max_attempts=1), f"delete_{snake}")(**{f"{kind}Name": item.name})
    except (ClientError, ResponseParserError) as exc:
        if isinstance(exc, ClientError) and error_code(exc) not in ("InternalFailure", "NotImplemented", "500"):
            raise
        # This cloud cannot delete job records (the embedded local cloud): a finished job bills nothing, so its
        # record is only untagged, which takes it out of the project's inventory.
        sm.delete_tags(ResourceArn=item.arn, TagKeys=[TAG_STACK, TAG_PROJECT[0]])
    return None


def _delete_log_streams(group: str, job: str) -> None:
    """A job's log streams in the account-wide group (/aws/sagemaker/TrainingJobs, …/ProcessingJobs)."""
    logs = aws.client("logs")
    try:
        pages = logs.get_paginator("describe_log_streams").paginate(logGroupName=group, logStreamNamePrefix=f"{job}/")
        for page in pages:
            for stream in page.get("logStreams", []):
                logs.delete_log_stream(logGroupName=group, logStreamName=stream["logStreamName"])
    except logs.exceptions.ResourceNotFoundException:
        pass


def clean(spec: Spec, purge_data: bool = False, poll_s: float = 10.0, log=print) -> CleanResult:
    """Delete everything in the inventory, in order; then look again and report what is left."""
    from botocore.exceptions import BotoCoreError, ClientError

    result = CleanResult()
    stack_deleted = False
    for item in inventory(spec, purge_data):
        if item.owner:  # deleted by its stack's deletion, which comes first
            if stack_deleted:
                result.deleted.append(item)
                log(f"deleted {item.kind} {item.name} (with the stack)")
            else:
                result.left.append((item, f"its stack {item.owner} was not deleted"))
            continue
        try:
            note = _delete(item, spec, poll_s)
        except (ClientError, BotoCoreError, SconesError) as exc:  # SconesError: the stack's deletion failed
            note = f"could not delete: {error_code(exc) or exc}" if not isinstance(exc, SconesError) else str(exc)
        if note and not note.startswith("stopped"):
            result.left.append((item, note))
        else:
            stack_deleted = stack_deleted or (item.kind == "stack" and item.name == spec.stack)
            result.deleted.append(item)
            log(f"{'stopped' if note else 'deleted'} {item.kind} {item.name}" + (f" ({note})" if note else ""))
    remaining = [i for i in inventory(spec, purge_data) if i.kind != "s3-objects"]
    known = {(i.kind, i.name) for i, _ in result.left}
    result.left += [(i, "still there after deletion") for i in remaining if (i.kind, i.name) not in known]
    if not purge_data:
        result.notes.append(f"S3 objects in s3://{spec.bucket}/ were kept (pass --purge-data to delete them)")
    return result
