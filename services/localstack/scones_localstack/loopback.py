"""LocalStack's gateway listens where GATEWAY_LISTEN says, loopback included (an on_infra_start hook).

localstack-core 2026.3's twisted server ignores the host of an IPv4 GATEWAY_LISTEN entry: it builds
`TCP4ServerEndpoint(reactor, port)` without `interface=` (a TODO in localstack/runtime/server/twisted.py), so
`GATEWAY_LISTEN=127.0.0.1:<port>` listens on 0.0.0.0:<port>, reachable from the network. LocalStack runs the
on_infra_start hooks before it binds the gateway; this one makes each IPv4 endpoint bind its configured host.
tests/integration/test_localcloud_security.py reads the process's listening sockets to prove it.
"""

from __future__ import annotations

from typing import Any

from localstack.runtime import hooks


class _BoundEndpoints:
    """twisted.internet.endpoints, with TCP4ServerEndpoint bound to one interface."""

    def __init__(self, endpoints: Any, host: str) -> None:
        self._endpoints, self._host = endpoints, host

    def TCP4ServerEndpoint(self, reactor: Any, port: int, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("interface", self._host)
        return self._endpoints.TCP4ServerEndpoint(reactor, port, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._endpoints, name)


def bind_configured_hosts(server_module: Any) -> None:
    """Wrap `server_module.TwistedRuntimeServer.register` so each listen entry binds its own host."""
    server_class = server_module.TwistedRuntimeServer
    if getattr(server_class.register, "scones_loopback", False):
        return
    original = server_class.register
    endpoints = server_module.endpoints

    def register(self: Any, gateway: Any, listen: list, ssl_creds: Any = None) -> None:
        for host_and_port in listen:
            server_module.endpoints = _BoundEndpoints(endpoints, host_and_port.host)
            try:
                original(self, gateway, [host_and_port], ssl_creds)
            finally:
                server_module.endpoints = endpoints

    register.scones_loopback = True
    server_class.register = register


@hooks.on_infra_start(priority=200)
def _bind_gateway_to_its_host() -> None:
    from localstack.runtime.server import twisted

    bind_configured_hosts(twisted)
