"""Runs the local cloud in the foreground: `python -m services.localcloud [--host H] [--port P]`.

`scones up` starts this in the background. Once listening it writes `localcloud.json` (pid, url) into
the state dir; SIGTERM or SIGINT stops the server and every Lambda worker it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from scones.core import settings, statedir

from . import guard

HEALTH_PATH = "/_scones/health"


def _health_app(app, runtime, started: float):
    from . import patches
    from .patches import dispatch_cache, sfn_clients

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") == HEALTH_PATH:
            import moto

            body = json.dumps(
                {
                    "status": "ok",
                    "pid": os.getpid(),
                    "moto": moto.__version__,
                    "patches": patches.APPLIED,
                    "dispatch_cache": dict(dispatch_cache.STATS, hosts=len(dispatch_cache.CACHE)),
                    "sfn_clients": dict(sfn_clients.STATS),
                    "lambda_workers": runtime.worker_pids(),
                    "uptime_s": round(time.time() - started, 1),
                }
            ).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return wrapped


def _write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def serve(host: str, port: int, state_dir: Path) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from . import patches
    from .lambda_runtime import LambdaRuntime

    patches.check()  # refuse to start, naming the patch and the name, when moto moved something
    started = time.time()
    holder: dict = {}
    # Bind first so that port 0 (any free port) is known before the patches need it.
    server = make_server(
        host, port, lambda e, s: holder["app"](e, s), threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_address[1]
    url = f"http://{host}:{port}"
    os.environ["MOTO_PORT"] = str(port)  # moto's Step Functions interpreter calls back here
    base_env = {
        settings.AWS_ENDPOINT_URL: url,
        settings.AWS_REGION: settings.region(),
        "AWS_REGION": settings.region(),
        **settings.FAKE_CREDENTIALS,
        **settings.service_endpoints(),  # e.g. AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for the model server
    }
    runtime = LambdaRuntime(settings.lambda_workdir(), base_env)
    applied = patches.apply_all(patches.Context(runtime, port, settings.lambda_concurrency()))
    # The guard sits in front of everything, the health route included (docs/security.md).
    holder["app"] = guard.Guard(
        _health_app(DomainDispatcherApplication(create_backend_app), runtime, started),
        cors_origins=settings.cors_origins(),
        verify_signatures=settings.verify_signatures(),
        unsigned_paths=(HEALTH_PATH,),  # `scones status` probes it with plain urllib
    )

    record_path = state_dir / "localcloud.json"
    record = {
        "pid": os.getpid(),
        "url": url,
        "host": host,
        "port": port,
        "started": started,
        "patches": applied,
    }
    _write_record(record_path, record)

    def stop(signum, frame):  # shutdown() blocks until serve_forever returns: call it off this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"local cloud listening on {url} (pid {os.getpid()}, patches: {', '.join(applied)})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        runtime.close()
        server.server_close()
        try:
            if json.loads(record_path.read_text()).get("pid") == os.getpid():
                record_path.unlink()
        except (OSError, ValueError):
            pass
        print("local cloud stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.localcloud", description=__doc__)
    parser.add_argument("--host", default=settings.localcloud_host())
    parser.add_argument("--port", type=int, default=settings.localcloud_port(), help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, default=settings.state_dir())
    args = parser.parse_args(argv)
    if not guard.is_loopback_address(args.host):
        print(
            f"error: --host {args.host} is not a loopback address: the local cloud runs code for whoever reaches it "
            f"(docs/security.md); use 127.0.0.1 or unset {settings.LOCALCLOUD_HOST}",
            file=sys.stderr,
        )
        sys.exit(2)
    os.environ[settings.STATE_DIR] = str(args.state_dir.resolve())
    from .patches import PatchError

    try:
        statedir.ensure(args.state_dir)
        serve(args.host, args.port, args.state_dir.resolve())
    except PatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    except settings.SettingsError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        sys.exit(2)
