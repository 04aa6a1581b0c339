"""The dry run's text: each step of the plan, each call with its parameters flattened one per line."""

from __future__ import annotations

import json

from scones.deploy.plan import Step
from scones.deploy.spec import TAG_PROJECT, TAG_STACK, Spec


def _flatten(value: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            return [(path, "{}")]
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            out += _flatten(item, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and set(v) == {"Key", "Value"} for v in value):
            return [(path, ", ".join(f"{v['Key']}={v['Value']}" for v in value))]
        out = []
        for i, item in enumerate(value):
            out += _flatten(item, f"{path}[{i}]")
        return out or [(path, "[]")]
    return [(path, json.dumps(value) if not isinstance(value, str) else value)]


def render(steps: list[Step], spec: Spec, account: str) -> str:
    lines = [
        f"scones deploy --target aws --dry-run: the calls it would make (nothing is called now); "
        f"account {account}, region {spec.region}",
        f"tags on everything: {TAG_PROJECT[0]}={TAG_PROJECT[1]}, {TAG_STACK}={spec.stack}",
    ]
    for number, step in enumerate(steps, 1):
        lines.append("")
        lines.append(f"{number}. {step.title}")
        for call in step.calls:
            lines.append(f"   {call.service}.{call.operation}" + (f"   # {call.note}" if call.note else ""))
            for key, value in _flatten(call.params) if call.params else []:
                if "Tags" in key.replace("[", ".").split("."):
                    continue  # the same on every call: shown once above
                lines.append(f"       {key} = {value}")
        for note in step.notes:
            lines.append(f"   note: {note}")
    return "\n".join(lines) + "\n"
