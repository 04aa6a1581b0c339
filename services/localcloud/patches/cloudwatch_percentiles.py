"""Percentile statistics (pNN) from the stored values, as CloudWatch answers them (moto answers none).

moto keeps every value put (Values/Counts expanded one datum per count) but its statistics stop at Sum, Average,
Minimum, Maximum and SampleCount: GetMetricData with `Stat: "p95"` gets null values, and GetMetricStatistics
ignores `ExtendedStatistics`. A rollout's latency alarm (ModelLatency p95, scones/rollout.py) then never has a
datapoint. Here a period's pNN is the nearest-rank percentile of its values (the smallest value with at least
NN % of the values at or below it); a period holding only StatisticSets (no values) has none, as on AWS.
"""

from __future__ import annotations

import math
import re
from typing import Any

NAME = "cloudwatch-percentiles"
WHAT = "GetMetricData and GetMetricStatistics answer pNN statistics from the stored values"
TOUCHES = (
    "moto.cloudwatch.models:Statistics.get_statistics_for_type",
    "moto.cloudwatch.models:Statistics.metric_single_values_list",
    "moto.cloudwatch.responses:CloudWatchResponse.get_metric_statistics",
    "moto.cloudwatch.responses:CloudWatchResponse.cloudwatch_backend",
)
PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d{1,2})?|100)$")


def percentile(values: list[float], stat: str) -> float | None:
    """The nearest-rank `stat` (p50, p95, p99.9) of `values`; None without values or for another statistic."""
    found = PERCENTILE.match(stat)
    if not found or not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(float(found.group(1)) / 100 * len(ordered)))
    return ordered[rank - 1]


def apply(context: Any) -> None:
    from moto.cloudwatch.models import Statistics
    from moto.cloudwatch.responses import ActionResult, CloudWatchResponse, InvalidParameterCombination

    standard = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        if PERCENTILE.match(stat):
            return percentile(self.metric_single_values_list, stat)
        return standard(self, stat)

    def get_metric_statistics(self: Any) -> Any:
        statistics = self._get_param("Statistics", [])
        extended = self._get_param("ExtendedStatistics", [])
        if not statistics and not extended:
            raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
        datapoints = self.cloudwatch_backend.get_metric_statistics(
            self._get_param("Namespace"),
            self._get_param("MetricName"),
            self._get_param("StartTime"),
            self._get_param("EndTime"),
            self._get_int_param("Period"),
            statistics,
            unit=self._get_param("Unit"),
            dimensions=self._get_param("Dimensions", []),
        )
        for point in datapoints:
            values = point.metric_single_values_list
            found = {stat: percentile(values, stat) for stat in extended}
            point.extended_statistics = {k: v for k, v in found.items() if v is not None} or None
        return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": datapoints})

    Statistics.get_statistics_for_type = get_statistics_for_type
    CloudWatchResponse.get_metric_statistics = get_metric_statistics
