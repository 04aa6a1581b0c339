"""The artifact `deploy --target aws` uploads, served by the SageMaker PyTorch inference container's own code.

sagemaker-pytorch-inference 2.0.25 + sagemaker-inference 1.10.1 on TorchServe 0.12 (the PyTorch 2.6 inference
image's pins) in a cached venv, Java, a private /opt/ml. Its answers must be our local server's, byte for byte
of the same request. The first run builds the venv (about a minute with a warm pip cache); later runs reuse it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scones import models
from scones.containers import inference as container
from scones.core.errors import NotReadyError, UsageError
from services.endpoint import inference

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")
BODIES = {
    "png": (encode(RGB, "PNG"), "image/png"),
    "jpeg": (encode(RGB.resize((48, 40)), "JPEG"), "image/jpeg"),
    "rgba-png": (encode(RGB.convert("RGBA"), "PNG"), "image/png"),
    "greyscale-png": (encode(RGB.convert("L"), "PNG"), "application/x-image"),
}


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url + "/invocations", body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def served(tiny_model):
    """The serving artifact built by deploy's own function, running in the container's code."""
    try:
        container.check_java()
    except NotReadyError as exc:
        pytest.skip(exc.line())
    archive = models.serving_archive(models.archive_of(tiny_model))
    with container.start(archive, "the tiny model's serving artifact", log=print) as running:
        yield running


def test_ping_answers_200(served):
    with urllib.request.urlopen(served.url + "/ping", timeout=5) as response:
        assert response.status == 200


@pytest.mark.parametrize("kind", list(BODIES))
def test_every_answer_equals_the_local_servers(served, tiny_model, kind):
    # given image bytes, and the local server's handlers called with the same bytes
    body, content_type = BODIES[kind]
    local = inference.load(tiny_model, threads=1)
    expected = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), local)))
    # when the container's code answers them
    status, answer = post(served.url, body, content_type)
    # then it is the same list of probabilities
    assert status == 200, answer[:500]
    np.testing.assert_allclose(json.loads(answer), expected, atol=1e-6)


def test_an_unsupported_content_type_is_a_415_as_locally(served):
    status, answer = post(served.url, b"a,b", "text/csv")
    with pytest.raises(inference.UnsupportedContentTypeError) as local:
        inference.input_fn(b"a,b", "text/csv")
    assert status == local.value.status_code == 415, answer[:500]


def test_requirements_txt_alone_brings_onnxruntime(served):
    # the cached venv has no onnxruntime: the container got it from code/requirements.txt, as AWS's does
    base = container.toolkit_python(log=lambda _m: None)
    probe = subprocess.run([str(base), "-c", "import onnxruntime"], capture_output=True, check=False)
    assert probe.returncode != 0
    assert "onnxruntime" in (served.scratch / "container.log").read_text(errors="replace")


def test_every_listener_is_on_loopback(served):
    import psutil

    pids = {served.process.pid} | {p.pid for p in psutil.Process(served.process.pid).children(recursive=True)}
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    # then inference (+ management), metrics and both gRPC servers listen, all on 127.0.0.1 (Java maps it to IPv6)
    assert len({c.laddr.port for c in listening}) == 4, listening
    assert {c.laddr.ip.removeprefix("::ffff:") for c in listening} == {"127.0.0.1"}, listening


# --- bad input: one line, the next step -------------------------------------------------------------------


def test_an_artifact_without_code_is_named(tiny_model, tmp_path):
    bare = tmp_path / "model"
    shutil.copytree(tiny_model, bare)
    shutil.rmtree(bare / "code")
    with pytest.raises(UsageError, match=r"bare\.tar\.gz has no code/ folder"):
        container.unpack(models.archive_of(bare), tmp_path / "out", "bare.tar.gz")


def test_a_malformed_requirements_line_is_named(tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "code" / "requirements.txt").write_text("numpy\nonnxruntime>=>1\n")
    with pytest.raises(UsageError, match=r"requirements\.txt.*line 2.*onnxruntime>=>1"):
        container.unpack(models.archive_of(broken), tmp_path / "out", "broken.tar.gz")


def test_missing_java_names_the_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(NotReadyError) as raised:
        container.check_java()
    assert "apt-get install openjdk-17-jre-headless" in raised.value.line()


def test_a_venv_that_cannot_be_built_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("SCONES_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(container, "ENV_PINS", ["sagemaker-pytorch-inference==0.0.0-no-such-version"])
    with pytest.raises(NotReadyError, match="pip could not install the sagemaker-pytorch-inference environment"):
        container.toolkit_python(log=lambda _m: None)


def test_the_serving_archive_is_what_deploy_uploads(tiny_model):
    archive = models.serving_archive(models.archive_of(tiny_model))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = set(tar.getnames())
    assert {"model.onnx", "labels.json", "config.json", "code/inference.py", "code/requirements.txt"} <= names


def scones(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "scones"), *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_the_cli_without_java_says_which_package_in_one_line(tiny_model):
    done = scones(
        "endpoint",
        "serve",
        "--runtime",
        "sagemaker",
        "--model",
        str(tiny_model),
        "--port",
        "0",
        env={"PATH": str(Path(sys.executable).parent)},
    )  # no java on this PATH
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install openjdk-17-jre-headless" in lines[0], done.stderr


def test_the_cli_refuses_runtime_sagemaker_outside_serve():
    done = scones("endpoint", "start", "--runtime", "sagemaker")
    assert done.returncode == 2 and "applies to `endpoint serve` only" in done.stderr, done.stderr


def test_the_old_model_fn_signature_never_gets_ready_in_the_container(tiny_model, tmp_path):
    # given the serving artifact with the handler as it was: model_fn(model_dir, threads=None)
    try:
        container.check_java()
    except NotReadyError as exc:
        pytest.skip(exc.line())
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    code = model / "code" / "inference.py"
    code.write_text(
        code.read_text() + "\n\ndef model_fn(model_dir, threads=None):\n    return load(model_dir, threads)\n"
    )
    # when the container's code starts it, then its workers die on the context it appends, and we say so
    with pytest.raises(container.ContainerError, match=r"workers die while loading the model: TypeError"):
        container.start(models.archive_of(model), "old.tar.gz", log=lambda _m: None)
