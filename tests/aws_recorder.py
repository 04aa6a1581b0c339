"""Every boto3 call a process makes, recorded as it is sent: service, API operation, parameters, region, outcome.

botocore's `BaseClient._make_api_call` is the one door every client call goes through (paginators and waiters
included; the SageMaker SDK's own clients too), so wrapping it sees all of them. In the test process the
`aws_calls` fixture (conftest.py) installs one `Recorder`; in a Lambda worker of the local cloud,
`sitecustomize_dir()` gives a folder to put on the function's PYTHONPATH, and each call is appended as a JSON
line to the file named by $SCONES_TEST_RECORD_CALLS, with the function's name (tests only).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_ENV = "SCONES_TEST_RECORD_CALLS"  # tests only: the file a Lambda worker appends its calls to
CURRENT_TEST = ""  # set by conftest.py's pytest_runtest_protocol


@dataclass
class Call:
    service: str  # botocore's service name: sagemaker, application-autoscaling, resourcegroupstaggingapi, …
    operation: str  # the API name: CreateTrainingJob
    params: dict
    region: str
    error: str = ""  # the error code AWS (or the local cloud) answered, "" on success
    origin: str = ""  # the first caller outside botocore/boto3: scones.deploy.aws_clean, sagemaker.train…, a test
    by_scones: bool = False  # scones (or the SDK, or a transfer thread) made it, not a test's own check
    nodeid: str = ""  # the test during which it was made
    function: str = ""  # the Lambda function that made it (worker recordings)
    extra: dict = field(default_factory=dict)


TEST_MODULES = ("test_", "conftest", "helpers", "monitoring_fixtures", "_aws_chain_helpers")


def _origin() -> tuple[str, bool]:
    """The first caller outside botocore/boto3, and whether scones made the call: a scones module is on the
    stack, or no test module is (a transfer's worker thread, s3transfer's upload_file/download_file)."""
    frame, origin, by_scones, by_test = sys._getframe(2), "", False, False
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not origin and not name.startswith(("botocore", "boto3", __name__)):
            origin = name
        by_scones = by_scones or name.startswith("scones.") or name == "scones"
        by_test = by_test or name.startswith(TEST_MODULES)
        frame = frame.f_back
    return origin, by_scones or not by_test


def _safe(params: dict, as_json: bool = False) -> dict:
    """The parameters as sent; a file-like body becomes b"" (it is read once, by the request), and in a JSON
    line a bytes body is noted by its size ({"__bytes__": n}, turned back into n bytes by `read`)."""
    out = dict(params)
    body = out.get("Body")
    if body is not None and not isinstance(body, (str, bytes, bytearray)):
        out["Body"] = b""
    elif as_json and isinstance(body, (bytes, bytearray)):
        out["Body"] = {"__bytes__": len(body)}
    return out


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._original: Any = None

    def install(self) -> Recorder:
        from botocore.client import BaseClient

        if self._original is not None:
            return self
        original = BaseClient._make_api_call
        recorder = self

        def _make_api_call(client: Any, operation_name: str, api_params: dict) -> Any:
            origin, by_scones = _origin()
            call = Call(
                client.meta.service_model.service_name,
                operation_name,
                _safe(api_params),
                client.meta.region_name,
                origin=origin,
                by_scones=by_scones,
                nodeid=CURRENT_TEST,
            )
            with recorder._lock:
                recorder.calls.append(call)
            try:
                return original(client, operation_name, api_params)
            except Exception as exc:
                response = getattr(exc, "response", None) or {}
                call.error = str(response.get("Error", {}).get("Code", "")) or type(exc).__name__
                raise

        self._original = original
        BaseClient._make_api_call = _make_api_call
        return self

    def uninstall(self) -> None:
        from botocore.client import BaseClient

        if self._original is not None:
            BaseClient._make_api_call = self._original
            self._original = None


# --- in a Lambda worker ------------------------------------------------------------------------------


def install_from_env() -> None:
    """Called by the worker's sitecustomize: record into $SCONES_TEST_RECORD_CALLS, one JSON line per call."""
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    from botocore.client import BaseClient

    original = BaseClient._make_api_call
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")

    def _make_api_call(client: Any, operation_name: str, api_params: dict) -> Any:
        entry = {
            "service": client.meta.service_model.service_name,
            "operation": operation_name,
            "params": _safe(api_params, as_json=True),
            "region": client.meta.region_name,
            "function": function,
            "error": "",
        }
        try:
            return original(client, operation_name, api_params)
        except Exception as exc:
            response = getattr(exc, "response", None) or {}
            entry["error"] = str(response.get("Error", {}).get("Code", "")) or type(exc).__name__
            raise
        finally:
            with open(path, "a") as out:  # one short line per write: appends from several workers do not mix
                out.write(json.dumps(entry, default=str) + "\n")

    BaseClient._make_api_call = _make_api_call


def sitecustomize_dir(folder: Path) -> Path:
    """A folder holding a sitecustomize.py that installs the recorder above; put it on a worker's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    here = str(Path(__file__).resolve().parent)
    (folder / "sitecustomize.py").write_text(
        f"import sys\nsys.path.append({here!r})\nimport aws_recorder\naws_recorder.install_from_env()\n"
    )
    return folder


def read(path: Path) -> list[Call]:
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        body = entry["params"].get("Body")
        if isinstance(body, dict) and "__bytes__" in body:
            entry["params"]["Body"] = bytes(body["__bytes__"])
        calls.append(Call(**entry))
    return calls
