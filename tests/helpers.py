"""Helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from scones import broken_model
from scones.core import settings

ROOT = Path(__file__).resolve().parent.parent
# Where the integration tests run (conftest.py's local_cloud): local | localstack | aws.
TARGET = os.environ.get(settings.TARGET, settings.DEFAULT_TARGET)
TRAIN = ROOT / "training" / "train.py"
TINY = ["--widths", "8,16,16", "--threads", "1"]


def run_train(staged: Path, model_dir: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """training/train.py in a subprocess with SM_* variables, as SageMaker runs it."""
    env = dict(
        os.environ,
        SM_CHANNEL_TRAIN=str(staged / "train"),
        SM_CHANNEL_TEST=str(staged / "test"),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DIR=str(model_dir.parent / "output"),
    )
    env.update(env_extra or {})
    (model_dir.parent / "output").mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(TRAIN), *args], env=env, capture_output=True, text=True, timeout=600)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A few hundred bytes that declare a 2.5-gigapixel image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def make_brightness_model(model_dir: Path, sharpness: float = 30.0) -> Path:
    """A model folder in the scones artifact format whose answer is known in advance: bright images are
    'bicycle', dark ones 'motorcycle', both with confidence ~1; mid-grey ones are a coin toss (~0.5)."""
    import json

    import torch

    class Brightness(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3)).unsqueeze(1)
            return torch.softmax(torch.cat([sharpness * (m - 0.5), torch.zeros_like(m)], dim=1), dim=1)

    from training.train import export_onnx

    model_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(Brightness(), model_dir / "model.onnx")
    (model_dir / "labels.json").write_text(json.dumps(["bicycle", "motorcycle"]))
    (model_dir / "config.json").write_text(json.dumps({"preprocessing": broken_model.PREPROCESSING}))
    return model_dir


def solid_png(value: int, size: int = 32) -> bytes:
    """A one-colour PNG: value 230 is confidently 'bicycle' to the brightness model, 25 'motorcycle', 128 unsure."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def load_lambda(folder: str):
    """Import lambdas/<folder>/lambda.py as its own module, with the shared event module beside it, as in its zip."""
    shared = str(ROOT / "lambdas" / "shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    spec = importlib.util.spec_from_file_location(f"lambda_{folder}", ROOT / "lambdas" / folder / "lambda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_bench(name: str):
    """Import bench/<name>.py as its own module; the sys.path entries a bench script adds for itself are undone."""
    spec = importlib.util.spec_from_file_location(f"bench_{name.lstrip('_')}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


class FakeContext:
    function_name = "test-function"
    memory_limit_in_mb = 128
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:test-function"

    def get_remaining_time_in_millis(self) -> int:
        return 3000


def subscribe_queue(topic_arn: str, name: str) -> str:
    """An SQS queue subscribed to an SNS topic, to read what the topic publishes."""
    from scones.core import aws

    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def toolbox_files() -> dict[str, str]:
    """tests/lambdas/*.py: file name → source."""
    return {p.name: p.read_text() for p in (ROOT / "tests" / "lambdas").glob("*.py")}


def toolbox_zip() -> bytes:
    """tests/lambdas/*.py as one function zip."""
    from scones.selftest import make_zip

    return make_zip(toolbox_files())


def create_function(name: str, handler: str, *, timeout: int = 5, env: dict | None = None) -> str:
    """A python3.12 function running a handler of tests/lambdas/ in the current cloud; returns its ARN."""
    from scones import selftest

    return selftest.create_function(
        name, toolbox_files(), handler, Timeout=timeout, Environment={"Variables": env or {}}
    )


def receive(url: str, timeout_s: float = 10) -> list[dict]:
    """The message bodies waiting on a queue (deleted as they are read), or [] after timeout_s."""
    import json
    import time

    from scones.core import aws

    sqs = aws.client("sqs")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wait = max(0, min(1, int(deadline - time.monotonic())))
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages")
        if messages:
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return [json.loads(m["Body"]) for m in messages]
    return []


def deployment_env(tag: str) -> tuple[str, dict[str, str]]:
    """A random suffix, and the settings giving a test module a bucket, stack and endpoint of its own (the
    endpoint on any free port)."""
    import uuid

    from scones.core import settings

    suffix = uuid.uuid4().hex[:8]
    return suffix, {
        settings.BUCKET: f"{tag}-{suffix}",
        settings.STACK_NAME: f"{tag}{suffix}-workflow",
        settings.SCONES_ENDPOINT_NAME: f"ep{tag}-{suffix}",
        settings.ENDPOINT_PORT: "0",
    }


@contextlib.contextmanager
def environ(values: dict[str, str]):
    """These environment variables for the duration of the block, the previous values restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by `pid` or any process below it, read from
    /proc/net/tcp and /proc/net/tcp6 (the socket, not a configuration): which interfaces a server really uses."""
    import ipaddress

    import psutil

    root = psutil.Process(pid)
    inodes = set()
    for process in [root, *root.children(recursive=True)]:
        fd_dir = Path(f"/proc/{process.pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: TCP_LISTEN
                    continue
                address_hex, port_hex = local.split(":")
                raw = bytes.fromhex(address_hex)  # the kernel writes each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
                found.append((str(ipaddress.ip_address(words)), int(port_hex, 16)))
    return found


def endpoint_process(listener: str) -> tuple[subprocess.Popen, int]:
    """A process that looks like the endpoint's server to the pid checks (`services.endpoint` in its command line),
    running `listener`: Python that prints the port it listens on, then serves it its own way. (process, port)."""
    process = subprocess.Popen([sys.executable, "-c", listener, "services.endpoint"], stdout=subprocess.PIPE, text=True)
    try:
        return process, int(process.stdout.readline())
    except ValueError:
        process.kill()
        raise


def make_failing_model(model_dir: Path, labels=("bicycle", "motorcycle")) -> Path:
    """A model folder that loads and answers dark or mid-grey images (the server's warm-up zeros, a switch's probe
    image) but fails in onnxruntime on bright ones (mean pixel > 0.6: a Gather past its data): a broken candidate
    that passes every check made before it gets traffic (scones/broken_model.py)."""
    return broken_model.make(model_dir, labels, fails_on="bright")


def app_requests(app, bodies: list[bytes], headers=()) -> list[tuple[int, dict, bytes]]:
    """Each body through the runtime API, then every mirrored request finished and every buffer flushed."""
    answers = []

    async def one(body: bytes):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/endpoints/ep/invocations",
            "headers": [(b"content-type", b"image/png"), *headers],
        }
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        answers.append((sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}, sent[1]["body"]))

    async def run():
        for served in app.served.values():
            await served.batcher.start()
        try:
            for body in bodies:
                await one(body)
            while app._shadow_tasks:
                await asyncio.gather(*app._shadow_tasks)
        finally:
            for served in app.served.values():
                served.batcher.task.cancel()
        app._flush(final=True)

    asyncio.run(run())
    return answers
