"""`scones endpoint stop` when the supervisor is gone but a worker still listens on the endpoint's port."""

from __future__ import annotations

import json

from helpers import endpoint_process

from scones import endpoint
from scones.core import service, settings

LISTENER = (
    "import socket, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True); time.sleep(60)\n"
)


def test_stop_finds_and_stops_orphan_workers_by_the_port(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    # given a worker of the endpoint's module listening on a port, and a record whose supervisor is gone
    orphan, port = endpoint_process(LISTENER)
    try:
        record = {"pid": 2**22 - 1, "url": f"http://127.0.0.1:{port}", "port": port, "workers": 2}
        settings.endpoint_record_path("ep").write_text(json.dumps(record))
        # when the endpoint is stopped
        said = []
        stopped = endpoint.stop("ep", timeout_s=5, log=said.append)
        # then the orphan was found by its port and stopped, and the record is gone
        assert stopped and orphan.wait(5) is not None
        assert not settings.endpoint_record_path("ep").exists()
        assert "orphan workers" in said[0] and str(orphan.pid) in said[0]
        assert service.port_holder("127.0.0.1", port) is None
    finally:
        orphan.kill()
