"""Distributed Map definitions that moto's grammar refuses parse: ItemBatcher, EXPRESS children, a ReaderConfig
(MaxItems) on an S3 listing, and an integer ToleratedFailurePercentage.

moto 5.2.5's ANTLR grammar rejects `ItemBatcher` and `"ExecutionType": "EXPRESS"` at CreateStateMachine, and its
ReaderConfig wants an InputType (CSV/JSON) that an S3 listing has not. Rather than change the generated grammar,
the definition is rewritten just before it reaches the parser (those fields taken out, EXPRESS read as STANDARD:
the child runs the same states either way) and the fields taken out are hung on the parsed states, where the
sfn-item-reader, sfn-item-batcher and sfn-result-writer patches read them. The stored definition stays the text
as sent, so describe_state_machine and `scones export` show what AWS would run.
"""

from __future__ import annotations

import json
from typing import Any

NAME = "sfn-map-definition"
WHAT = "Distributed Map definitions with ItemBatcher, EXPRESS children, ReaderConfig on an S3 listing parse"
_PARSE = "moto.stepfunctions.parser.asl.parse.asl_parser"
TOUCHES = (
    f"{_PARSE}:AmazonStateLanguageParser.parse",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map:StateMap",
)
LISTING = "arn:aws:states:::s3:listObjectsV2"
TOLERANCE = {"count": "ToleratedFailureCount", "percentage": "ToleratedFailurePercentage"}


def rewrite(definition: dict) -> tuple[dict, dict[str, dict]]:
    """(the definition moto's grammar accepts, {Map state name: the fields taken out}). Nested Maps included."""
    taken: dict[str, dict] = {}

    def walk(states: dict) -> None:
        for name, state in states.items():
            if not isinstance(state, dict) or state.get("Type") != "Map":
                continue
            found: dict[str, Any] = {}
            if "ItemBatcher" in state:
                found["batcher"] = state.pop("ItemBatcher")
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            config = processor.get("ProcessorConfig") or {}
            if config.get("ExecutionType") == "EXPRESS":
                config["ExecutionType"] = "STANDARD"
                found["express"] = True
            reader = state.get("ItemReader") or {}
            if reader.get("Resource") == LISTING and "ReaderConfig" in reader:
                found["reader_config"] = reader.pop("ReaderConfig")
            percentage = state.get("ToleratedFailurePercentage")
            if isinstance(percentage, int) and not isinstance(percentage, bool):  # moto's grammar wants 10.0, AWS 10
                state["ToleratedFailurePercentage"] = float(percentage)
            if config.get("Mode") == "DISTRIBUTED":  # which tolerances the definition gives (sfn-result-writer)
                found["tolerance"] = [
                    kind for kind in ("count", "percentage") if any(TOLERANCE[kind] + s in state for s in ("", "Path"))
                ]
            if found:
                taken[name] = found
            walk(processor.get("States") or {})

    definition = json.loads(json.dumps(definition))
    walk(definition.get("States") or {})
    return definition, taken


def annotate(program: Any, taken: dict[str, dict]) -> None:
    """Hang what was taken out on the parsed Map states (their iteration component and item reader)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap

    def walk(states: Any) -> None:
        for name, state in getattr(states, "states", {}).items():
            if not isinstance(state, StateMap):
                continue
            found = taken.get(name, {})
            component = state.iteration_component
            component.scones_state = state
            component.scones_batcher = found.get("batcher")
            component.scones_express = bool(found.get("express"))
            component.scones_tolerance = found.get("tolerance")
            if state.item_reader is not None:
                state.item_reader.scones_reader_config = found.get("reader_config")
            walk(getattr(component, "_states", None))

    walk(getattr(program, "states", None))


def apply(context: Any) -> None:
    from moto.stepfunctions.parser.asl.parse import asl_parser

    original = asl_parser.AmazonStateLanguageParser.parse

    def parse(definition: str) -> Any:
        try:
            parsed = json.loads(definition)
        except (TypeError, ValueError):
            return original(definition)  # moto names the syntax error
        if not isinstance(parsed, dict):
            return original(definition)
        rewritten, taken = rewrite(parsed)
        if not taken:
            return original(definition)
        program, tree = original(json.dumps(rewritten))
        annotate(program, taken)
        return program, tree

    asl_parser.AmazonStateLanguageParser.parse = staticmethod(parse)
