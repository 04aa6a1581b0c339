"""Every AWS request checked against the service model as AWS publishes it (botocore's JSON models).

botocore's own `ParamValidator` checks types, required members and minimums, and skips the rest of what the
model states: maximum lengths and sizes, patterns, enums and numeric maximums. `problems()` runs botocore's
validator first, then walks the same input shape through structures, lists and maps and checks what it
skipped. A request that passes here is one AWS's own front door would not refuse for its shape.

Patterns are the models' regular expressions, written for Java, and a value must match the whole of one, as
Java's `String.matches` does: that is how AWS's front doors apply them (SageMaker answers `has_underscore` for a
job name with "failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9]…",
though the model's text has no `^`). They are compiled with the `regex` package (Unicode property classes
such as `\\p{L}`) after two translations (UTF-16 surrogate ranges, `\\z`); one that still does not compile
is skipped and counted in `SKIPPED_PATTERNS`, never guessed at.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from scones.core.errors import SconesError

# pattern text -> how often a value could not be checked against it (it does not compile here)
SKIPPED_PATTERNS: Counter[str] = Counter()
_SURROGATE_RANGE = "\\uD800\\uDC00-\\uDBFF\\uDFFF"  # Java's UTF-16 spelling of U+10000..U+10FFFF


class InvalidRequestError(SconesError):
    """A request the service model refuses (AWS would answer ValidationException)."""

    next_default = "fix the field named; the limits are the service model's (botocore/data/<service>)"


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. AppSpecification.ContainerEntrypoint[2]
    rule: str  # botocore | max-length | min-length | pattern | enum | max-items | max-entries | min-entries | max
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.detail}"


@functools.cache
def _model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.cache
def operation_name(service: str, operation: str) -> str:
    """The API name (CreateTrainingJob) for boto3's method name (create_training_job) or the API name itself."""
    from botocore import xform_name

    names = _model(service).operation_names
    if operation in names:
        return operation
    for name in names:
        if xform_name(name) == operation:
            return name
    raise InvalidRequestError(f"{service} has no operation {operation}")


@functools.cache
def _compiled(pattern: str) -> Any:
    """The model's pattern compiled, or None when it cannot be compiled here."""
    text = pattern.replace(_SURROGATE_RANGE, "\\U00010000-\\U0010FFFF").replace("\\z", "\\Z")
    try:
        import regex

        return regex.compile(text)
    except ImportError:
        pass
    except Exception:  # regex.error: a construct it does not know
        return None
    try:
        return re.compile(text)
    except re.error:
        return None


def _walk(value: Any, shape: Any, path: str, out: list[Problem]) -> None:
    if value is None:
        return
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return  # botocore reports the type
        for name, member in shape.members.items():
            if name in value:
                _walk(value[name], member, f"{path}.{name}" if path else name, out)
        return
    if kind == "list":
        if isinstance(value, (list, tuple)):
            _sizes(len(value), meta, path, "items", out, with_min=False)
            for i, item in enumerate(value):
                _walk(item, shape.member, f"{path}[{i}]", out)
        return
    if kind == "map":
        if isinstance(value, dict):
            _sizes(len(value), meta, path, "entries", out)
            for key, item in value.items():
                _walk(key, shape.key, f"{path}.<key {key!r}>", out)
                _walk(item, shape.value, f"{path}[{key!r}]", out)
        return
    if kind in ("string", "blob"):
        if kind == "string" and isinstance(value, str):
            _sizes(len(value), meta, path, "characters", out, with_min=False)
            if shape.enum and value not in shape.enum:
                shown = ", ".join(shape.enum[:12]) + (", …" if len(shape.enum) > 12 else "")
                out.append(Problem(path, "enum", f"{value!r} is not one of {shown}"))
            pattern = meta.get("pattern")
            if pattern is not None:
                compiled = _compiled(pattern)
                if compiled is None:
                    SKIPPED_PATTERNS[pattern] += 1
                elif compiled.fullmatch(value) is None:
                    out.append(Problem(path, "pattern", f"{_short(value)} does not match {pattern}"))
        elif kind == "blob" and isinstance(value, (bytes, bytearray, str)):
            size = len(value.encode() if isinstance(value, str) else value)
            _sizes(size, meta, path, "bytes", out)
        return
    numeric = kind in ("integer", "long", "float", "double") and isinstance(value, (int, float))
    if numeric and "max" in meta and value > meta["max"]:
        out.append(Problem(path, "max", f"{value} is above the maximum {meta['max']}"))


def _sizes(size: int, meta: dict, path: str, unit: str, out: list[Problem], with_min: bool = True) -> None:
    """Maximums always; minimums only where botocore does not check them (maps, blobs)."""
    kind = "length" if unit in ("characters", "bytes") else unit
    if "max" in meta and size > meta["max"]:
        out.append(Problem(path, f"max-{kind}", f"{size} {unit}, at most {meta['max']} allowed"))
    if with_min and "min" in meta and size < meta["min"]:
        out.append(Problem(path, f"min-{kind}", f"{size} {unit}, at least {meta['min']} needed"))


def _short(value: str, n: int = 60) -> str:
    return repr(value) if len(value) <= n else repr(value[:n]) + f"… ({len(value)} characters)"


def problems(service: str, operation: str, params: dict) -> list[Problem]:
    """Everything the service model refuses in this request: botocore's own findings, then what it skips."""
    from botocore.validate import ParamValidator

    shape = _model(service).operation_model(operation_name(service, operation)).input_shape
    if shape is None:
        return [] if not params else [Problem("", "botocore", f"{operation} takes no parameters")]
    found: list[Problem] = []
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        for line in report.generate_report().splitlines():
            found.append(Problem("", "botocore", line.strip()))
    _walk(params, shape, "", found)
    return found


def check(service: str, operation: str, params: dict) -> None:
    """Raise InvalidRequestError naming every field the service model refuses."""
    found = problems(service, operation, params)
    if found:
        name = operation_name(service, operation)
        raise InvalidRequestError(f"{service}.{name} would be refused: " + "; ".join(str(p) for p in found))


# --- the dry run's plan, as the requests it stands for ---------------------------------------------------

# The plan's placeholders (what only the cloud or the clock knows) and a plausible value of the same shape.
PLAUSIBLE = {
    "<account-id>": "123456789012",
    "<hash of the trained artifact>": "0f1e2d3c",
    "<hash>": "0f1e2d3c4b5a6978",
    "<timestamp>": "20261202181500",  # ModelTrainer appends %Y%m%d%H%M%S to the base name
    "<training job>": "scones-train-0f1e2d3c-20261202181500",
    "<aws.scheduler.execution-id>": "5d7c5b4e-3c1a-4f2e-9b8d-0a1b2c3d4e5f",  # a UUID, as the Scheduler fills it
    "<lines of train.lst, read after staging>": "1000",
    "<role: pass --role or set SCONES_SAGEMAKER_ROLE>": "scones-sagemaker",
    "<the workflow stack's AlertTopicArn>": "arn:aws:sns:us-east-1:123456789012:scones-alerts",
    "<the endpoint's model now>": "scones-model-0f1e2d3c",
}
_PLACEHOLDER = re.compile(r"<[^<>]+>")


def plausible(value: Any) -> Any:
    """The value with every placeholder filled; an unknown placeholder is an error (add it to PLAUSIBLE)."""
    if isinstance(value, dict):
        return {k: plausible(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plausible(v) for v in value]
    if isinstance(value, str):
        for placeholder, filled in PLAUSIBLE.items():
            value = value.replace(placeholder, filled)
        left = _PLACEHOLDER.search(value)
        if left and left.group(0) != "<template.yaml>":
            raise InvalidRequestError(f"no plausible value for the placeholder {left.group(0)}")
    return value


def wire(service: str, operation: str, params: dict, template_body: str = "") -> dict:
    """A plan call's parameters as boto3 sends them: documents as JSON text, stack parameters as a list."""
    params = plausible(params)
    if (service, operation) == ("iam", "create_role"):
        params["AssumeRolePolicyDocument"] = json.dumps(params["AssumeRolePolicyDocument"])
    elif (service, operation) == ("iam", "put_role_policy"):
        params["PolicyDocument"] = json.dumps(params["PolicyDocument"])
    elif (service, operation) in (("scheduler", "create_schedule"), ("scheduler", "update_schedule")):
        params["Target"] = {**params["Target"], "Input": json.dumps(params["Target"]["Input"], sort_keys=True)}
    elif service == "cloudformation" and operation in ("create_stack", "update_stack"):
        params["TemplateBody"] = template_body or params["TemplateBody"]
        params["Parameters"] = [{"ParameterKey": k, "ParameterValue": v} for k, v in params["Parameters"].items()]
    return params


def scheduled_job(schedule_params: dict) -> dict:
    """The CreateProcessingJob request a Scheduler schedule's universal target sends, context attributes filled."""
    text = schedule_params["Target"]["Input"]
    return plausible(json.loads(text) if isinstance(text, str) else text)


def plan_requests(steps: list, template_body: str = "") -> list[tuple[str, str, dict, str]]:
    """(service, operation, request as sent, what) for every call of a dry-run plan (scones.deploy.plan.build),
    placeholders filled; the schedule's target request follows its CreateSchedule as ("sagemaker",
    "create_processing_job", …, "scheduled"). For the dry run: `problems(*request[:3])` on each."""
    out = []
    for step in steps:
        for call in step.calls:
            params = wire(call.service, call.operation, call.params, template_body)
            out.append((call.service, call.operation, params, step.key))
            if call.operation in ("create_schedule", "update_schedule"):
                out.append(("sagemaker", "create_processing_job", scheduled_job(params), "scheduled"))
    return out
