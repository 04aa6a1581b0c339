"""The result table's alert column is read from the execution history, not inferred from the status."""

from __future__ import annotations

import json

from scones import workflow


class History:
    """A Map execution's history shaped as Step Functions records it (ids chained by previousEventId)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, kind: str, previous: int, **details) -> int:
        event = {"id": len(self.events) + 1, "type": kind, "previousEventId": previous, **details}
        self.events.append(event)
        return event["id"]

    def iteration(self, index: int, key: str, published: bool) -> None:
        """One item: a failed filter step, then an sns:publish task that succeeds or fails."""
        at = self.add("MapIterationStarted", 3, mapIterationStartedEventDetails={"name": "Each", "index": index})
        at = self.add("TaskStateEntered", at, stateEnteredEventDetails={"name": "FilterInferences"})
        at = self.add(
            "TaskFailed", at, taskFailedEventDetails={"resourceType": "lambda", "error": "LowConfidenceError"}
        )
        message = json.dumps({"s3_key": key, "status": "FAILED"})
        params = json.dumps({"TopicArn": "arn:aws:sns:us-east-1:000000000000:t", "Message": message})
        scheduled = {"resourceType": "sns", "resource": "publish", "parameters": params}
        at = self.add("TaskScheduled", at, taskScheduledEventDetails=scheduled)
        at = self.add("TaskStarted", at, taskStartedEventDetails={"resourceType": "sns", "resource": "publish"})
        if published:
            output = json.dumps({"MessageId": f"m-{index}"})
            self.add("TaskSucceeded", at, taskSucceededEventDetails={"resourceType": "sns", "output": output})
        else:
            self.add(
                "TaskFailed", at, taskFailedEventDetails={"resourceType": "sns", "error": "SNS.AuthorizationError"}
            )


class FakeSfn:
    def __init__(self, history: History, results: list[dict]) -> None:
        self.history, self.results = history, results

    def start_execution(self, **kwargs):
        return {"executionArn": "arn:aws:states:us-east-1:000000000000:execution:m:e"}

    def describe_execution(self, executionArn):
        output = json.dumps({"s3_bucket": "b", "results": self.results})
        return {"executionArn": executionArn, "status": "SUCCEEDED", "output": output}

    def get_execution_history(self, **kwargs):
        return {"events": self.history.events}

    def get_paginator(self, operation: str):
        assert operation == "get_execution_history"
        fake = self

        class OnePage:
            def paginate(self, **kwargs):
                yield fake.get_execution_history(**kwargs)

        return OnePage()


def test_alerts_are_traced_to_their_map_item():
    history = History()
    history.iteration(2, "c.png", published=True)  # iterations interleave: order in the history is not input order
    history.iteration(0, "a.png", published=False)
    history.iteration(1, "b.png", published=True)
    sent = workflow.alerts_sent(history.events)
    assert sorted((a.item, a.s3_key, a.message_id) for a in sent) == [(1, "b.png", "m-1"), (2, "c.png", "m-2")]


def test_a_failed_item_whose_publish_failed_is_not_marked_alerted():
    history = History()
    history.iteration(0, "a.png", published=False)
    history.iteration(1, "b.png", published=True)
    results = [{"s3_key": k, "status": "FAILED", "error": "LowConfidenceError"} for k in ("a.png", "b.png")]
    results.append({"s3_key": "c.png", "status": "SUCCEEDED", "inferences": [0.99, 0.01], "labels": ["x", "y"]})
    _, rows = workflow.run_batch(FakeSfn(history, results), "arn:machine", "b", ["a.png", "b.png", "c.png"])
    assert [(r.key, r.status, r.alerted) for r in rows] == [
        ("a.png", "FAILED", False),
        ("b.png", "FAILED", True),
        ("c.png", "SUCCEEDED", False),
    ]
    assert "[SNS alert sent]" in workflow.table(rows).splitlines()[2]
    assert "[SNS alert sent]" not in workflow.table(rows).splitlines()[1]


def test_the_single_flow_alert_names_the_input_key():
    message = json.dumps({"execution": "arn:e", "error": "ImageNotFoundError", "input": {"s3_key": "k.png"}})
    events = [
        {
            "id": 1,
            "type": "TaskScheduled",
            "previousEventId": 0,
            "taskScheduledEventDetails": {"resourceType": "sns", "parameters": json.dumps({"Message": message})},
        },
        {"id": 2, "type": "TaskStarted", "previousEventId": 1},
        {
            "id": 3,
            "type": "TaskSucceeded",
            "previousEventId": 2,
            "taskSucceededEventDetails": {"resourceType": "sns", "output": json.dumps({"MessageId": "m"})},
        },
    ]
    assert workflow.alerts_sent(events) == [workflow.Alert("m", "k.png", None)]
    assert workflow.alerts_sent(events[:2]) == []  # scheduled but never succeeded: no alert


def test_the_table_names_the_next_step_for_each_error():
    rows = [
        workflow.Row("a.png", "FAILED", error="EndpointUnavailableError", cause="down"),
        workflow.Row("b.png", "FAILED", error="LowConfidenceError", cause="0.6 < 0.93"),
        workflow.Row("c.png", "SUCCEEDED", label="bicycle", confidence=0.99),
    ]
    text = workflow.table(rows)
    assert "EndpointUnavailableError: the endpoint did not answer (retried); run scones endpoint status" in text
    assert "LowConfidenceError: below the threshold" in text and "scones deploy --threshold" in text
