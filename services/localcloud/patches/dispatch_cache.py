"""The request dispatcher remembers which backend serves a host.

moto lists its ~200 package folders on disk and tries every URL pattern for each request, under a global
lock; remembering the answer per host cut a Map over 100 images from 3.2 s to 2.5 s.
"""

from __future__ import annotations

from typing import Any

NAME = "dispatch-cache"
WHAT = "the request dispatcher caches the backend of each host"
TOUCHES = ("moto.moto_server.werkzeug_app:DomainDispatcherApplication.get_backend_for_host",)
CACHE: dict[str | None, Any] = {}  # read by the self-test through the health route's counters
STATS = {"hits": 0, "misses": 0}


def apply(context: Any) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            found = CACHE[host]
        except KeyError:
            STATS["misses"] += 1
            found = original(self, host)
            if found is not None:  # a miss may be answered otherwise later (it is inferred from the body)
                CACHE[host] = found
            return found
        STATS["hits"] += 1
        return found

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host
