"""`scones invoke`'s exit status (issue #21): a Map execution whose every item FAILED is one SUCCEEDED execution,
and used to exit 0; now any FAILED image exits 1 with a line saying how many, unless --allow-failures."""

from __future__ import annotations

import json

import pytest
from helpers import load_lambda

from scones import cli, invoke, workflow


@pytest.fixture
def rows(monkeypatch):
    """What the workflow answers, set by each test; no cloud is called."""
    answer: list[workflow.Row] = []
    monkeypatch.setattr(invoke, "invoke", lambda *_a, **_k: answer)
    return answer


def test_every_item_failed_exits_1_and_says_how_many(rows, capsys):
    rows += [workflow.Row(f"data/test/{i}.png", "FAILED", error="LowConfidenceError") for i in range(3)]
    assert cli.main(["invoke", "--batch", "3"]) == 1
    err = capsys.readouterr().err
    assert "3 of 3 image(s) FAILED" in err and "--allow-failures" in err and err.count("\n") == 1


def test_some_failed_with_allow_failures_exits_0(rows, capsys):
    rows += [workflow.Row("a.png", "SUCCEEDED", "bicycle", 0.99), workflow.Row("b.png", "FAILED")]
    assert cli.main(["invoke", "--batch", "2", "--allow-failures"]) == 0
    assert capsys.readouterr().err == ""


def test_all_succeeded_exits_0_and_strict_still_parses(rows, capsys):
    rows += [workflow.Row("a.png", "SUCCEEDED", "bicycle", 0.99)]
    assert cli.main(["invoke", "--batch", "1", "--strict"]) == 0
    assert "--strict is the default now" in capsys.readouterr().err


def test_a_sync_answer_becomes_a_row_and_only_a_published_alert_marks_it():
    ok = {"status": "SUCCEEDED", "executionArn": "x", "output": '{"inferences": [0.1, 0.9], "labels": ["a", "b"]}'}
    row = workflow.row_for_sync(ok, "k.png")
    assert (row.status, row.label, row.confidence, row.alerted) == ("SUCCEEDED", "b", 0.9, False)
    failed = {"status": "FAILED", "executionArn": "x", "error": "LowConfidenceError", "cause": "{}"}
    assert workflow.row_for_sync(failed, "k.png").alerted  # the Fail state follows a published alert only
    alert_failed = dict(failed, error="SNS.NotFoundException")
    assert not workflow.row_for_sync(alert_failed, "k.png").alerted
    assert not workflow.row_for_sync({"status": "TIMED_OUT", "executionArn": "x"}, "k.png").alerted


def lambda_cause(exc: Exception) -> str:
    """A Lambda error as a Step Functions execution's cause carries it: the runtime's JSON error object."""
    return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": []})


@pytest.mark.parametrize(("inferences", "confidence"), [([0.41, 0.59], 0.59), ([0.07, 0.92996], 0.9299999999999999)])
def test_a_low_confidence_sync_answer_carries_the_best_class_from_the_filters_own_error(inferences, confidence):
    # given the filter Lambda's own LowConfidenceError for an image below the threshold 0.93
    filter_ = load_lambda("filter_inferences")
    with pytest.raises(filter_.LowConfidenceError) as raised:
        filter_.filter_inferences(
            {"s3_key": "k.png", "inferences": inferences, "labels": ["bicycle", "motorcycle"]}, 0.93
        )
    answer = {
        "status": "FAILED",
        "executionArn": "x",
        "error": "LowConfidenceError",
        "cause": lambda_cause(raised.value),
    }
    # when StartSyncExecution answers with it (an Express execution has no history to read the inferences from)
    row = workflow.row_for_sync(answer, "k.png")
    # then the row has the best class and its confidence, below the threshold even where four decimals round up to it
    assert (row.label, row.confidence) == ("motorcycle", confidence) and row.confidence < 0.93


def test_sync_reaches_the_invocation(monkeypatch):
    seen = {}
    monkeypatch.setattr(invoke, "invoke", lambda *a, **k: seen.update(k) or [])
    cli.main(["invoke", "--key", "a.png", "--sync"])
    assert seen == {"sync": True}


@pytest.mark.parametrize(("extra", "code"), [((), 1), (("--allow-failures",), 0)])
def test_a_backfill_with_failed_images_exits_as_invoke_does(monkeypatch, capsys, extra, code):
    from scones import backfill

    done = backfill.Backfill(
        "b",
        "p/",
        "arn:x",
        "SUCCEEDED",
        1.0,
        rows=[workflow.Row("p/a.png", "SUCCEEDED", "bicycle", 0.99), workflow.Row("p/b.png", "FAILED")],
    )
    monkeypatch.setattr(backfill, "run", lambda *_a, **_k: done)
    assert cli.main(["invoke", "--prefix", "s3://b/p/", *extra]) == code
    err = capsys.readouterr().err
    assert ("1 of 2 image(s) FAILED" in err) == (code == 1)
