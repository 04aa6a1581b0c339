"""The event every scones Lambda takes and returns (standard library only; packed into each Lambda's zip).

    {"s3_bucket": str, "s3_key": str, "image_data": base64 str, "inferences": [float, ...], "labels": [str, ...]}

Each Lambda fills its field and returns the same object. The course starter's wrapped shape
{"statusCode": 200, "body": <object or JSON string>} is accepted on input and never emitted.
"""

from __future__ import annotations

import json
from typing import Any


class InvalidEventError(Exception):
    """The event is not the scones event (a field is missing or of the wrong type)."""


def unwrap(event: Any) -> dict:
    """The event as a plain dict, accepting the starter's {"statusCode", "body"} wrapping."""
    if isinstance(event, dict) and "body" in event and "s3_key" not in event:
        event = event["body"]
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            raise InvalidEventError(f"event body is a string but not JSON: {event[:80]!r}") from None
    if not isinstance(event, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(event).__name__}")
    return dict(event)


def require(event: dict, field: str, kind: type | tuple[type, ...]) -> Any:
    if field not in event:
        raise InvalidEventError(f"event has no {field!r} (fields: {', '.join(sorted(event)) or 'none'})")
    value = event[field]
    if not isinstance(value, kind) or (isinstance(value, (str, list)) and not value):
        raise InvalidEventError(f"event field {field!r} must be a non-empty {getattr(kind, '__name__', kind)}")
    return value
