"""Production variants: several models behind one endpoint, traffic split by weight, as SageMaker does it.

Every worker loads every variant's model (ONNX models of this project are a few MB: one port, no internal
hops) and picks a variant per request: the one the client names in `X-Amzn-SageMaker-Target-Variant`
(boto3's `invoke_endpoint(TargetVariant=…)`), else one drawn by weight among the variants with a weight.
The answer names it in `X-Amzn-Invoked-Production-Variant`. A shadow variant (`shadow_percent` > 0) gets no
traffic of its own: that share of production's requests is mirrored to it after production has answered.

The control file (JSON, written by scones/endpoint.py and scones/rollout.py, polled by every worker) holds
the variants and their weights; a rollout shifts traffic by rewriting the weights there, and every worker
follows within POLL_S. The models are fixed at start: a variant the file adds is served by the next worker
set (a switch), not by this one.

    {"variants": [{"name": "AllTraffic", "model_dir": "…", "model_uri": "…", "weight": 1.0,
                   "shadow_percent": 0.0}, …],
     "rollout": null | {…}}   (scones/rollout.py's state, kept here so an interrupted rollout is found)
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

PRODUCTION = "AllTraffic"  # the variant a one-model endpoint serves, as SageMaker names it
SHADOW = "Shadow"  # the variant `scones deploy --shadow` serves the candidate as
TARGET_HEADER = b"x-amzn-sagemaker-target-variant"  # botocore sagemaker-runtime: TargetVariant
INVOKED_HEADER = b"x-amzn-invoked-production-variant"  # botocore sagemaker-runtime: InvokedProductionVariant
INFERENCE_ID_HEADER = b"x-amzn-sagemaker-inference-id"  # botocore: InferenceId (capture's inferenceId)
POLL_S = 0.1  # how often a worker looks at the control file


@dataclass
class Variant:
    name: str
    model_dir: Path
    weight: float = 1.0
    shadow_percent: float = 0.0  # > 0: a shadow variant, mirrored this share of production's requests
    model_uri: str = ""

    @property
    def shadow(self) -> bool:
        return self.shadow_percent > 0


@dataclass
class Control:
    variants: list[Variant]
    rollout: dict | None = None
    extra: dict = field(default_factory=dict)


def check(variants: list[Variant]) -> None:
    """ValueError naming the problem: no variant, a name twice, a bad weight or share, nothing to answer."""
    if not variants:
        raise ValueError("an endpoint needs at least one variant")
    names = [v.name for v in variants]
    for name in names:
        if not name or names.count(name) > 1 or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"variant name {name!r} is empty, repeated or not [A-Za-z0-9-_]")
    for v in variants:
        if v.weight < 0 or not 0 <= v.shadow_percent <= 100:
            raise ValueError(f"variant {v.name}: weight must be >= 0 and shadow_percent in 0..100")
    if not any(not v.shadow for v in variants):
        raise ValueError("every variant is a shadow: one production variant must answer")


def read(path: Path) -> Control:
    data = json.loads(Path(path).read_text())
    variants = [
        Variant(
            v["name"],
            Path(v["model_dir"]),
            float(v.get("weight", 1.0)),
            float(v.get("shadow_percent", 0.0)),
            v.get("model_uri", ""),
        )
        for v in data["variants"]
    ]
    extra = {k: v for k, v in data.items() if k not in ("variants", "rollout")}
    return Control(variants, data.get("rollout"), extra)


def write(path: Path, control: Control) -> None:
    """Atomically: a worker never reads half a file."""
    check(control.variants)
    rows = [{**asdict(v), "model_dir": str(v.model_dir)} for v in control.variants]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**control.extra, "variants": rows, "rollout": control.rollout}, indent=1))
    os.replace(tmp, path)


class Router:
    """Picks a production variant per request by weight; knows which shadows to mirror to."""

    def __init__(self, variants: list[Variant], rng: random.Random | None = None) -> None:
        check(variants)
        self.variants = {v.name: v for v in variants}
        self.rng = rng or random.Random()
        self._mtime = 0.0
        self._rebuild()

    def _rebuild(self) -> None:
        production = [v for v in self.variants.values() if not v.shadow]
        weighted = [v for v in production if v.weight > 0] or production[:1]  # all zero: the first answers
        self._names = [v.name for v in weighted]
        self._weights = [v.weight for v in weighted]
        self.shadows = [v for v in self.variants.values() if v.shadow]

    def pick(self, target: str | None = None) -> str:
        """The variant for one request; KeyError when `target` names none of this endpoint's production variants."""
        if target is not None:
            found = self.variants.get(target)
            if found is None or found.shadow:
                raise KeyError(target)
            return target
        if len(self._names) == 1:
            return self._names[0]
        return self.rng.choices(self._names, self._weights)[0]

    def mirror(self) -> list[str]:
        """The shadow variants this request is mirrored to (each by its own share)."""
        return [v.name for v in self.shadows if self.rng.random() * 100 < v.shadow_percent]

    def weights(self) -> dict[str, float]:
        return {name: v.weight for name, v in self.variants.items()}

    def follow(self, path: Path) -> bool:
        """Re-read weights and shadow shares from the control file when it changed; True when it did.
        A file that cannot be read (being replaced, removed) leaves the weights as they are."""
        try:
            mtime = os.stat(path).st_mtime_ns
            if mtime == self._mtime:
                return False
            control = read(path)
        except (OSError, ValueError, KeyError):
            return False
        self._mtime = mtime
        for v in control.variants:
            mine = self.variants.get(v.name)
            if mine is not None:
                mine.weight, mine.shadow_percent = v.weight, v.shadow_percent
        self._rebuild()
        return True
