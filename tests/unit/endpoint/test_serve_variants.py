"""`endpoint.serve_variants` (a rollout's every step, and its rollback) and `endpoint.serving` (the next rollout's
recovery) on a server whose /ping does not answer 200."""

from __future__ import annotations

import json

import pytest
from helpers import endpoint_process

from scones import endpoint
from scones.core import settings

RESETTER = (
    "import socket, struct, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()\n"
)


def test_a_rollback_goes_on_when_a_dying_worker_resets_the_ping_but_not_when_the_server_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    # given an endpoint whose supervisor runs but whose every /ping connection is reset (a worker dying as it is
    # probed: its listener still takes connections a moment after its accepted ones were reset)
    server, port = endpoint_process(RESETTER)
    try:
        record = {"pid": server.pid, "url": f"http://127.0.0.1:{port}", "port": port, "workers": 2}
        settings.endpoint_record_path("ep").write_text(json.dumps(record))
        assert not endpoint.status("ep").running and endpoint.status("ep").detail == "not answering"
        assert endpoint.serving("ep")  # what the next rollout command's recovery asks
        # when the rollback asks for the old model back, then it goes past the server check to the variants'
        # (none here: the check after it refuses them), instead of stopping at "not running"
        with pytest.raises(ValueError, match="at least one variant"):
            endpoint.serve_variants("ep", [], log=lambda _m: None)
    finally:
        server.kill()
        server.wait(5)
    # and with the supervisor gone, the endpoint is not running: nothing to replace
    assert not endpoint.serving("ep")
    with pytest.raises(endpoint.EndpointError, match="endpoint ep is not running"):
        endpoint.serve_variants("ep", [], log=lambda _m: None)
