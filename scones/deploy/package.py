"""Lambda zips and state machine definitions, content-addressed in S3 so that an unchanged deploy is a no-op."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass

from scones.core.settings import ROOT

LAMBDAS = ROOT / "lambdas"
SHARED = LAMBDAS / "shared" / "scones_event.py"
STATEMACHINES = ROOT / "statemachine"
FUNCTIONS = {  # template parameter → the Lambda's folder
    "SerializeCodeKey": "serialize_image_data",
    "ClassifyCodeKey": "classify_image",
    "FilterCodeKey": "filter_inferences",
    "ClassifyBatchCodeKey": "classify_batch",
}
DEFINITIONS = {
    "SingleDefinitionKey": "classify_image.asl.json",
    "BatchDefinitionKey": "classify_batch.asl.json",
    "PrefixDefinitionKey": "classify_prefix.asl.json",
}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zips are byte-identical for identical code


@dataclass
class Artifact:
    key: str
    body: bytes


def lambda_zip(folder: str) -> bytes:
    """lambda.py and the shared event module, nothing else: boto3 and the standard library come with the runtime."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in (LAMBDAS / folder / "lambda.py", SHARED):
            info = zipfile.ZipInfo(path.name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _addressed(prefix: str, stem: str, suffix: str, body: bytes) -> Artifact:
    return Artifact(f"{prefix}/{stem}-{hashlib.sha256(body).hexdigest()[:16]}{suffix}", body)


def artifacts(prefix: str) -> dict[str, Artifact]:
    """Template parameter → artifact (key and bytes) for every Lambda and definition."""
    found = {
        param: _addressed(f"{prefix}/lambdas", folder, ".zip", lambda_zip(folder))
        for param, folder in FUNCTIONS.items()
    }
    for param, name in DEFINITIONS.items():
        found[param] = _addressed(
            f"{prefix}/statemachine", name.removesuffix(".asl.json"), ".asl.json", (STATEMACHINES / name).read_bytes()
        )
    return found


def upload(s3, bucket: str, items: dict[str, Artifact]) -> int:
    """Upload what is not there yet; returns how many objects were sent."""
    sent = 0
    for artifact in items.values():
        try:
            s3.head_object(Bucket=bucket, Key=artifact.key)
            continue
        except s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        s3.put_object(Bucket=bucket, Key=artifact.key, Body=artifact.body)
        sent += 1
    return sent
