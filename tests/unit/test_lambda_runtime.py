"""The docker-free Lambda runtime on its own (no moto): real zips, real worker processes."""

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from scones.selftest import make_zip
from services.localcloud.lambda_runtime import FunctionSpec, LambdaRuntime

LAMBDAS = Path(__file__).resolve().parent.parent / "lambdas"


def spec(handler: str, *, timeout_s: float = 3, concurrency: int = 4, env=None, files=None) -> FunctionSpec:
    files = files or {p.name: p.read_text() for p in LAMBDAS.glob("*.py")}
    code = make_zip(files)
    return FunctionSpec(
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{handler}",
        name=handler.split(".")[-1],
        handler=handler,
        runtime="python3.12",
        timeout_s=timeout_s,
        memory_mb=128,
        code=code,
        code_sha256=hashlib.sha256(code).hexdigest(),
        environment=env or {},
        concurrency=concurrency,
    )


@pytest.fixture
def runtime(tmp_path):
    rt = LambdaRuntime(tmp_path, {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    yield rt
    rt.close()


def test_success_sees_env_and_context(runtime):
    result = runtime.invoke(spec("toolbox.ok", env={"GREETING": "hello"}), json.dumps({"n": 41}))
    assert not result.failed
    assert json.loads(result.payload) == {"n": 42, "greeting": "hello", "items": None}
    assert "ok handler in ok" in result.log
    assert "REPORT RequestId" in result.log


def test_exception_is_shaped_as_aws_does(runtime):
    result = runtime.invoke(spec("toolbox.flaky"), json.dumps({"key": "a.png"}))
    body = json.loads(result.payload)
    assert result.failed
    assert body["errorType"] == "TransientError"
    assert body["errorMessage"] == "transient failure for a.png"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]


def test_timeout_kills_the_worker_and_says_sandbox_timedout(runtime):
    s = spec("toolbox.sleepy", timeout_s=0.5)
    started = time.monotonic()
    result = runtime.invoke(s, json.dumps({"sleep": 5}))
    assert time.monotonic() - started < 3
    body = json.loads(result.payload)
    assert result.failed and body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.50 seconds" in body["errorMessage"]
    assert runtime.worker_pids() == []  # the stuck worker is gone
    assert not runtime.invoke(s, json.dumps({"sleep": 0})).failed  # and a fresh one serves


def test_import_error_and_missing_handler(runtime):
    broken = json.loads(runtime.invoke(spec("broken.handler"), "{}").payload)
    assert broken["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module_anywhere" in broken["errorMessage"]
    missing = json.loads(runtime.invoke(spec("toolbox.nope"), "{}").payload)
    assert missing["errorType"] == "Runtime.HandlerNotFound"


def test_workers_stay_warm(runtime):
    s = spec("toolbox.sleepy")
    first = json.loads(runtime.invoke(s, "{}").payload)["pid"]
    second = json.loads(runtime.invoke(s, "{}").payload)["pid"]
    assert first == second


def test_concurrency_cap_queues_instead_of_throttling(runtime):
    s = spec("toolbox.sleepy", concurrency=2)
    runtime.invoke(s, "{}")  # warm one worker so start-up does not blur the timing
    results, threads = [], []
    started = time.monotonic()
    for _ in range(4):
        t = threading.Thread(target=lambda: results.append(runtime.invoke(s, json.dumps({"sleep": 0.4}))))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert all(not r.failed for r in results) and len(results) == 4
    bodies = [json.loads(r.payload) for r in results]
    # How many handlers ran at once, from their own clocks: a cap of 1 gives 1, no cap 4; load cannot fake a 2.
    edges = sorted([(b["started"], 1) for b in bodies] + [(b["ended"], -1) for b in bodies])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2, bodies
    assert elapsed >= 0.8  # two waves of two
    assert len({b["pid"] for b in bodies}) == 2


def test_changed_code_retires_the_old_pool(runtime):
    a = spec("toolbox.sleepy")
    old_pid = json.loads(runtime.invoke(a, "{}").payload)["pid"]
    files = {p.name: p.read_text() + "\n# changed\n" for p in LAMBDAS.glob("*.py")}
    b = spec("toolbox.sleepy", files=files)
    new_pid = json.loads(runtime.invoke(b, "{}").payload)["pid"]
    assert new_pid != old_pid
    assert old_pid not in runtime.worker_pids()


def test_handler_printing_does_not_break_the_protocol(runtime):
    files = {"app.py": "import sys\ndef h(e, c):\n    print('{not json')\n    sys.stderr.write('x\\n')\n    return 7\n"}
    result = runtime.invoke(spec("app.h", files=files), "{}")
    assert json.loads(result.payload) == 7
    assert "{not json" in result.log


def test_crashing_worker_is_runtime_exit_error(runtime):
    files = {"app.py": "import os\ndef h(e, c):\n    os._exit(3)\n"}
    body = json.loads(runtime.invoke(spec("app.h", files=files), "{}").payload)
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"]


def test_a_slow_import_is_init_not_the_invocations_timeout(runtime):
    """AWS gives init its own budget: a cold start that imports for 1 s does not time out a 0.5 s function."""
    files = {"slow_init.py": "import time\ntime.sleep(1.0)\ndef handler(event, context):\n    return event\n"}
    result = runtime.invoke(spec("slow_init.handler", timeout_s=0.5, files=files), json.dumps({"n": 1}))
    assert not result.failed, result.payload
    assert json.loads(result.payload) == {"n": 1}
