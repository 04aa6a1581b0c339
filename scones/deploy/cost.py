"""What `scones deploy --target aws` will cost, read off the requests it would send (scones.deploy.plan).

The instance types, counts, runtimes and schedule come from the planned calls themselves (CreateTrainingJob,
CreateEndpointConfig, RegisterScalableTarget, CreateSchedule's Processing job), so the estimate follows any
change to what is sent. Prices come from scones.deploy.prices; `estimate` does the arithmetic, `render` the
words. Every figure is a ceiling at list price: a job bills the seconds it runs, not its maximum.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from scones.deploy import plan, prices
from scones.deploy.spec import Spec


@dataclass(frozen=True)
class Cost:
    """One billable thing: what it is, the rate it bills at, and the amounts that follow (USD)."""

    what: str  # training job | endpoint | monitoring job | serverless endpoint
    resource: str  # "ml.g4dn.xlarge x1", "3072 MB"
    rate: float | None  # USD per instance-hour (serverless: per second at this memory); None: not in the table
    basis: str = ""  # how the amounts follow from the rate, in words
    amounts: dict[str, float] = field(default_factory=dict)  # period -> USD: job | run | day | hour | month | …
    ceiling: bool = False  # the amounts are maxima (a job bills the seconds it runs, not its maximum)
    max_instances: int | None = None  # autoscaling maximum: the "max hour" and "max month" amounts
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    region: str
    table: prices.Table | None  # None: no prices for this region
    costs: tuple[Cost, ...] = ()


def runs_per_day(expression: str) -> float | None:
    """How often an EventBridge Scheduler expression fires per day: rate(…), or cron(…) with every day alike.

    None for one-time `at(…)` schedules and for crons that differ from day to day.
    """
    rate = re.fullmatch(r"rate\(\s*(\d+)\s+(minutes?|hours?|days?)\s*\)", expression.strip())
    if rate:
        value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        return {"minute": 1440, "hour": 24, "day": 1}[unit] / value
    cron = re.fullmatch(r"cron\((.*)\)", expression.strip())
    if not cron:
        return None
    fields = cron.group(1).split()
    if len(fields) != 6 or any(f not in ("*", "?") for f in fields[2:5]):
        return None
    minutes, hours = _cron_values(fields[0], 0, 59), _cron_values(fields[1], 0, 23)
    return float(len(minutes) * len(hours)) if minutes and hours else None


def _cron_values(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            start, end = (int(x) for x in span.split("-", 1))
        elif span.isdigit():
            start = int(span)
            end = high if step else start
        else:
            return set()  # L, W, #: not every day alike
        values.update(range(start, end + 1, int(step) if step else 1))
    return {v for v in values if low <= v <= high}


def _calls(steps: list[plan.Step]) -> dict[str, dict]:
    return {call.operation: call.params for step in steps for call in step.calls}


def _training(params: dict, table: prices.Table) -> Cost:
    resources, stopping = params["ResourceConfig"], params["StoppingCondition"]
    kind, count = resources["InstanceType"], resources.get("InstanceCount", 1)
    hours = stopping["MaxRuntimeInSeconds"] / 3600
    rate = table.hourly("training", kind)
    notes = ["a finished job with the same code and settings is reused: then it costs nothing"]
    if params.get("EnableManagedSpotTraining"):
        notes.insert(0, "spot: this is the on-demand ceiling; spot usually costs less")
    if rate is None:
        return Cost("training job", f"{kind} x{count}", None, notes=tuple(notes))
    return Cost(
        "training job",
        f"{kind} x{count}",
        rate,
        f"{usd(rate)}/h x {hours:g} h max runtime",
        {"job": rate * hours * count},
        ceiling=True,
        notes=tuple(notes),
    )


def _endpoint(config: dict, scaling: dict | None, table: prices.Table) -> Cost:
    variant = config["ProductionVariants"][0]
    if "ServerlessConfig" in variant:
        serverless = variant["ServerlessConfig"]
        memory, concurrency = serverless["MemorySizeInMB"], serverless["MaxConcurrency"]
        if table.serverless_gb_s is None:
            return Cost("serverless endpoint", f"{memory} MB", None)
        per_second = table.serverless_gb_s * memory / 1024
        return Cost(
            "serverless endpoint",
            f"{memory} MB",
            per_second,
            f"{usd(table.serverless_gb_s)} per GB-second x {memory / 1024:g} GB, only while requests run",
            {"second": per_second, "busy hour": per_second * 3600 * concurrency},
            notes=(f"busy hour: {concurrency} requests in flight all hour (MaxConcurrency); idle costs nothing",),
        )
    kind, count = variant["InstanceType"], variant.get("InitialInstanceCount", 1)
    rate = table.hourly("hosting", kind)
    if rate is None:
        return Cost("endpoint", f"{kind} x{count}", None)
    amounts = {"hour": rate * count, "month": rate * count * prices.HOURS_PER_MONTH}
    most = scaling.get("MaxCapacity") if scaling else None
    if most is not None and most > count:
        amounts.update({"max hour": rate * most, "max month": rate * most * prices.HOURS_PER_MONTH})
    else:
        most = None
    return Cost(
        "endpoint",
        f"{kind} x{count}",
        rate,
        f"{usd(rate)}/h per instance x {prices.HOURS_PER_MONTH} h a month",
        amounts,
        max_instances=most,
        notes=("bills every hour until `scones clean --target aws`",),
    )


def _monitoring(schedule: dict, table: prices.Table) -> Cost:
    job = schedule["Target"]["Input"]
    job = json.loads(job) if isinstance(job, str) else job
    cluster = job["ProcessingResources"]["ClusterConfig"]
    kind, count = cluster["InstanceType"], cluster.get("InstanceCount", 1)
    hours = job["StoppingCondition"]["MaxRuntimeInSeconds"] / 3600
    runs = runs_per_day(schedule["ScheduleExpression"])
    rate = table.hourly("processing", kind)
    if rate is None:
        return Cost("monitoring job", f"{kind} x{count}", None)
    per_run = rate * hours * count
    if runs is None:
        basis = f"{usd(rate)}/h x {hours:g} h max runtime; {schedule['ScheduleExpression']}: runs per day vary"
        return Cost("monitoring job", f"{kind} x{count}", rate, basis, {"run": per_run}, ceiling=True)
    return Cost(
        "monitoring job",
        f"{kind} x{count}",
        rate,
        f"{usd(rate)}/h x {hours:g} h max runtime x {runs:g} runs a day ({schedule['ScheduleExpression']})",
        {"run": per_run, "day": per_run * runs, "month": per_run * runs * prices.HOURS_PER_MONTH / 24},
        ceiling=True,
        notes=("a run bills the seconds it takes, usually minutes",),
    )


def estimate(steps: list[plan.Step], region: str) -> Estimate:
    """The estimate for a plan (scones.deploy.plan.build) in a region; no prices for it: an empty estimate."""
    table = prices.table(region)
    if table is None:
        return Estimate(region, None)
    calls, costs = _calls(steps), []
    if "create_training_job" in calls:
        costs.append(_training(calls["create_training_job"], table))
    if "create_endpoint_config" in calls:
        costs.append(_endpoint(calls["create_endpoint_config"], calls.get("register_scalable_target"), table))
    if "create_schedule" in calls:
        costs.append(_monitoring(calls["create_schedule"], table))
    return Estimate(region, table, tuple(costs))


def for_spec(spec: Spec) -> Estimate:
    """The estimate for what `scones deploy --target aws` would send for this spec (builds the plan; calls nothing)."""
    return estimate(plan.build(spec, image=lambda *_: "<image>"), spec.region)


# --- printing ----------------------------------------------------------------------------------------


def usd(amount: float) -> str:
    """Dollars and cents; amounts under a cent with their significant digits ($0.00006), never as 6e-05."""
    if amount >= 0.01 or amount == 0:
        return f"${amount:,.2f}" if amount >= 1 or round(amount, 2) == amount else f"${amount:.4g}"
    return f"${amount:.10f}".rstrip("0")


_PERIODS = {"second": "per second of inference", "busy hour": "per busy hour"}


def _amounts(item: Cost) -> tuple[str, str]:
    main = [f"{usd(v)} {_PERIODS.get(k, 'per ' + k)}" for k, v in item.amounts.items() if not k.startswith("max ")]
    most = [f"{usd(v)} per {k.removeprefix('max ')}" for k, v in item.amounts.items() if k.startswith("max ")]
    return ("at most " if item.ceiling else "") + ", ".join(main), ", ".join(most)


def render(found: Estimate) -> str:
    """The estimate as the deploy and the dry run print it."""
    if found.table is None:
        return (
            f"cost estimate: no estimate for {found.region} (scones/deploy/prices.py lists "
            f"{', '.join(sorted(prices.TABLES))}); see {prices.SOURCE}\n"
        )
    lines = [
        f"cost estimate: approximate on-demand list prices for {found.region} as of {found.table.as_of}, in USD "
        f"({prices.SOURCE})"
    ]
    indent = " " * 22
    for item in found.costs:
        head = f"  {item.what:<20}{item.resource:<20}"
        if item.rate is None:
            lines.append(f"{head}no price for it in the {found.region} table")
            lines += [indent + note for note in item.notes]
            continue
        main, most = _amounts(item)
        lines.append(head + main)
        lines.append(indent + item.basis)
        if most:
            lines.append(f"{indent}autoscaling up to {item.max_instances} instances: at most {most}")
        lines += [indent + note for note in item.notes]
    lines.append("  not included: S3, Lambda, Step Functions, CloudWatch (cents at this project's volumes)")
    return "\n".join(lines) + "\n"
