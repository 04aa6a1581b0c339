"""A Distributed Map's ItemReader over an S3 prefix (`arn:aws:states:::s3:listObjectsV2`) lists it as AWS does.

moto 5.2.5 makes one ListObjectsV2 call (1,000 keys at most), fails on an empty prefix (no `Contents`), hands the
items on with S3's `LastModified` datetimes (describe_execution then answers 500: they are not JSON), and has no
ReaderConfig for a listing. Here every page is listed, an empty prefix gives no items, each item is AWS's shape
({"Etag", "Key", "LastModified" (epoch seconds), "Size", "StorageClass"}), and ReaderConfig.MaxItems /
MaxItemsPath (hung on the reader by sfn-map-definition) caps the count.
"""

from __future__ import annotations

from typing import Any

NAME = "sfn-item-reader"
WHAT = "a Distributed Map's ItemReader lists a whole S3 prefix (every page, JSON items, MaxItems)"
_READER = "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader"
TOUCHES = (
    f"{_READER}.item_reader_decl:ItemReader._eval_body",
    f"{_READER}.eval.resource_eval_s3:ResourceEvalS3._get_s3_client",
    "moto.stepfunctions.parser.asl.utils.json_path:extract_json",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource:ResourceRuntimePart",
)


def item(entry: dict) -> dict:
    """One listed object as AWS's ItemReader hands it on."""
    modified = entry.get("LastModified")
    return {
        "Etag": entry.get("ETag", ""),
        "Key": entry["Key"],
        "LastModified": int(modified.timestamp()) if hasattr(modified, "timestamp") else modified,
        "Size": entry.get("Size", 0),
        "StorageClass": entry.get("StorageClass", "STANDARD"),
    }


def max_items(reader_config: dict | None, state_input: Any) -> int | None:
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    if not reader_config:
        return None
    if "MaxItemsPath" in reader_config:
        value = extract_json(reader_config["MaxItemsPath"], state_input)
    else:
        value = reader_config.get("MaxItems")
    return int(value) if value else None  # 0 (or none): every item


def list_all(s3: Any, parameters: dict, limit: int | None) -> list[dict]:
    items: list[dict] = []
    for page in s3.get_paginator("list_objects_v2").paginate(**parameters):
        for entry in page.get("Contents", []):
            items.append(item(entry))
            if limit is not None and len(items) >= limit:
                return items
    return items


def apply(context: Any) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader import item_reader_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
        ResourceEvalS3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials

    ItemReader = item_reader_decl.ItemReader
    original = ItemReader._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        if not self.resource.resource_arn.startswith("arn:aws:states:::s3:listObjectsV2"):
            return original(self, env)
        if self.parargs:
            self.parargs.eval(env=env)
            parameters = env.stack.pop()
        else:
            parameters = {}
        self.resource.eval(env=env)
        runtime_part = env.stack.pop()
        s3 = ResourceEvalS3._get_s3_client(runtime_part, StateCredentials(role_arn=env.aws_execution_details.role_arn))
        limit = max_items(getattr(self, "scones_reader_config", None), env.states.get_input())
        env.stack.append(list_all(s3, parameters, limit))

    ItemReader._eval_body = _eval_body
