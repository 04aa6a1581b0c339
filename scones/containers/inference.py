"""Serve a model.tar.gz under the SageMaker PyTorch inference container's own code, here and without Docker.

The image AWS runs for `deploy --target aws` (PyTorch 2.6 inference) pins sagemaker-pytorch-inference 2.0.25 with
sagemaker-inference 1.10.1 on TorchServe 0.12. Those PyPI packages run here from a cached venv (`ENV_PINS`), with
Java for TorchServe's front end, as the container runs them:

- the artifact is unpacked at a private `/opt/ml/model` (optml: a user+mount+PID namespace; the toolkit hard-codes
  `/opt/ml` and writes its TorchServe config to `/etc/sagemaker-ts.properties`, which is bound to a scratch file);
- the model's environment is `deploy.requests.serving_environment` (SAGEMAKER_PROGRAM=inference.py, …);
- each start gets a fresh venv layered over the cached one, so what `code/requirements.txt` installs (the toolkit
  pip-installs it at start) is gone at the next start, as in a fresh container: onnxruntime comes only from there;
- the toolkit's own config sets `enable_envvars_config=true`, so TorchServe's `TS_*` variables keep every listener
  (inference + management on one port as the toolkit sets them, metrics, gRPC) on 127.0.0.1 and on free ports.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from scones import endpoint, models
from scones.containers import optml, venv
from scones.core import service, settings
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.deploy import requests

ENV_NAME = "sagemaker-pytorch-inference"
ENV_PINS = [  # the PyTorch 2.6 inference image's serving stack; onnxruntime deliberately absent
    "torch==2.13.0",  # the image has 2.6; this machine's CPU wheel (the handlers do not use torch)
    "torchserve==0.12.0",
    "torch-model-archiver==0.12.0",
    "sagemaker-pytorch-inference==2.0.25",  # pulls sagemaker-inference 1.10.1
    "pillow",
    "numpy",
    "pyyaml",
    "setuptools<81",  # the toolkit imports pkg_resources
]
TS_CONFIG = Path("/etc/sagemaker-ts.properties")  # hard-coded in sagemaker_pytorch_serving_container/torchserve.py
JAVA_PACKAGE = "openjdk-17-jre-headless"
START = "from sagemaker_pytorch_serving_container import serving; serving.main()"  # the image's entrypoint


class ContainerError(SconesError):
    """The container's code did not come up or stopped."""

    exit_code = 1


def check_java() -> None:
    if not shutil.which("java"):
        raise NotReadyError(
            "Java is not installed: TorchServe's front end (the PyTorch container's model server) runs on it",
            next_step=f"apt-get install {JAVA_PACKAGE}",
        )


def check_mount_points() -> None:
    """/opt/ml (optml) and the toolkit's TorchServe config file must exist on the host to be bound over."""
    optml.check()
    if not TS_CONFIG.is_file():
        try:
            TS_CONFIG.touch()
        except OSError:
            raise NotReadyError(
                f"{TS_CONFIG} does not exist and cannot be created by this user (it is only a mount point: the "
                f"toolkit writes its TorchServe config there)",
                next_step=f"sudo touch {TS_CONFIG}",
            ) from None


def toolkit_python(log=print) -> Path:
    """The cached venv with the image's serving stack (built once per state folder)."""
    return venv.ensure(ENV_NAME, ENV_PINS, log=log)


def unpack(archive: bytes, dest: Path, origin: str) -> None:
    """Extract a serving model.tar.gz into `dest` and check what the container will read from it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise UsageError(
            f"{origin} is not a readable model.tar.gz ({exc})", "pass a model made by `scones train`"
        ) from None
    code = dest / "code"
    if not code.is_dir():
        raise UsageError(
            f"{origin} has no code/ folder: the PyTorch inference container imports code/inference.py from it",
            next_step="package it as `deploy --target aws` does (scones.models.serving_archive)",
        )
    if not (code / "inference.py").is_file():
        raise UsageError(
            f"{origin} has code/ but no code/inference.py (SAGEMAKER_PROGRAM names it)",
            next_step="package it as `deploy --target aws` does (scones.models.serving_archive)",
        )
    requirements = code / "requirements.txt"
    if requirements.is_file():
        try:
            venv.check_requirements(requirements)
        except UsageError as exc:
            where = f"{origin}: code/requirements.txt"
            raise UsageError(
                str(exc).replace(str(requirements), where),
                "fix that line: the container pip-installs code/requirements.txt at start, and a bad line stops it",
            ) from None


def layered_venv(base_python: Path, dest: Path) -> Path:
    """A fresh venv that sees the cached one's packages: pip installs land in it, and vanish with it."""
    made = subprocess.run(
        [str(base_python), "-m", "venv", "--without-pip", str(dest)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        raise NotReadyError(f"could not create a venv at {dest}: {made.stderr.strip()}", "apt-get install python3-venv")
    python = venv.python_of(dest)
    (base,) = (base_python.parent.parent / "lib").glob("python3.*/site-packages")
    (own,) = (dest / "lib").glob("python3.*/site-packages")
    (own / "_scones_base.pth").write_text(f"{base}\n")  # after its own site-packages on sys.path
    # The toolkit runs `torchserve` from PATH, and TorchServe starts its workers with that script's interpreter.
    script = base_python.parent / "torchserve"
    body = script.read_text().split("\n", 1)[1]
    (dest / "bin" / "torchserve").write_text(f"#!{python}\n{body}")
    (dest / "bin" / "torchserve").chmod(0o755)
    return python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(python: Path, port: int, scratch: Path, region: str, workers: int | None = None) -> dict[str, str]:
    """The model's environment (as deploy sends it) plus what keeps this copy private and on loopback."""
    tmp = scratch / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "TS_", "SM_", "PYTHON"))}
    env.update(requests.serving_environment(region))
    loopback = f"http://127.0.0.1:{port}"
    env.update(
        {
            "PATH": f"{python.parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(python.parent.parent),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            # TorchServe reads TS_<PROPERTY> because the toolkit's default-ts.properties sets enable_envvars_config.
            "TS_INFERENCE_ADDRESS": loopback,
            "TS_MANAGEMENT_ADDRESS": loopback,  # the toolkit puts management on the inference port too
            "TS_METRICS_ADDRESS": f"http://127.0.0.1:{free_port()}",
            "TS_GRPC_INFERENCE_PORT": str(free_port()),  # gRPC binds 127.0.0.1 by default, on fixed ports
            "TS_GRPC_MANAGEMENT_PORT": str(free_port()),
            "TMPDIR": str(tmp),  # torchserve's pid file
            "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={tmp}",  # the front end's worker sockets
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    if workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)  # the toolkit's own knob (default: one per core)
    return env


@dataclass
class Container:
    """A running copy of the container: `url` answers /ping and /invocations."""

    url: str
    process: subprocess.Popen
    scratch: Path
    log_path: Path
    started_s: float = 0.0  # start → first /ping 200
    ready_s: float = 0.0  # start → every TorchServe worker READY (TorchServe's /ping says 200 before they load)
    _log: object = field(default=None, repr=False)

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM to the process group (the toolkit stops TorchServe), SIGKILL after `timeout_s`."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait_s)
                os.killpg(self.process.pid, 0)  # stragglers of the group?
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
            time.sleep(0.5)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.scratch / "venv", ignore_errors=True)  # the log stays for a look afterwards
        shutil.rmtree(self.scratch / "opt-ml", ignore_errors=True)
        shutil.rmtree(self.scratch / "tmp", ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    archive: bytes,
    origin: str,
    port: int = 0,
    timeout_s: float = 300.0,
    region: str | None = None,
    workers: int | None = None,
    log=print,
) -> Container:
    """Run the toolkit on the serving artifact `archive` until /ping answers 200 and every worker is READY."""
    check_java()
    check_mount_points()
    base = toolkit_python(log)
    root = settings.state_dir() / "containers"
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pytorch-inference-", dir=root))
    tree = scratch / "opt-ml"
    unpack(archive, tree / "model", origin)
    python = layered_venv(base, scratch / "venv")
    port = port or free_port()
    holder = service.port_holder("127.0.0.1", port)
    if holder:
        raise UsageError(f"port {port} is taken by {holder}", "pass --port 0 (any free port) or stop that process")
    ts_config = scratch / "sagemaker-ts.properties"
    ts_config.touch()
    work = scratch / "work"  # the cwd: the toolkit's model store is ./.sagemaker/ts/models
    work.mkdir()
    env = environment(python, port, scratch, region or settings.region(), workers)
    argv = optml.command(tree, [str(python), "-c", START], binds={ts_config: TS_CONFIG}, private_pids=True)
    log_path = scratch / "container.log"
    log_file = log_path.open("wb")
    began = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, cwd=work, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    container = Container(f"http://127.0.0.1:{port}", process, scratch, log_path, _log=log_file)
    log(f"starting the PyTorch inference container's code on {container.url} (log: {log_path}) ...")
    try:
        _wait(container, began, timeout_s, log, _pinged)
        container.started_s = time.monotonic() - began
        _wait(container, began, timeout_s, log, lambda url: _workers_ready(url) or _worker_died(container))
        container.ready_s = time.monotonic() - began
    except BaseException:
        container.stop(10)
        raise
    return container


def _pinged(url: str) -> bool:
    return service.get_json(url + "/ping", timeout_s=2.0)[0] == 200


def _worker_died(container: Container) -> bool:
    """A worker that cannot load the model dies and TorchServe restarts it forever: name the handler's error."""
    import re

    text = container.log_path.read_text(errors="replace") if container.log_path.is_file() else ""
    if text.count("Backend worker process died") < 2:
        return False
    errors = re.findall(r"MODEL_LOG - ((?:\w+\.)*\w*(?:Error|Exception)\b.*)", text)
    raise ContainerError(
        f"TorchServe's workers die while loading the model: {errors[-1].strip() if errors else 'see the log'}",
        next_step=f"read {container.log_path} (the handler's traceback is there)",
    )


def _workers_ready(url: str) -> bool:
    """TorchServe's describe-model (management API, on the inference port as the toolkit configures it)."""
    code, described = service.get_json(url + "/models/model", timeout_s=2.0)
    if code != 200 or not isinstance(described, list) or not described:
        return False
    workers = described[0].get("workers") or []
    return bool(workers) and all(w.get("status") == "READY" for w in workers)


def _wait(container: Container, began: float, timeout_s: float, log, done) -> None:
    said = began + 15 * ((time.monotonic() - began) // 15)  # a progress line every 15 s since the start
    while True:
        if done(container.url):
            return
        if container.process.poll() is not None:
            raise ContainerError(
                f"the container's code stopped (exit {container.process.returncode}) before it was ready; "
                f"its last words: {container.tail(3)}",
                next_step=f"read {container.log_path}",
            )
        now = time.monotonic()
        if now - began > timeout_s:
            raise ContainerError(
                f"not ready within {timeout_s:.0f} s (/ping 200 and every worker READY); last log lines: "
                f"{container.tail(3)}",
                next_step=f"read {container.log_path}",
            )
        if now - said >= 15:
            log(f"  waiting ({now - began:.0f} s: pip installs code/requirements.txt, TorchServe's workers load)")
            said = now
        time.sleep(0.25)


def serve_forever(container: Container, log=print) -> int:
    """Until Ctrl-C or SIGTERM; then stop the container's process group."""

    def stop(*_args) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        log(
            f"/ping 200 after {container.started_s:.1f} s, every worker ready after {container.ready_s:.1f} s: "
            f"POST {container.url}/invocations (Ctrl-C stops)"
        )
        return container.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        container.stop()
        print(f"stopped; the container's log: {container.log_path}", file=sys.stderr)


def serve_artifact(model: str | None, name: str, port: int | None, workers: int | None = None) -> None:
    """The serving artifact `deploy --target aws` would upload for this model, run in the foreground (in place of
    this process) by the SageMaker PyTorch inference container's own code (`scones endpoint serve --runtime sagemaker`).
    """
    check_java()  # before the model is fetched and packed
    check_mount_points()
    uri, model_dir = endpoint.prepare_model(model, name)
    trained = Path(uri).read_bytes() if Path(uri).is_file() else models.archive_of(model_dir)
    archive = settings.state_dir() / "endpoints" / name / f"serving-{int(time.time() * 1000)}.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(models.serving_archive(trained))  # the runner deletes it once unpacked
    port = settings.endpoint_port() if port is None else port
    print(f"serving {uri} as deploy --target aws packages it, in the PyTorch inference container's code", flush=True)
    args = [str(archive), uri, str(port), *([str(workers)] if workers else [])]
    os.execv(sys.executable, [sys.executable, "-m", "scones.containers.inference", *args])


def main(argv: list[str] | None = None) -> int:
    """`python -m scones.containers.inference ARCHIVE ORIGIN PORT [WORKERS]`: what `scones endpoint serve --runtime
    sagemaker` execs once the artifact is built (so that the command's state lock is not held while serving)."""
    archive, origin, port, *workers = argv if argv is not None else sys.argv[1:]
    try:
        running = start(Path(archive).read_bytes(), origin, int(port), workers=int(workers[0]) if workers else None)
    except SconesError as exc:
        print(f"scones endpoint: error: {exc.line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        Path(archive).unlink(missing_ok=True)
    return serve_forever(running)


if __name__ == "__main__":
    sys.exit(main())
