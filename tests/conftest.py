"""Shared fixtures. Fake credentials are set before any boto3 client exists (moto's advice), so no test
can reach a real account by accident; SCONES_TARGET=localstack|aws switches the same tests over."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TARGET

from scones.core import settings

if TARGET != "aws":
    for _name, _value in settings.FAKE_CREDENTIALS.items():
        os.environ.setdefault(_name, _value)
os.environ.setdefault(settings.AWS_REGION, settings.DEFAULT_REGION)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One switch, SCONES_TARGET, decides where every integration test runs (see `local_cloud`).

    local (default): everything except the tests marked `aws`. localstack: only the tests marked `localstack`
    among those that use the cloud (the others depend on the embedded cloud's internals). aws: likewise with `aws`.
    """
    for item in items:
        if item.get_closest_marker("aws") and TARGET != "aws":
            reason = f"needs a real AWS account with credentials and SCONES_TARGET=aws; this run targets {TARGET}"
            item.add_marker(pytest.mark.skip(reason=reason))
        elif TARGET != "local" and "local_cloud" in item.fixturenames and not item.get_closest_marker(TARGET):
            item.add_marker(pytest.mark.skip(reason=f"runs on the embedded cloud only (not marked {TARGET})"))


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[str]:
    """The URL of the cloud under test, chosen by SCONES_TARGET, with AWS_ENDPOINT_URL pointed at it.

    local: the embedded cloud `make up` started, else one of our own on a free port. localstack: the LocalStack
    that `make test-localstack` (or `make up STACK=localstack`) started, as recorded in the state dir; the
    embedded cloud is never started. aws: no test that uses this fixture runs (they are skipped above).
    """
    from scones import localcloud, localstack
    from scones.core import aws

    if TARGET == "aws":
        pytest.skip("the aws target has no local cloud")
    if TARGET == "localstack":
        found = localstack.status()
        if not found.running:
            pytest.fail(
                f"SCONES_TARGET=localstack but no LocalStack answers ({found.detail}): run `make test-localstack`",
                pytrace=False,
            )
        os.environ[settings.AWS_ENDPOINT_URL] = found.url
        aws.reset()
        yield found.url
        return
    running = localcloud.status()
    context = contextlib.nullcontext(running) if running.running else localcloud.ephemeral("scones-test-")
    with context as cloud:
        os.environ[settings.AWS_ENDPOINT_URL] = cloud.url
        aws.reset()
        yield cloud.url


@pytest.fixture
def unique() -> str:
    """A short unique suffix so that tests never collide in a shared cloud."""
    import uuid

    return uuid.uuid4().hex[:8]


def make_cifar_tarball(path: Path, per_class_train: int = 6, per_class_test: int = 2, seed: int = 0) -> Path:
    """A small tarball in the exact CIFAR-100 python format, with random pixels and CIFAR-style names."""
    import numpy as np

    from scones.data import cifar
    from scones.data.classes import COARSE_LABELS, FINE_LABELS

    rng = np.random.default_rng(seed)
    chosen = {"bicycle": 18, "motorcycle": 18, "apple": 4}

    def split(n: int, offset: int) -> cifar.Split:
        names, fine, coarse = [], [], []
        for name, coarse_label in chosen.items():
            for i in range(n):
                names.append(f"{name}_s_{offset + i:06d}.png")
                fine.append(FINE_LABELS.index(name))
                coarse.append(coarse_label)
        images = rng.integers(0, 256, (len(names), 32, 32, 3), dtype=np.uint8)
        return cifar.Split(images, np.array(fine), np.array(coarse), names)

    return cifar.write(
        path, split(per_class_train, 0), split(per_class_test, 1000), list(FINE_LABELS), list(COARSE_LABELS)
    )


@pytest.fixture(scope="session")
def cifar_tarball(tmp_path_factory) -> Path:
    return make_cifar_tarball(tmp_path_factory.mktemp("cifar") / "cifar-100-python.tar.gz")


@pytest.fixture(scope="session")
def tiny_staged(tmp_path_factory) -> Path:
    """A small synthetic bicycle/motorcycle set in the staged layout (30 train + 10 test per class)."""
    from scones.data import staging

    root = tmp_path_factory.mktemp("tiny")
    classes = ["bicycle", "motorcycle"]
    source = staging.resolve_source(
        "synthetic", classes, seed=1, train_per_class=30, test_per_class=10, cache_dir=root / "cache"
    )
    workdir = root / "staged"
    staging.build(source, classes, workdir)
    return workdir


@pytest.fixture(scope="session")
def tiny_model(tiny_staged, tmp_path_factory) -> Path:
    """A model folder from a 1-epoch run of training/train.py on the tiny set (with its serving code)."""
    from helpers import TINY, run_train

    from scones.models import add_serving_code

    model_dir = tmp_path_factory.mktemp("tiny-model") / "model"
    out = run_train(tiny_staged, model_dir, "--classes", "bicycle,motorcycle", "--epochs", "1", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    add_serving_code(model_dir)
    return model_dir


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Tell the boto3 call recorder (aws_recorder.py) which test is running: its calls carry the test's id."""
    import aws_recorder

    aws_recorder.CURRENT_TEST = item.nodeid
    yield


@pytest.fixture(scope="session")
def aws_calls():
    """Every boto3 call made in this process from first use to the end of the session (tests/aws_recorder.py),
    each with the test it was made in: the chain test_deploy_aws.py drives is checked call by call by
    test_requests_strict.py and test_iam.py without running it twice."""
    import aws_recorder

    recorder = aws_recorder.Recorder().install()
    yield recorder
    recorder.uninstall()


AWS_CHAIN_TESTS = (  # the tests of tests/integration/test_deploy_aws.py that, with its fixture, make the chain
    "test_a_second_deploy_changes_nothing",
    "test_clean_leaves_nothing_tagged_and_a_second_clean_finds_nothing",
    "test_clean_purge_data_deletes_the_objects_and_the_bucket_it_made",
)


def _drive_aws_chain(cifar_tarball: Path, data_dir: Path) -> None:
    """test_deploy_aws.py's chain (deploy, the artifact written, deploy, deploy again, clean, clean
    --purge-data), once, with its own helpers, for when that module did not run in this session."""
    import importlib.util
    import uuid

    from scones.core import aws
    from scones.core.errors import NotReadyError
    from scones.deploy import aws_clean, requests, sagemaker
    from scones.deploy.spec import Spec

    where = ROOT / "tests" / "integration" / "test_deploy_aws.py"
    module_spec = importlib.util.spec_from_file_location("_aws_chain_helpers", where)
    chain = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(chain)
    suffix = uuid.uuid4().hex[:8]
    os.environ[settings.DATA_DIR] = str(data_dir)
    quiet = {"poll_s": 0.01, "log": lambda _m: None}
    try:
        spec = Spec(
            stack=f"s{suffix}-workflow",
            bucket=f"s-{suffix}",
            endpoint=f"sep-{suffix}",
            region=settings.region(),
            role=chain.make_role(f"sms-{suffix}"),
            spot=True,
            source=str(cifar_tarball),
        )
        with pytest.raises(NotReadyError):
            sagemaker.deploy(spec, **quiet)
        sm = aws.client("sagemaker")
        (job,) = sm.list_training_jobs(NameContains=requests.training_base_name(spec))["TrainingJobSummaries"]
        artifact = sm.describe_training_job(TrainingJobName=job["TrainingJobName"])["ModelArtifacts"]
        bucket, key = artifact["S3ModelArtifacts"][5:].split("/", 1)
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=chain.fake_artifact())
        for _ in range(2):
            sagemaker.deploy(spec, **quiet)
        assert aws_clean.clean(spec, **quiet).left == []
        assert aws_clean.clean(spec, purge_data=True, **quiet).left == []
    finally:
        os.environ.pop(settings.DATA_DIR, None)


@pytest.fixture(scope="session")
def aws_chain_calls(aws_calls, local_cloud, cifar_tarball, tmp_path_factory) -> list:
    """The boto3 calls of `deploy --target aws` → redeploy → `clean --target aws` on the local cloud, as scones
    (and the SageMaker SDK it drives) made them; a test's own checks are left out. Taken from test_deploy_aws.py's
    run when it ran whole in this session (it uses `aws_calls`), else made here once."""
    recorded = [c for c in aws_calls.calls if "test_deploy_aws.py::" in c.nodeid and c.by_scones]
    if not set(AWS_CHAIN_TESTS) <= {c.nodeid.rsplit("::", 1)[-1] for c in recorded}:
        start = len(aws_calls.calls)
        _drive_aws_chain(cifar_tarball, tmp_path_factory.mktemp("chain-data"))
        recorded = [c for c in aws_calls.calls[start:] if c.by_scones]
    return recorded
