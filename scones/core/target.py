"""The target's environment, computed once: which AWS the project talks to and with what credentials.

boto3 honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, so choosing a target is choosing those
variables; no code passes endpoint_url. `resolve()` is pure (it reads the environment and the state dir's
records); `activate()` applies the result to this process once, never overriding what the user set, and
the CLI calls it with the `--target` argument. Every later client uses what was activated.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from scones.core import settings
from scones.core.service import read_record


@dataclass(frozen=True)
class Target:
    name: str  # local | localstack | aws
    region: str
    endpoint_url: str | None = None  # AWS_ENDPOINT_URL: None means real AWS
    runtime_url: str | None = None  # where invoke_endpoint goes when our model server is the endpoint
    credentials: dict[str, str] = field(default_factory=dict)  # fake ones, for the local targets only

    @property
    def is_local(self) -> bool:
        return self.name != "aws"

    def environ(self) -> dict[str, str]:
        """The variables this target sets (only where the user has not set them)."""
        env = {settings.AWS_REGION: self.region}
        if self.endpoint_url:
            env[settings.AWS_ENDPOINT_URL] = self.endpoint_url
        if self.runtime_url:
            env[settings.SAGEMAKER_RUNTIME_URL] = self.runtime_url
        env.update(self.credentials)
        return env


def _recorded_url(path: Path) -> str | None:
    return (read_record(path) or {}).get("url")


def resolve(name: str | None = None, environ: Mapping[str, str] | None = None) -> Target:
    """The target named (else $SCONES_TARGET, else local), with the URLs the state dir records."""
    environ = os.environ if environ is None else environ
    if name is not None and name not in settings.TARGETS:
        raise settings.SettingsError(f"--target {name!r} is not one of {', '.join(settings.TARGETS)}")
    name = name or settings.target()
    region = settings.region()
    if name == "aws":
        return Target(name, region)
    if name == "local":
        default = f"http://{settings.localcloud_host()}:{settings.localcloud_port()}"
        url = _recorded_url(settings.localcloud_record_path()) or default
    else:
        url = (
            _recorded_url(settings.localstack_record_path())
            or f"http://{settings.DEFAULT_HOST}:{settings.localstack_port()}"
        )
    runtime = _recorded_url(settings.endpoint_record_path(settings.endpoint_name()))
    return Target(name, region, url, runtime, dict(settings.FAKE_CREDENTIALS))


_lock = threading.Lock()
_active: Target | None = None
_ours: dict[str, str] = {}  # what activate() put into the environment (the user's own values are never touched)


def activate(name: str | None = None) -> Target:
    """Resolve the target and apply its environment to this process. Variables the user set win; those an
    earlier activation set follow the state dir (an endpoint started or stopped since)."""
    global _active
    with _lock:
        found = resolve(name)
        wanted = found.environ()
        for key in list(_ours):
            if key not in wanted and os.environ.get(key) == _ours.pop(key):
                del os.environ[key]
        for key, value in wanted.items():
            if key not in os.environ or os.environ[key] == _ours.get(key):
                os.environ[key] = value
                _ours[key] = value
        if found.is_local:  # what the user set won: say so
            found = replace(
                found,
                endpoint_url=os.environ.get(settings.AWS_ENDPOINT_URL) or found.endpoint_url,
                runtime_url=os.environ.get(settings.SAGEMAKER_RUNTIME_URL) or found.runtime_url,
            )
        _active = found
        return found


def is_active() -> bool:
    return _active is not None


def current() -> Target:
    """The activated target; activates the default one on first use."""
    return _active if _active is not None else activate()


def refresh() -> Target:
    """Activate the current target again: a server this process started or stopped changed the state dir."""
    return activate(current().name)


def forget() -> None:
    """Forget the activated target (tests that change the environment call this, through aws.reset())."""
    global _active
    with _lock:
        _active = None


def export_lines(found: Target | None = None) -> list[str]:
    """`export` lines for `eval "$(scones env)"`; never echoes real credentials."""
    found = found or current()
    values = {settings.TARGET: found.name, settings.BUCKET: settings.bucket(), settings.PREFIX: settings.prefix()}
    values[settings.AWS_REGION] = found.region
    if found.is_local:
        for key in found.environ():
            values[key] = os.environ.get(key) or found.environ()[key]
    return [f"export {key}={shlex.quote(value)}" for key, value in values.items() if value]
