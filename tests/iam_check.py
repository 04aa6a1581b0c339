"""Recorded boto3 calls as the IAM permissions AWS checks for them, evaluated against policies.

`needs(call)` maps a call to (action, resource) pairs: mostly `<prefix>:<Operation>`, with the exceptions AWS
documents (S3 reads and lists; `HeadObject` needs `s3:GetObject`; a missing key answers 404 only to a caller
with `s3:ListBucket` on the bucket, else 403; a role handed to a service needs `iam:PassRole`; tags on create
need the service's tagging action; target tracking makes CloudWatch alarms). The evaluator is moto's
`moto.iam.access_control` (`IAMPolicy.is_action_permitted`): an explicit Deny wins, else any Allow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aws_recorder import Call

IAM_PREFIX = {  # botocore service name -> IAM action prefix
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "s3": "s3",
    "iam": "iam",
    "scheduler": "scheduler",
    "cloudformation": "cloudformation",
    "application-autoscaling": "application-autoscaling",
    "service-quotas": "servicequotas",
    "resourcegroupstaggingapi": "tag",
    "logs": "logs",
    "lambda": "lambda",
    "stepfunctions": "states",
    "sns": "sns",
    "sqs": "sqs",
    "cloudwatch": "cloudwatch",
    "ecr": "ecr",
}
FREE = {("sts", "GetCallerIdentity")}  # AWS answers these to anyone authenticated
S3_OBJECT = {  # operation -> action on arn:aws:s3:::bucket/key
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
}
S3_BUCKET = {  # operation -> action on arn:aws:s3:::bucket
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "PutBucketTagging": "s3:PutBucketTagging",
    "GetBucketTagging": "s3:GetBucketTagging",
    "GetBucketLocation": "s3:GetBucketLocation",
}
MISSING = ("NoSuchKey", "404", "NotFound")
SAGEMAKER_NAMED = {  # request field naming the resource -> its ARN's resource type (names in lower case)
    "TrainingJobName": "training-job",
    "ProcessingJobName": "processing-job",
    "ModelName": "model",
    "EndpointConfigName": "endpoint-config",
    "EndpointName": "endpoint",
}
TAG_ON_CREATE = {
    "sagemaker": "sagemaker:AddTags",
    "iam": None,
    "scheduler": "scheduler:TagResource",
    "sqs": "sqs:TagQueue",
}
PASSED_ROLE = {  # (service, operation) -> (path to the role ARN in the request, the service it is passed to)
    ("sagemaker", "CreateTrainingJob"): (("RoleArn",), "sagemaker.amazonaws.com"),
    ("sagemaker", "CreateModel"): (("ExecutionRoleArn",), "sagemaker.amazonaws.com"),
    ("sagemaker", "CreateProcessingJob"): (("RoleArn",), "sagemaker.amazonaws.com"),
    ("scheduler", "CreateSchedule"): (("Target", "RoleArn"), "scheduler.amazonaws.com"),
    ("scheduler", "UpdateSchedule"): (("Target", "RoleArn"), "scheduler.amazonaws.com"),
}


@dataclass(frozen=True)
class Need:
    action: str
    resource: str = "*"
    context: tuple[tuple[str, str], ...] = field(default=())  # condition keys, e.g. iam:PassedToService
    why: str = ""

    def __str__(self) -> str:
        extra = f" with {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}" + (f" ({self.why})" if self.why else "")


def needs(call: Call, account: str) -> list[Need]:
    """What IAM must allow for AWS to answer this call as it was answered here."""
    service, op, p = call.service, call.operation, call.params
    why = f"{service}.{op}" + (f" by {call.function}" if call.function else "")
    if (service, op) in FREE:
        return []
    if service == "s3":
        bucket = p.get("Bucket", "")
        if op in S3_OBJECT:
            found = [Need(S3_OBJECT[op], f"arn:aws:s3:::{bucket}/{p.get('Key', '')}", why=why)]
            if op in ("GetObject", "HeadObject") and call.error in MISSING:
                # without it S3 answers 403 AccessDenied, not NoSuchKey: the caller could not tell "missing"
                found.append(Need("s3:ListBucket", f"arn:aws:s3:::{bucket}", why=f"{why} answered {call.error}"))
            return found
        if op == "DeleteObjects":
            keys = [o["Key"] for o in p.get("Delete", {}).get("Objects", [])]
            return [Need("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}", why=why) for k in keys]
        if op == "ListBuckets":
            return [Need("s3:ListAllMyBuckets", why=why)]
        if op in S3_BUCKET:
            return [Need(S3_BUCKET[op], f"arn:aws:s3:::{bucket}", why=why)]
        raise KeyError(f"no IAM mapping for s3.{op}: add it to tests/iam_check.py")
    prefix = IAM_PREFIX[service]
    if service == "sagemaker-runtime" and op == "InvokeEndpoint":
        # SageMaker ARNs carry resource names in lower case
        arn = f"arn:aws:sagemaker:{call.region}:{account}:endpoint/{p['EndpointName'].lower()}"
        return [Need("sagemaker:InvokeEndpoint", arn, why=why)]
    action = "lambda:InvokeFunction" if (service, op) == ("lambda", "Invoke") else f"{prefix}:{op}"
    resource = "*"
    if service == "sagemaker" and op.startswith("Create"):
        named = op.removeprefix("Create") + "Name"
        if named in SAGEMAKER_NAMED and isinstance(p.get(named), str):
            resource = f"arn:aws:sagemaker:{call.region}:{account}:{SAGEMAKER_NAMED[named]}/{p[named].lower()}"
    if service == "sqs":  # a queue by name, or by its URL, whose last segment is the name
        name = p.get("QueueName") or str(p.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
        resource = f"arn:aws:sqs:{call.region}:{account}:{name}" if name else "*"
    found = [Need(action, resource, why=why)]
    if (p.get("Tags") or p.get("tags")) and service in TAG_ON_CREATE and op.startswith("Create"):
        tagging = TAG_ON_CREATE[service] or f"{prefix}:Tag{op.removeprefix('Create')}"
        found.append(Need(tagging, resource, why=f"{why} with Tags"))
    if (service, op) in PASSED_ROLE:
        path, to = PASSED_ROLE[(service, op)]
        value = p
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        if isinstance(value, str) and value:
            found.append(Need("iam:PassRole", value, (("iam:PassedToService", to),), why=why))
    if service == "application-autoscaling":
        if op == "RegisterScalableTarget":  # the first one in an account creates the service-linked role
            linked = (("iam:AWSServiceName", "sagemaker.application-autoscaling.amazonaws.com"),)
            found.append(Need("iam:CreateServiceLinkedRole", "*", linked, why=f"{why} (first use in the account)"))
            if p.get("Tags"):
                found.append(Need("application-autoscaling:TagResource", why=f"{why} with Tags"))
        if op == "PutScalingPolicy" and p.get("PolicyType") == "TargetTrackingScaling":
            found += [Need(f"cloudwatch:{a}", why=f"{why} makes alarms") for a in ("PutMetricAlarm", "DescribeAlarms")]
        if op == "DeleteScalingPolicy":
            found += [Need(f"cloudwatch:{a}", why=f"{why} deletes alarms") for a in ("DeleteAlarms", "DescribeAlarms")]
    return found


def permitted(policies: list[dict], need: Need) -> bool:
    """moto's evaluator, statement by statement: allowed when some statement allows and none denies.

    moto answers DENIED for an Allow statement whose condition is not met (AWS: that statement does not apply),
    so an Allow statement's DENIED counts as not applying here. A Deny statement's DENIED is a denial."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    allowed = False
    for policy in policies:
        document = json.loads(policy) if isinstance(policy, str) else policy
        statements = document["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            if statement.get("Effect") == "Allow" and _unknown_condition_keys(statement, need):
                continue  # AWS: a condition on a key the request does not carry is false (moto: true)
            single = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
            result = IAMPolicy(single).is_action_permitted(need.action, need.resource, None, dict(need.context) or None)
            if result == PermissionResult.DENIED and statement.get("Effect") == "Deny":
                return False
            allowed = allowed or (result == PermissionResult.PERMITTED and statement.get("Effect") == "Allow")
    return allowed


def _unknown_condition_keys(statement: dict, need: Need) -> list[str]:
    known = dict(need.context)
    missing = []
    for operator, keys in (statement.get("Condition") or {}).items():
        if operator.endswith("IfExists") or operator == "Null":
            continue
        missing += [key for key in keys if key not in known]
    return missing


def refused(calls: list[Call], policies: list[dict], account: str) -> list[str]:
    """Each needed permission the policies do not grant, once, with the first call that needed it."""
    out, seen = [], set()
    for call in calls:
        for need in needs(call, account):
            key = (need.action, need.resource, need.context)
            if key not in seen:
                seen.add(key)
                if not permitted(policies, need):
                    out.append(str(need))
    return out


def state_machine_needs(definition: dict) -> list[Need]:
    """The Task states' service integrations as the state machine's role needs them (Map states included)."""
    found: list[Need] = []

    def walk(states: dict) -> None:
        for state in states.values():
            for key in ("Iterator", "ItemProcessor"):
                if key in state:
                    walk(state[key]["States"])
            for branch in state.get("Branches", []):
                walk(branch["States"])
            if state.get("Type") != "Task":
                continue
            resource, args = state["Resource"], state.get("Parameters") or state.get("Arguments") or {}
            if resource == "arn:aws:states:::lambda:invoke":
                found.append(Need("lambda:InvokeFunction", args["FunctionName"], why="lambda:invoke task"))
            elif resource == "arn:aws:states:::sns:publish":
                found.append(Need("sns:Publish", args["TopicArn"], why="sns:publish task"))
            elif resource.startswith("arn:aws:lambda:"):
                found.append(Need("lambda:InvokeFunction", resource, why="Lambda task"))
            else:
                raise KeyError(f"no IAM mapping for the task resource {resource}: add it to tests/iam_check.py")

    walk(definition["States"])
    return found


def _s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def job_needs(call: Call, account: str) -> list[Need]:
    """What SageMaker does with the execution role for a job, model or endpoint the call creates (its documented
    "execution role permissions"): read the inputs, write the outputs, pull the image, write logs and metrics."""
    p, region, found = call.params, call.region, []
    why = f"sagemaker.{call.operation} runs as the role"

    def read(uri: str) -> None:
        bucket, key = _s3(uri)
        found.append(Need("s3:ListBucket", f"arn:aws:s3:::{bucket}", why=f"{why}: lists {uri}"))
        first = key + "example.png" if key.endswith("/") else key  # an S3Prefix: every key that starts with it
        found.append(Need("s3:GetObject", f"arn:aws:s3:::{bucket}/{first}", why=f"{why}: reads"))

    def write(uri: str) -> None:
        bucket, key = _s3(uri)
        found.append(Need("s3:PutObject", f"arn:aws:s3:::{bucket}/{key.rstrip('/')}/example", why=f"{why}: writes"))

    def runs(image: str, group: str) -> None:
        repo = image.split("/", 1)[-1].split(":")[0].split("@")[0]
        registry = image.split(".", 1)[0]
        ecr = f"arn:aws:ecr:{region}:{registry}:repository/{repo}"
        found.append(Need("ecr:GetAuthorizationToken", why=f"{why}: pulls {image}"))
        found.extend(Need(f"ecr:{a}", ecr, why=f"{why}: pulls") for a in ("BatchGetImage", "GetDownloadUrlForLayer"))
        logs = f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/{group}:*"
        found.extend(Need(f"logs:{a}", logs, why=f"{why}: logs") for a in ("CreateLogStream", "PutLogEvents"))
        found.append(Need("cloudwatch:PutMetricData", why=f"{why}: metrics"))

    if call.operation == "CreateTrainingJob":
        for channel in p.get("InputDataConfig", []):
            read(channel["DataSource"]["S3DataSource"]["S3Uri"])
        write(f"{p['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{p['TrainingJobName']}")
        runs(p["AlgorithmSpecification"]["TrainingImage"], "TrainingJobs")
    elif call.operation == "CreateModel":
        container = p["PrimaryContainer"]
        bucket, key = _s3(container["ModelDataUrl"])
        found.append(Need("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", why=f"{why}: reads the model"))
        runs(container["Image"], "Endpoints")
    elif call.operation == "CreateProcessingJob":
        for item in p.get("ProcessingInputs", []):
            read(item["S3Input"]["S3Uri"])
        for item in p.get("ProcessingOutputConfig", {}).get("Outputs", []):
            write(item["S3Output"]["S3Uri"])
        runs(p["AppSpecification"]["ImageUri"], "ProcessingJobs")
    return found
