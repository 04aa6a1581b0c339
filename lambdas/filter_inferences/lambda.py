"""Filter: pass the event on when the top inference reaches SCONES_THRESHOLD (default 0.93), else fail loudly."""

from __future__ import annotations

import os

from scones_event import InvalidEventError, require, unwrap

__all__ = ["InvalidEventError", "LowConfidenceError", "lambda_handler"]
DEFAULT_THRESHOLD = 0.93
# scones.core.settings' name (this file cannot import it); the old name is read for one more release.
THRESHOLD, OLD_THRESHOLD = "SCONES_THRESHOLD", "THRESHOLD"


class LowConfidenceError(Exception):
    """No class reached the threshold: a person should look at this image."""


def threshold() -> float:
    name = THRESHOLD if os.environ.get(THRESHOLD, "") or not os.environ.get(OLD_THRESHOLD, "") else OLD_THRESHOLD
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else DEFAULT_THRESHOLD
    except ValueError:
        raise InvalidEventError(f"{name}={raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise InvalidEventError(f"{name}={value} is outside 0..1")
    return value


def filter_inferences(event: dict, limit: float) -> dict:
    inferences = require(event, "inferences", list)
    if not all(isinstance(p, (int, float)) for p in inferences):
        raise InvalidEventError("event field 'inferences' must be a list of numbers")
    labels = event.get("labels") or [f"class_{i}" for i in range(len(inferences))]
    best = max(range(len(inferences)), key=inferences.__getitem__)
    if inferences[best] < limit:
        raise LowConfidenceError(
            f"best class {labels[best]} at {inferences[best]:.4f} is below the threshold {limit} "
            f"for {event.get('s3_key', '?')}"
        )
    return event


def lambda_handler(event: dict, context: object) -> dict:
    return filter_inferences(unwrap(event), threshold())
