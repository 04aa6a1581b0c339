"""What in S3 is the project's, and deleting only that: `scones clean` (local targets) and `scones clean --target aws
--purge-data` both ask here, so the two never disagree about what is the project's.

The rule (issue #21): an object is ours when the project can say which of its runs wrote it, never because it
sits under a top-level prefix the project also uses. So: the staged files listed in the staged manifest (and in
an unfinished upload's journal, scones.data.staged), and the folders named after this stack, its endpoints and
its training jobs:
    deploy/<stack>/            Lambda zips, state machine definitions, the AWS job's code and monitoring source
    <capture>/<endpoint>/      captured inferences (<capture>: SCONES_CAPTURE_PREFIX)
    monitoring/<endpoint>/     the AWS monitoring job's reports
    models/<job>/              a training job's artifacts (its output and the serving copy deploy adds)
    models/<stack's job base>  on AWS, every training job of this stack (`<name prefix>-train-<fingerprint>-<time>`)
Another stack's, endpoint's or job's folder, and keys beside the staged data that no manifest lists, are left.
Prefixes rather than object tags: the capture files are written by the model server and by SageMaker itself, which
tag nothing, and the folder layout already names the writer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scones.core import aws, settings
from scones.core.errors import UsageError
from scones.data import staged

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a stack, endpoint or job name: one path part, never `..`


@dataclass(frozen=True)
class Names:
    """Who the project is on a target: the names its objects are filed under."""

    data: str  # the staged data's prefix
    capture: str  # the capture prefix
    stack: str
    endpoints: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()  # training jobs whose models/<job>/ is ours
    job_bases: tuple[str, ...] = ()  # name stems of this stack's AWS training jobs: models/<base>-…


@dataclass
class Owned:
    """One group of the project's objects, as `scones clean` lists it: what, where, which keys."""

    what: str
    prefix: str
    keys: list[str] = field(default_factory=list)


def _refused(prefix: str, why: str) -> UsageError:
    return UsageError(f"refusing to delete under {prefix!r}: {why}", "check SCONES_PREFIX and the stack/endpoint names")


def _folder(top: str, name: str) -> str:
    """`top/name/`, refused unless `name` is one path part of a name's characters (no `/`, no `..`, not empty)."""
    if not NAME.match(name) or ".." in name:
        raise _refused(f"{top}/{name}", "not a stack, endpoint or job name")
    return f"{_prefix(top)}{name}/"


def _prefix(value: str) -> str:
    """A project prefix (settings refuse `/`, empty and `..`; checked again here, deleting is not undone)."""
    parts = value.strip("/").split("/")
    if not value.strip("/") or ".." in parts or "" in parts:
        raise _refused(value, "it is not one of the project's prefixes")
    return "/".join(parts) + "/"


def owned_prefixes(names: Names) -> list[tuple[str, str]]:
    """(what, key prefix) of every folder the project owns by name; each is at least two levels deep."""
    capture = _prefix(names.capture).rstrip("/")
    found = [(f"deploy artifacts of stack {names.stack}", _folder(settings.DEPLOY_PREFIX, names.stack))]
    found.append((f"backfill results of stack {names.stack}", _folder(settings.BACKFILL_PREFIX, names.stack)))
    for endpoint in dict.fromkeys(names.endpoints):
        found.append((f"captured inferences of endpoint {endpoint}", _folder(capture, endpoint)))
        found.append((f"monitoring reports of endpoint {endpoint}", _folder(settings.MONITORING_PREFIX, endpoint)))
    for job in dict.fromkeys(names.jobs):
        found.append((f"model of training job {job}", _folder(settings.MODELS_PREFIX, job)))
    for base in dict.fromkeys(names.job_bases):
        stem = _folder(settings.MODELS_PREFIX, base)[:-1] + "-"  # models/<base>-…: every job of that base
        found.append((f"models of stack {names.stack}'s training jobs", stem))
    return found


def _listed(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def owned_objects(bucket: str, names: Names) -> list[Owned]:
    """Every object of the project in `bucket`, grouped; empty groups left out. Lists, deletes nothing."""
    data = _prefix(names.data)
    wanted = owned_prefixes(names)  # every name checked before the first call
    s3 = aws.client("s3")
    mine = {data + rel for rel in staged.staged_files(bucket, data.rstrip("/"))}
    listed = [k for k in _listed(s3, bucket, data) if k in mine]
    groups = [Owned(f"staged data ({data}manifest.json lists it)", data, listed)]
    seen = set(groups[0].keys)
    for what, prefix in wanted:
        keys = [k for k in _listed(s3, bucket, prefix) if k not in seen]
        seen.update(keys)
        groups.append(Owned(what, prefix, keys))
    return [g for g in groups if g.keys]


def delete_keys(bucket: str, keys: list[str]) -> int:
    """Delete exactly these keys (1,000 per call); returns how many."""
    s3 = aws.client("s3")
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return len(keys)


def describe(bucket: str, groups: list[Owned]) -> list[str]:
    """One line per group: count, where, what."""
    return [f"{len(g.keys):>6} objects  s3://{bucket}/{g.prefix}  ({g.what})" for g in groups]
