"""AWS's containers run here: `python bench/bench_containers.py [--epochs N] [--requests N]`.

Stages the synthetic set to a fresh local cloud, then measures, one after the other:
  - `scones train --mode container` (ModelTrainer's own job through the SDK's drivers in a private /opt/ml) against
    plain `scones train`, same data and epochs: wall time of each;
  - the serving artifact `deploy --target aws` uploads, under the PyTorch inference container's toolkit
    (sagemaker-pytorch-inference on TorchServe): start to the first /ping 200 and to every worker READY, then
    sequential requests of one 32×32 PNG against our local server (services.endpoint, same model, same worker
    count), with the ratio. Informational: the toolkit is what AWS runs, our server is what we ship locally.
The toolkit's venv is built once under the state folder (not timed); the venv build of a first run is reported.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
import numpy as np
from _cloud import local_cloud
from _report import Report
from PIL import Image

from scones import models
from scones.containers import inference as container
from scones.core import aws, service, settings


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def rate(url: str, body: bytes, n: int) -> float:
    """Sequential requests per second (after 20 warm-up requests)."""

    def post() -> None:
        request = urllib.request.Request(url + "/invocations", body, {"Content-Type": "image/png"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    for _ in range(20):
        post()
    t0 = time.perf_counter()
    for _ in range(n):
        post()
    return n / (time.perf_counter() - t0)


def train(env: dict, epochs: int, *extra: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "scones.cli", "train", "--epochs", str(epochs), *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of both training runs (default 3)")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per server (default 300)")
    args = parser.parse_args()
    report = Report("containers")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    tmp = _scratch.folder("scones-bench-containers-")
    with local_cloud() as url:
        env = dict(os.environ, AWS_ENDPOINT_URL=url, SCONES_DATA_DIR=str(tmp / "data"))
        subprocess.run([sys.executable, "-m", "scones.cli", "stage"], env=env, check=True, capture_output=True)
        plain = train(env, args.epochs, "--job-name", "bench-plain")
        boxed = train(env, args.epochs, "--mode", "container", "--job-name", "bench-container")
        report.result(f"`scones train` wall, {args.epochs} epochs", f"{plain:.1f} s")
        report.result(
            f"`scones train --mode container` wall, {args.epochs} epochs", f"{boxed:.1f} s ({boxed / plain:.2f}×)"
        )

        os.environ[settings.AWS_ENDPOINT_URL] = url  # this process's own calls go to the same cloud
        trained = (
            aws.client("s3")
            .get_object(Bucket="scones-unlimited", Key="models/bench-plain/output/model.tar.gz")["Body"]
            .read()
        )
        archive = models.serving_archive(trained)
        t0 = time.perf_counter()
        container.toolkit_python(log=print)  # built once, then cached
        report.result("toolkit venv (cached after the first run)", f"{time.perf_counter() - t0:.1f} s")
        body = png()
        with container.start(archive, "bench", workers=1, log=print) as served:
            report.result(
                "toolkit: start → first /ping 200 (pip-installs code/requirements.txt)", f"{served.started_s:.1f} s"
            )
            report.result("toolkit: start → every worker READY", f"{served.ready_s:.1f} s")
            toolkit_rps = rate(served.url, body, args.requests)
        model_dir = tmp / "model"
        model_dir.mkdir()
        with tarfile.open(fileobj=io.BytesIO(trained)) as tar:
            tar.extractall(model_dir, filter="data")
        port = container.free_port()
        local = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.endpoint",
                "--model",
                str(model_dir),
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-capture",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while service.get_json(f"http://127.0.0.1:{port}/ping", timeout_s=1.0)[0] != 200:
                if time.monotonic() > deadline or local.poll() is not None:
                    raise SystemExit("the local server did not answer /ping")
                time.sleep(0.2)
            local_rps = rate(f"http://127.0.0.1:{port}", body, args.requests)
        finally:
            local.terminate()
            local.wait(10)
        report.result("sequential requests/s: toolkit on TorchServe, 1 worker", f"{toolkit_rps:.0f}")
        report.result(
            "sequential requests/s: our server, 1 worker",
            f"{local_rps:.0f} ({local_rps / toolkit_rps:.1f}× the toolkit)",
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
