"""Container image URIs, from the SageMaker Python SDK's own table (offline; the `aws` extra, imported lazily).

Versions are pinned here so that a plan is stable: the SDK lists PyTorch training up to 2.8.0 and inference
up to 2.6.0 (py312). train.py runs on the container's torch as well as on the local pin.
"""

from __future__ import annotations

from scones.core.errors import NotReadyError

PYTORCH_TRAINING = "2.8.0"
PYTORCH_INFERENCE = "2.6.0"
PY_VERSION = "py312"
INSTALL_HINT = "pip install -e '.[aws]'   (or: make venv EXTRAS=localcloud,ml,serve,dev,aws)"


def _sdk():
    try:
        from sagemaker.core import image_uris
    except ImportError:
        raise NotReadyError(
            "the SageMaker Python SDK (the `aws` extra) is not installed", next_step=INSTALL_HINT
        ) from None
    return image_uris


def require() -> None:
    """Raise NotReadyError (with the install command) when the SDK is not installed."""
    _sdk()


def retrieve(kind: str, region: str, instance_type: str) -> str:
    """kind: training | inference | processing (PyTorch containers) | builtin (image-classification)."""
    image_uris = _sdk()
    if kind == "builtin":
        return image_uris.retrieve("image-classification", region)
    scope, version = {
        "training": ("training", PYTORCH_TRAINING),
        "processing": ("training", PYTORCH_TRAINING),  # Python 3.12 + numpy + boto3: enough to run scones.monitoring
        "inference": ("inference", PYTORCH_INFERENCE),
    }[kind]
    return image_uris.retrieve(
        framework="pytorch",
        region=region,
        version=version,
        py_version=PY_VERSION,
        instance_type=instance_type,
        image_scope=scope,
    )


def placeholder_or_retrieve(kind: str, region: str, instance_type: str) -> str:
    """For a dry run without the SDK: a placeholder that says how to get the real URI."""
    try:
        return retrieve(kind, region, instance_type)
    except NotReadyError:
        return f"<{kind} image: needs the aws extra, {INSTALL_HINT.split('   ')[0]}>"
