"""Render a state machine with each state's status from an execution's history (PNG or SVG, matplotlib).

Colours follow the Step Functions console: green succeeded, orange caught error, red failed, blue running,
grey not run. A Map state's iteration is drawn in a frame beside it, with per-state run and error counts.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scones import stacks, workflow
from scones.core import aws
from scones.core.errors import NotReadyError, UsageError
from scones.scoring import save_figure

COLOURS = {
    "SUCCEEDED": "#2e9e44",
    "CAUGHT_ERROR": "#f0932b",
    "FAILED": "#d63031",
    "RUNNING": "#0984e3",
    "NOT_RUN": "#b2bec3",
}
BOX_W, BOX_H, GAP_X, GAP_Y = 2.6, 0.62, 0.5, 0.55


@dataclass
class StateStatus:
    entered: int = 0
    exited: int = 0
    errors: int = 0
    status: str = "NOT_RUN"


@dataclass
class Layout:
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0


def statuses(events: list[dict], execution_status: str) -> dict[str, StateStatus]:
    """Per state name: how often it was entered, exited and failed, and the resulting status."""
    by_id = {e["id"]: e for e in events}
    found: dict[str, StateStatus] = {}
    for event in events:
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        if details:
            state = found.setdefault(details["name"], StateStatus())
            if event["type"].endswith("StateEntered"):
                state.entered += 1
                if event["type"] == "FailStateEntered":
                    state.errors += 1
            else:
                state.exited += 1
    for event in events:
        if not event["type"].endswith(("Failed", "TimedOut")) or event["type"].startswith(("Execution", "Map")):
            continue
        cursor = by_id.get(event.get("previousEventId"))
        while cursor is not None and not cursor["type"].endswith("StateEntered"):
            cursor = by_id.get(cursor.get("previousEventId"))
        if cursor is not None:
            found.setdefault(cursor["stateEnteredEventDetails"]["name"], StateStatus()).errors += 1
    for state in found.values():
        if state.entered and state.exited < state.entered:
            state.status = "RUNNING" if execution_status == "RUNNING" else "FAILED"
        elif state.errors and state.entered and state.exited == state.entered and state.errors >= state.entered:
            state.status = "FAILED" if not state.exited else "CAUGHT_ERROR"
        elif state.errors:
            state.status = "CAUGHT_ERROR"
        elif state.entered:
            state.status = "SUCCEEDED"
    for state in found.values():  # a Fail state "exits" in some histories; it is still a failure
        if state.errors and state.status == "SUCCEEDED":
            state.status = "FAILED"
    return found


def edges(states: dict) -> list[tuple[str, str, str]]:
    """(from, to, kind) with kind next | choice | catch."""
    found = []
    for name, state in states.items():
        if "Next" in state:
            found.append((name, state["Next"], "next"))
        for choice in state.get("Choices", []):
            found.append((name, choice["Next"], "choice"))
        if "Default" in state:
            found.append((name, state["Default"], "choice"))
        for catch in state.get("Catch", []):
            found.append((name, catch["Next"], "catch"))
    return found


def layout(definition: dict) -> Layout:
    """Layers by longest path from StartAt (normal edges first, then catch edges); catch paths to the right."""
    states = definition["States"]
    layer = {definition["StartAt"]: 0}
    column = {definition["StartAt"]: 0}
    pending = [definition["StartAt"]]
    all_edges = edges(states)
    guard = 0
    while pending and guard < 10_000:
        guard += 1
        source = pending.pop(0)
        for src, dst, kind in all_edges:
            if src != source or dst not in states:
                continue
            new_layer = layer[src] + 1
            new_column = column[src] + (1 if kind == "catch" else 0)
            if dst not in layer or (new_layer > layer[dst] and new_layer < len(states) + 1):
                layer[dst] = new_layer
                column[dst] = max(column.get(dst, 0), new_column)
                pending.append(dst)
    for name in states:  # unreachable states still get drawn, at the bottom
        if name not in layer:
            layer[name], column[name] = len(states), 0
    occupied: Counter = Counter()
    result = Layout()
    for name in sorted(states, key=lambda n: (layer[n], column[n])):
        slot = column[name] + occupied[(layer[name], column[name])]
        occupied[(layer[name], column[name])] += 1
        x, y = slot * (BOX_W + GAP_X), -layer[name] * (BOX_H + GAP_Y)
        result.positions[name] = (x, y)
    result.width = max(x for x, _ in result.positions.values()) + BOX_W
    result.height = -min(y for _, y in result.positions.values()) + BOX_H
    return result


def _draw(ax, definition: dict, found: dict[str, StateStatus], origin: tuple[float, float]) -> Layout:
    from matplotlib.patches import FancyBboxPatch

    plan = layout(definition)
    ox, oy = origin
    centre = {}
    for name, (x, y) in plan.positions.items():
        x, y = x + ox, y + oy
        state = found.get(name, StateStatus())
        kind = definition["States"][name]["Type"]
        ax.add_patch(
            FancyBboxPatch(
                (x, y - BOX_H),
                BOX_W,
                BOX_H,
                boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=COLOURS[state.status],
                edgecolor="#2d3436",
                linewidth=1.2,
            )
        )
        counts = ""
        if state.entered > 1:  # inside a Map: how many items ran it, and how many of those errors
            counts = f"  ×{state.entered}" + (f", {state.errors} err" if state.errors else "")
        ax.text(
            x + BOX_W / 2, y - BOX_H * 0.38, name, ha="center", va="center", fontsize=8.5, color="white", weight="bold"
        )
        ax.text(
            x + BOX_W / 2,
            y - BOX_H * 0.75,
            f"{kind} · {state.status.replace('_', ' ').lower()}{counts}",
            ha="center",
            va="center",
            fontsize=6.5,
            color="white",
        )
        centre[name] = (x + BOX_W / 2, y - BOX_H / 2)
    for src, dst, kind in edges(definition["States"]):
        if dst not in centre:
            continue
        (x1, y1), (x2, y2) = centre[src], centre[dst]
        start = (x1, y1 - BOX_H / 2) if y2 < y1 else (x1 + BOX_W / 2, y1)
        end = (x2, y2 + BOX_H / 2) if y2 < y1 else (x2 - BOX_W / 2, y2)
        bend = 0.0
        if abs(x1 - x2) < 1e-6 and y1 - y2 > BOX_H + GAP_Y + 1e-6:  # skips a layer: go round the box between
            start, end, bend = (x1 + BOX_W / 2, y1), (x2 + BOX_W / 2, y2), -0.45
        style = {"next": ("-", "#2d3436"), "choice": ("-", "#6c5ce7"), "catch": ("--", "#e17055")}[kind]
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops={
                "arrowstyle": "->",
                "linestyle": style[0],
                "color": style[1],
                "lw": 1.1,
                "connectionstyle": f"arc3,rad={bend}",
            },
        )
    for name, state in definition["States"].items():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            x, y = plan.positions[name]
            inner_origin = (ox + plan.width + 1.2, y + oy + 0.2)
            inner = _draw(ax, processor, found, inner_origin)
            from matplotlib.patches import Rectangle

            ax.add_patch(
                Rectangle(
                    (inner_origin[0] - 0.3, inner_origin[1] - inner.height - 0.5),
                    inner.width + 0.6,
                    inner.height + 0.9,
                    fill=False,
                    linestyle=":",
                    edgecolor="#636e72",
                )
            )
            ax.text(
                inner_origin[0] - 0.25,
                inner_origin[1] + 0.25,
                f"{name}: each item",
                fontsize=7.5,
                color="#636e72",
                style="italic",
            )
            ax.annotate(
                "",
                xy=(inner_origin[0] - 0.3, centre[name][1]),
                xytext=(centre[name][0] + BOX_W / 2, centre[name][1]),
                arrowprops={"arrowstyle": "->", "linestyle": ":", "color": "#636e72"},
            )
            plan.width = max(plan.width, inner_origin[0] - ox + inner.width + 0.6)
            plan.height = max(plan.height, -(y + oy - inner_origin[1]) + inner.height + 0.8)
    return plan


def render(definition: dict, found: dict[str, StateStatus], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = layout(definition)
    fig, ax = plt.subplots(figsize=(8, 6))
    drawn = _draw(ax, definition, found, (0.0, 0.0))
    width, height = max(drawn.width, plan.width), max(drawn.height, plan.height)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-height - 0.9, 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(
        handles,
        [s.replace("_", " ").lower() for s in COLOURS],
        loc="lower left",
        fontsize=7,
        ncol=5,
        frameon=False,
        bbox_to_anchor=(0, -0.06),
    )
    fig.set_size_inches(max(6.0, (width + 1) * 0.9), max(4.0, (height + 2) * 0.9))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out, dpi=120)


class NoHistoryError(UsageError):
    """An Express machine keeps no execution history: there is nothing to draw from."""


def no_history(machine: str) -> NoHistoryError:
    # Its runs are in CloudWatch Logs (template.yaml's ClassifyImageLogGroup), not read here: the local cloud
    # delivers no Step Functions logs, so a reader could not be tested off AWS (docs/workflow.md).
    return NoHistoryError(
        f"{machine} is an Express state machine: it keeps no execution history to draw (its runs are logged to "
        "CloudWatch Logs, docs/workflow.md)",
        "scones graph --batch, or scones deploy --workflow-type standard to draw single-image runs",
    )


def draw(
    out: Path, execution: str | None = None, batch: bool = False, status: str | None = None
) -> tuple[Path, str, str]:
    """Render an execution (default: the newest of the deployed machine); returns (file, execution ARN, status)."""
    sfn = aws.client("stepfunctions")
    arn = execution
    if arn is not None and ":express:" in arn:  # an Express execution's ARN (StartSyncExecution's answer)
        raise no_history(arn.split(":")[-3])
    if arn is None:
        machine = stacks.outputs()[stacks.BATCH if batch else stacks.SINGLE]
        described_machine = sfn.describe_state_machine(stateMachineArn=machine)
        if described_machine.get("type") == "EXPRESS":
            raise no_history(described_machine["name"])
        executions = sfn.list_executions(stateMachineArn=machine, maxResults=100)["executions"]
        executions = [e for e in executions if status in (None, e["status"])]
        if not executions:
            raise NotReadyError("no execution to draw", "scones invoke (or pass --execution ARN)")
        arn = max(executions, key=lambda e: e["startDate"])["executionArn"]
    described = sfn.describe_execution(executionArn=arn)
    definition = json.loads(sfn.describe_state_machine_for_execution(executionArn=arn)["definition"])
    found = statuses(workflow.history(sfn, arn), described["status"])
    title = f"{arn.split(':')[-2]} / {described['name']}: {described['status']}"
    if described.get("error"):
        title += f" ({described['error']})"
    return render(definition, found, out, title), arn, described["status"]
