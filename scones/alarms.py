"""CloudWatch metric alarms, evaluated here: moto stores alarms but never evaluates them.

The semantics are CloudWatch's documented ones (Amazon CloudWatch User Guide, "Evaluating an alarm"):
- the metric is aggregated per `Period` seconds by its `Statistic` (Sum, Average, Minimum, Maximum,
  SampleCount) or `ExtendedStatistic` (pNN);
- the evaluation range is the last `EvaluationPeriods` complete periods;
- the alarm is ALARM when at least `DatapointsToAlarm` (default: EvaluationPeriods) of them breach
  (`ComparisonOperator` against `Threshold`), else OK;
- a period without data is treated as `TreatMissingData` says: notBreaching (good), breaching (bad), ignore
  (skipped; the state stays as it was when nothing is left), missing (the default: skipped; with no datapoint
  at all in the range the alarm is INSUFFICIENT_DATA).
`evaluate` is pure (datapoints in, state out); `fetch` reads the datapoints through CloudWatch's
GetMetricData, aligned to the period, so it works the same against the local cloud and AWS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass
class Alarm:
    name: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    statistic: str  # Sum | Average | Minimum | Maximum | SampleCount | pNN
    period: int
    evaluation_periods: int
    threshold: float
    comparison: str
    datapoints_to_alarm: int | None = None
    treat_missing: str = "missing"
    actions: list[str] = field(default_factory=list)

    @classmethod
    def from_description(cls, found: dict) -> Alarm:
        """One of DescribeAlarms' MetricAlarms."""
        return cls(
            found["AlarmName"],
            found["Namespace"],
            found["MetricName"],
            {d["Name"]: d["Value"] for d in found.get("Dimensions", [])},
            found.get("ExtendedStatistic") or found["Statistic"],
            int(found["Period"]),
            int(found["EvaluationPeriods"]),
            float(found["Threshold"]),
            found["ComparisonOperator"],
            found.get("DatapointsToAlarm"),
            found.get("TreatMissingData") or "missing",
            list(found.get("AlarmActions", [])),
        )

    def breaches(self, value: float) -> bool:
        return COMPARE[self.comparison](value, self.threshold)


@dataclass
class Evaluation:
    state: str
    value: float | None  # the worst datapoint in the range (the one a rollback names)
    reason: str


def evaluate(alarm: Alarm, datapoints: dict[int, float], now: float, previous: str = INSUFFICIENT) -> Evaluation:
    """The alarm's state at `now` (epoch seconds) from `datapoints` {period start (epoch s): value}."""
    if alarm.comparison not in COMPARE:
        raise ValueError(f"alarm {alarm.name}: comparison {alarm.comparison} is not supported")
    last = math.floor(now / alarm.period) * alarm.period  # the current, incomplete period starts here
    starts = [last - alarm.period * (i + 1) for i in range(alarm.evaluation_periods)]
    needed = alarm.datapoints_to_alarm or alarm.evaluation_periods
    present = [(s, datapoints[s]) for s in starts if s in datapoints]
    missing = len(starts) - len(present)
    breaching = [v for _, v in present if alarm.breaches(v)]
    worst = max(breaching, default=None) if alarm.comparison.startswith("Greater") else min(breaching, default=None)
    if worst is None and present:
        worst = present[0][1]
    count = len(breaching) + (missing if alarm.treat_missing == "breaching" else 0)
    about = (
        f"{alarm.metric} {alarm.statistic} {'' if worst is None else f'{worst:g} '}({len(breaching)} of the last "
        f"{alarm.evaluation_periods} periods of {alarm.period} s breach {alarm.comparison} {alarm.threshold:g}, "
        f"{missing} missing)"
    )
    if count >= needed:
        return Evaluation(ALARM, worst, about)
    if not present and alarm.treat_missing == "missing":
        return Evaluation(INSUFFICIENT, None, about)
    if not present and alarm.treat_missing == "ignore":
        return Evaluation(previous, None, about)
    return Evaluation(OK, worst, about)


def since(datapoints: dict[int, float], began: float) -> dict[int, float]:
    """The datapoints of the periods that started at or after `began`: a rollout judges its own candidate, never
    the errors a previous one (rolled back a moment ago, under the same variant name) left in the window."""
    return {start: value for start, value in datapoints.items() if start >= began}


def describe(cloudwatch, names: list[str]) -> dict[str, Alarm]:
    """The named alarms that exist (the caller names those that do not)."""
    found = cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", []) if names else []
    return {a["AlarmName"]: Alarm.from_description(a) for a in found}


def fetch(cloudwatch, alarm: Alarm, now: float) -> dict[int, float]:
    """The alarm's datapoints over its evaluation range (period-aligned), through GetMetricData."""
    last = math.floor(now / alarm.period) * alarm.period
    start = last - alarm.period * alarm.evaluation_periods
    query = {
        "Id": "m",
        "MetricStat": {
            "Metric": {
                "Namespace": alarm.namespace,
                "MetricName": alarm.metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in alarm.dimensions.items()],
            },
            "Period": alarm.period,
            "Stat": alarm.statistic,
        },
    }
    found = cloudwatch.get_metric_data(
        MetricDataQueries=[query],
        StartTime=datetime.fromtimestamp(start, UTC),
        EndTime=datetime.fromtimestamp(last, UTC),
    )
    points: dict[int, float] = {}
    for result in found.get("MetricDataResults", []):
        for when, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            if value is not None:
                points[int(when.timestamp())] = float(value)
    return points
