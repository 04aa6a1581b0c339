"""`scones clean`: remove what the project created on a target, and say what was removed.

The local targets (the embedded cloud and LocalStack): every endpoint this state dir started, the workflow stack,
the project's own objects (scones.storage: the staged manifest's files, this stack's, its endpoints' and its
training jobs' folders; never a whole top-level prefix), the bucket too with --delete-bucket, then the local cloud
itself. `plan` lists all of it, grouped, for the CLI to show before anything is deleted. `--target aws` is
scones.deploy.aws_clean's, which lists what it will delete first. Files on disk are `make clean`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from scones import endpoint, localcloud, models, stacks, storage
from scones.core import aws, settings
from scones.core.errors import NotReadyError
from scones.core.target import Target


@dataclass
class Plan:
    """What a clean of a local target will do, found before anything is deleted."""

    bucket: str
    endpoints: list[str] = field(default_factory=list)  # local endpoint records: stopped
    stack: str | None = None  # the workflow stack, when deployed
    objects: list[storage.Owned] = field(default_factory=list)
    cloud: bool = False  # the embedded local cloud runs: stopped last
    notes: list[str] = field(default_factory=list)
    names: storage.Names | None = None  # whose objects: listed again once the endpoints have flushed their capture

    @property
    def empty(self) -> bool:
        return not (self.endpoints or self.stack or self.objects or self.cloud)

    def lines(self, delete_bucket: bool = False) -> list[str]:
        """What will be deleted, one group a line."""
        found = [f"  endpoint {name} (local model server)" for name in self.endpoints]
        found += [f"  stack {self.stack} (and the Lambdas, state machines and topic it created)"] if self.stack else []
        found += [f"  {line}" for line in storage.describe(self.bucket, self.objects)]
        found += [f"  bucket {self.bucket}, once empty"] if delete_bucket else []
        found += ["  the local cloud (its process and what it holds in memory)"] if self.cloud else []
        return found


def plan(target: Target) -> Plan:
    """Find the project's endpoints, stack and objects on `target` (a local one); delete nothing."""
    endpoints = endpoint.recorded_names()
    found = Plan(settings.bucket(), endpoints=endpoints)
    if target.name == "local" and not localcloud.status().running:
        found.notes.append("local cloud not running: nothing in it to remove")
        return found
    found.cloud = target.name == "local"
    found.names = names = storage.Names(
        data=settings.prefix(),
        capture=settings.capture_prefix(),
        stack=settings.stack_name(),
        endpoints=tuple(dict.fromkeys([*endpoints, settings.endpoint_name()])),
        jobs=tuple(models.local_jobs()),
    )
    try:
        try:
            stacks.outputs(names.stack)
            found.stack = names.stack
        except NotReadyError:
            pass
        found.objects = storage.owned_objects(found.bucket, names)
    except (ClientError, BotoCoreError) as exc:
        found.notes.append(f"cloud inventory incomplete: {exc}")
    return found


def clean(target: Target, found: Plan, delete_bucket: bool = False) -> list[str]:
    """Do what `found` lists; returns one line per thing done."""
    done: list[str] = []
    for name in found.endpoints:
        if endpoint.stop(name, log=lambda _m: None):
            done.append(f"stopped endpoint {name}")
    try:
        if found.stack and stacks.delete(found.stack, log=lambda _m: None):
            done.append(f"deleted stack {found.stack}")
        groups = storage.owned_objects(found.bucket, found.names) if found.names else []  # capture flushed since
        for group in groups:
            removed = storage.delete_keys(found.bucket, group.keys)
            done.append(f"deleted {removed} objects under s3://{found.bucket}/{group.prefix} ({group.what})")
        if delete_bucket and (found.cloud or target.name != "local"):
            aws.client("s3").delete_bucket(Bucket=found.bucket)
            done.append(f"deleted bucket {found.bucket}")
    except (ClientError, BotoCoreError) as exc:
        done.append(f"cloud cleanup incomplete: {exc}")
    if found.cloud:
        localcloud.down(log=lambda _m: None)
        done.append("stopped the local cloud")
    return done
