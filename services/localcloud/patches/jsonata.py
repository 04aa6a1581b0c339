"""JSONata state machines evaluate with the pure-Python jsonata-python package (moto's evaluator is a stub)."""

from __future__ import annotations

import json
from typing import Any

NAME = "jsonata"
WHAT = "JSONata expressions evaluate (jsonata-python)"
TOUCHES = (
    "moto.stepfunctions.parser.asl.jsonata.jsonata:_eval_jsonata",
    "moto.stepfunctions.parser.asl.jsonata.jsonata:JSONataException",
    "jsonata:Jsonata",
)


def apply(context: Any) -> None:
    import jsonata
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
        except Exception as exc:  # jsonata-python raises its own JException and plain errors
            raise moto_jsonata.JSONataException("JSONataError", str(exc)) from exc
        # jsonata-python returns list subclasses (sequences); hand moto plain JSON values.
        return None if result is None else json.loads(json.dumps(result))

    moto_jsonata._eval_jsonata = evaluate
