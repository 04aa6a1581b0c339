"""The Distributed Map patches' pure parts: the definition rewrite, batches, the tolerance rule, result files."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from services.localcloud.patches import sfn_item_batcher, sfn_item_reader, sfn_map_definition, sfn_result_writer

BACKFILL = json.loads((Path(__file__).resolve().parents[3] / "statemachine" / "classify_prefix.asl.json").read_text())


def test_the_rewrite_takes_out_what_moto_refuses_and_keeps_it_for_the_other_patches():
    # given the backfill definition as deployed
    rewritten, taken = sfn_map_definition.rewrite(BACKFILL)
    state = rewritten["States"]["ClassifyPrefix"]
    # then moto's parser sees no ItemBatcher, a STANDARD child, no ReaderConfig, a float percentage
    assert "ItemBatcher" not in state and "ReaderConfig" not in state["ItemReader"]
    assert state["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    assert state["ToleratedFailurePercentage"] == 10.0 and isinstance(state["ToleratedFailurePercentage"], float)
    # and what was taken out is kept, by state name
    original = BACKFILL["States"]["ClassifyPrefix"]
    assert taken["ClassifyPrefix"] == {
        "batcher": original["ItemBatcher"],
        "express": True,
        "reader_config": original["ItemReader"]["ReaderConfig"],
        "tolerance": ["percentage"],
    }
    # and the definition as sent is untouched (describe shows it)
    assert BACKFILL["States"]["ClassifyPrefix"]["ItemBatcher"]


def test_an_inline_map_is_left_alone():
    inline = json.loads((Path(__file__).resolve().parents[3] / "statemachine" / "classify_batch.asl.json").read_text())
    assert sfn_map_definition.rewrite(inline) == (inline, {})


def test_batches_hold_at_most_the_items_per_batch_and_the_batch_input():
    items = [{"Key": f"k{i}"} for i in range(7)]
    batcher = {"MaxItemsPerBatchPath": "$.n", "BatchInput": {"s3_bucket.$": "$.b", "fixed": 1}}
    out = sfn_item_batcher.batches(items, batcher, {"n": 3, "b": "bucket"})
    assert [len(b["Items"]) for b in out] == [3, 3, 1]
    assert [i for b in out for i in b["Items"]] == items
    assert out[0]["BatchInput"] == {"s3_bucket": "bucket", "fixed": 1}


def test_batches_also_close_at_max_input_bytes():
    items = [{"Key": "x" * 90} for _ in range(5)]  # ~100 bytes each as JSON
    out = sfn_item_batcher.batches(items, {"MaxItemsPerBatch": 100, "MaxInputBytesPerBatch": 250}, {})
    assert [len(b["Items"]) for b in out] == [2, 2, 1] and "BatchInput" not in out[0]


def test_listed_items_are_json_in_aws_shape_and_max_items_caps_them():
    entry = {
        "Key": "a.png",
        "ETag": '"e"',
        "Size": 3,
        "LastModified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    }
    item = sfn_item_reader.item(entry)
    assert json.loads(json.dumps(item)) == {
        "Etag": '"e"',
        "Key": "a.png",
        "LastModified": 1767225600,
        "Size": 3,
        "StorageClass": "STANDARD",
    }
    assert sfn_item_reader.max_items({"MaxItemsPath": "$.limit"}, {"limit": 30}) == 30
    assert sfn_item_reader.max_items({"MaxItems": 5}, {}) == 5
    assert sfn_item_reader.max_items(None, {}) is None and sfn_item_reader.max_items({"MaxItems": 0}, {}) is None


def test_the_tolerance_rule_is_awss():
    assert sfn_result_writer.exceeded(1, 10, None, None)  # none given: no failure tolerated
    assert not sfn_result_writer.exceeded(0, 10, None, None)
    assert not sfn_result_writer.exceeded(1, 10, None, 10.0) and sfn_result_writer.exceeded(2, 10, None, 10.0)
    assert not sfn_result_writer.exceeded(2, 10, 2, None) and sfn_result_writer.exceeded(3, 10, 2, None)


def test_result_files_are_awss_records_by_status_in_item_order():
    children = [
        {
            "index": 1,
            "input": {"Items": [2]},
            "status": "FAILED",
            "error": "E",
            "cause": "C",
            "start": "s",
            "stop": "t",
        },
        {"index": 0, "input": {"Items": [1]}, "status": "SUCCEEDED", "output": {"n": 1}, "start": "s", "stop": "t"},
    ]
    files = sfn_result_writer.result_files(
        children, "arn:aws:states:r:1:mapRun:m/x:run-id", "arn:aws:states:r:1:stateMachine:m"
    )
    (ok,) = files["SUCCEEDED"]
    (bad,) = files["FAILED"]
    assert json.loads(ok["Output"]) == {"n": 1} and json.loads(ok["Input"]) == {"Items": [1]}
    assert (bad["Error"], bad["Cause"], bad["Status"]) == ("E", "C", "FAILED") and "Output" not in bad
    assert ok["ExecutionArn"].startswith("arn:aws:states:r:1:express:m/run-id/")
