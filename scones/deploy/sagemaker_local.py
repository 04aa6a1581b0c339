"""`scones train --mode sagemaker-local`: training/train.py in SageMaker's own PyTorch container, on this machine.

The SDK v3's local container mode (`Mode.LOCAL_CONTAINER`, `Compute(instance_type="local_cpu")`) needs a
Docker engine with compose v2; without one it says so in one line and names `scones train`, which runs the
same script the same way without Docker.
"""

from __future__ import annotations

from scones.core.errors import NotReadyError
from scones.data import staged
from scones.deploy import images, naming, requests
from scones.deploy.aws_training import model_trainer
from scones.deploy.spec import Spec
from scones.localcloud import docker_engine_answers

NO_DOCKER = (
    "--mode sagemaker-local runs SageMaker's training container in Docker (compose v2) "
    "and no Docker engine answers here"
)


def train(spec: Spec, docker_answers=None, log=print, outliers: bool | None = None) -> str:
    """Run the planned training request in a local container; returns the model artifact's location.

    `outliers`: whether the staged prefix holds the training outliers (default: what its manifest says).
    """
    if not (docker_answers or docker_engine_answers)():
        raise NotReadyError(NO_DOCKER, next_step="scones train")
    # The image of a CPU instance (the SDK's table maps local_cpu to the GPU image), run as local_cpu.
    cpu = Spec(**{**spec.__dict__, "instance_type": "ml.m5.large", "spot": False})
    if outliers is None:
        outliers = staged.outliers_staged(staged.read_manifest(spec.bucket, spec.prefix))
    facts = requests.Facts(account=naming.account_of(spec), outliers=outliers)
    request = requests.training_request(cpu, facts, images.retrieve)
    request["ResourceConfig"]["InstanceType"] = "local_cpu"
    trainer, channels = model_trainer(cpu, request, local=True)
    log(f"training in {request['AlgorithmSpecification']['TrainingImage']} (local container) ...")
    trainer.train(input_data_config=channels, wait=True, logs=True)
    return f"{trainer.local_container_root}"
