"""A Distributed Map's ItemBatcher: each child execution gets {"Items": [a batch of items], "BatchInput": {...}}.

moto 5.2.5 has no ItemBatcher (its grammar refuses it; sfn-map-definition takes it out and hangs it on the Map's
iteration component). Here the items the reader produced are grouped before the children start:
MaxItemsPerBatch / MaxItemsPerBatchPath items per child (MaxInputBytesPerBatch too, counted as JSON), and
BatchInput's `.$` paths read from the Map state's input, as AWS does.
"""

from __future__ import annotations

import json
from typing import Any

NAME = "sfn-item-batcher"
WHAT = "a Distributed Map's ItemBatcher groups items per child execution (Items, BatchInput)"
_ITERATION = "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration"
TOUCHES = (
    f"{_ITERATION}.distributed_iteration_component:DistributedIterationComponent._map_run",
    "moto.stepfunctions.parser.asl.utils.json_path:extract_json",
)


def resolve(template: Any, state_input: Any) -> Any:
    """A payload template: keys ending `.$` take the JSONPath's value from the state input."""
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = extract_json(value, state_input)
            else:
                out[key] = resolve(value, state_input)
        return out
    if isinstance(template, list):
        return [resolve(v, state_input) for v in template]
    return template


def batches(items: list, batcher: dict, state_input: Any) -> list[dict]:
    """The items grouped as AWS's ItemBatcher groups them."""
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    if "MaxItemsPerBatchPath" in batcher:
        per_batch = int(extract_json(batcher["MaxItemsPerBatchPath"], state_input))
    else:
        per_batch = int(batcher.get("MaxItemsPerBatch") or 0)
    max_bytes = int(batcher.get("MaxInputBytesPerBatch") or 256 * 1024)
    if per_batch < 0:
        raise ValueError(f"MaxItemsPerBatch must be positive, got {per_batch}")
    batch_input = resolve(batcher.get("BatchInput"), state_input) if "BatchInput" in batcher else None
    grouped: list[list] = [[]]
    size = 0
    for item in items:
        item_bytes = len(json.dumps(item))
        full = per_batch and len(grouped[-1]) >= per_batch
        if grouped[-1] and (full or size + item_bytes > max_bytes):
            grouped.append([])
            size = 0
        grouped[-1].append(item)
        size += item_bytes
    out = []
    for group in grouped:
        if group:
            out.append({"Items": group, **({"BatchInput": batch_input} if batch_input is not None else {})})
    return out


def apply(context: Any) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )

    original = DistributedIterationComponent._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        batcher = getattr(self, "scones_batcher", None)
        if batcher:
            items = env.stack.pop()
            env.stack.append(batches(items, batcher, env.states.get_input()))
        return original(self, env, eval_input)

    DistributedIterationComponent._map_run = _map_run
