"""How a deploy step looks before it acts, and the record of what each step did."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    account: str = ""
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (step, action, detail)
    names: dict[str, str] = field(default_factory=dict)

    def add(self, step: str, action: str, detail: str, log=print) -> None:
        self.actions.append((step, action, detail))
        log(f"{step:<16} {action:<10} {detail}")

    @property
    def changed(self) -> list[tuple[str, str, str]]:
        return [a for a in self.actions if a[1] not in ("unchanged", "reused")]


def code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def contains(current: object, wanted: object) -> bool:
    """Does what the cloud describes hold everything we asked for? (It adds defaults of its own.)"""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(contains(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and all(map(contains, current, wanted))
    return current == wanted


def missing(exc: Exception) -> bool:
    text = str(exc)
    return code(exc) in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException", "404") and (
        "not found" in text.lower() or "could not find" in text.lower() or "does not exist" in text.lower()
    )


def exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError as exc:
        if code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
