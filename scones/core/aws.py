"""The one boto3 client factory.

Targets are chosen by the environment (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>), which boto3
honours; no code passes endpoint_url. Clients are cached per (service, region, endpoint env) and are
thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from scones.core import settings, target

_lock = threading.Lock()
_clients: dict[tuple, Any] = {}


def client(service: str, *, region: str | None = None, max_attempts: int = 3, **config: Any) -> Any:
    region = region or target.current().region
    endpoints = dict(settings.service_endpoints())
    endpoints[settings.AWS_ENDPOINT_URL] = os.environ.get(settings.AWS_ENDPOINT_URL, "")
    env_key = tuple(sorted(endpoints.items()))
    key = (service, region, max_attempts, env_key, tuple(sorted(config.items())))
    with _lock:
        found = _clients.get(key)
        if found is None:
            cfg = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, **config)
            found = boto3.session.Session().client(service, region_name=region, config=cfg)
            if custom_endpoint(found.meta.endpoint_url):
                # The local cloud or LocalStack is one host: botocore would prepend an operation's host prefix to
                # it (StartSyncExecution's `sync-` makes sync-127.0.0.1, which does not resolve). AWS's own hosts
                # keep it (sync-states.<region>.amazonaws.com). Decided on the endpoint boto3 resolved, so every
                # way of setting one (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, the config file) counts.
                found.meta.config.inject_host_prefix = False
            _clients[key] = found
        return found


AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def custom_endpoint(url: str) -> bool:
    """Whether a client's endpoint is not one of AWS's own hosts (a local cloud, LocalStack, a proxy)."""
    host = urlsplit(url).hostname or ""
    return not host.endswith(AWS_HOSTS)


def reset() -> None:
    """Forget cached clients and the activated target (tests that change the environment call this)."""
    with _lock:
        _clients.clear()
    target.forget()


@contextlib.contextmanager
def pointed_at(url: str) -> Iterator[None]:
    """Clients made inside talk to `url` (a cloud this process just started), whatever the environment says."""
    saved = os.environ.get(settings.AWS_ENDPOINT_URL)
    os.environ[settings.AWS_ENDPOINT_URL] = url  # boto3 takes the endpoint from the environment: no endpoint_url=
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(settings.AWS_ENDPOINT_URL, None)
        else:
            os.environ[settings.AWS_ENDPOINT_URL] = saved


def ensure_bucket(bucket: str, log: Callable[[str], None] | None = None) -> bool:
    """Create `bucket` unless it exists; returns whether it was created."""
    s3 = client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except s3.exceptions.ClientError:
        if log:
            log(f"creating bucket {bucket}")
        s3.create_bucket(Bucket=bucket)
        return True
