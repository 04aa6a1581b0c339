"""The one boto3 client factory.

Targets are chosen by the environment (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>), which boto3
honours; no code passes endpoint_url. Clients are cached per (service, region, endpoint env) and are
thread-safe.
"""

from __future__ import annotations

import os
import threading
from typing import Any

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
            _clients[key] = found
        return found


def reset() -> None:
    """Forget cached clients and the activated target (tests that change the environment call this)."""
    with _lock:
        _clients.clear()
    target.forget()
