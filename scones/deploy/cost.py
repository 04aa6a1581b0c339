"""What `scones deploy --target aws` will cost, read off the requests it would send (scones.deploy.plan).

The instance types, counts, runtimes and schedule come from the planned calls themselves (CreateTrainingJob,
CreateEndpointConfig, RegisterScalableTarget, CreateSchedule's Processing job), so the estimate follows any
change to what is sent. Prices come from scones.deploy.prices; `estimate` does the arithmetic, `render` the
words. Every figure is a ceiling at list price: a job bills the seconds it runs, not its maximum.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from scones.core.settings import ROOT
from scones.deploy import plan, prices, requests
from scones.deploy.spec import Spec


@dataclass(frozen=True)
class Cost:
    """One billable thing: what it is, the rate it bills at, and the amounts that follow (USD)."""

    what: str  # training job | endpoint | shadow variant | monitoring job | serverless endpoint
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
    workflow_type: str = "STANDARD"  # the single-image machine the stack would deploy (its WorkflowType parameter)


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


def _shadow(variant: dict, table: prices.Table) -> Cost:
    """--shadow: the shadow variant runs instances of its own beside production's, whatever share it is sent."""
    kind, count = variant["InstanceType"], variant.get("InitialInstanceCount", 1)
    rate = table.hourly("hosting", kind)
    notes = ("answers mirrored requests only, yet bills every hour like production until deployed without --shadow",)
    if rate is None:
        return Cost("shadow variant", f"{kind} x{count}", None, notes=notes)
    return Cost(
        "shadow variant",
        f"{kind} x{count}",
        rate,
        f"{usd(rate)}/h per instance x {prices.HOURS_PER_MONTH} h a month",
        {"hour": rate * count, "month": rate * count * prices.HOURS_PER_MONTH},
        notes=notes,
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
    workflow = (calls.get("create_stack", {}).get("Parameters") or {}).get("WorkflowType", "STANDARD")
    if "create_training_job" in calls:
        costs.append(_training(calls["create_training_job"], table))
    if "create_endpoint_config" in calls:
        config = calls["create_endpoint_config"]
        costs.append(_endpoint(config, calls.get("register_scalable_target"), table))
        costs += [_shadow(variant, table) for variant in config.get("ShadowProductionVariants", [])]
    if "create_schedule" in calls:
        costs.append(_monitoring(calls["create_schedule"], table))
    return Estimate(region, table, tuple(costs), workflow)


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
    if found.table.sfn_express_gb_s is not None:
        lines.append(million_line(found.table, chosen=found.workflow_type))
    lines.append("  not included: CloudWatch, data transfer, free tiers")
    return "\n".join(lines) + "\n"


# --- per image: `scones cost` ---------------------------------------------------------------------------------
#
# What a number of images costs through each way of running the workflow, from the one price table. Every
# figure below is an assumption printed beside the result; the ones marked "assumed" are not measured on AWS.

TEMPLATE = ROOT / "template.yaml"
SINGLE_ASL = ROOT / "statemachine" / "classify_image.asl.json"
# the Lambdas in the order a workflow runs them (template.yaml FunctionName suffixes)
LAMBDAS = ("serialize-image-data", "classify-image", "filter-inferences")


@dataclass(frozen=True)
class Workload:
    """The assumptions behind `scones cost`, each printed with the figures."""

    lambda_ms: tuple[float, ...] = (40.0, 60.0, 3.0)  # assumed billed duration per image, in LAMBDAS' order
    lambda_mb: tuple[int, ...] | None = None  # None: template.yaml's MemorySize of each function
    express_overhead_ms: float = 100.0  # assumed: the Express execution's own time beside its Lambdas
    express_mb: int = 64  # Express bills at least 64 MB, in 100 ms steps
    batch: int = 100  # backfill: images per child execution (Distributed Map ItemBatcher MaxItemsPerBatch)
    list_page: int = 1000  # backfill: keys per ListObjectsV2 page (the Map's ItemReader)
    endpoint_instance: str = "ml.m5.large"
    endpoint_img_s: float = 1185.0  # measured: our server on 2 cores, capture on (docs/benchmarks.md)
    records_per_capture_file: int = 1000  # assumed: one capture PUT per this many records
    capture_kb: float = 3.6  # measured: 360 MB of capture JSON per 100,000 records (bench/bench_monitor.py)
    monitor_records_per_vcpu_s: float = requests.MONITOR_RECORDS_PER_VCPU_S
    monitor_start_s: float = 300.0  # assumed: container start and pip install of each hourly run

    def memories(self) -> tuple[int, ...]:
        return self.lambda_mb or template_memory()


def template_memory(path: Path = TEMPLATE) -> tuple[int, ...]:
    """Each of LAMBDAS' MemorySize in template.yaml (MB), read off the text (no YAML parser needed)."""
    text = path.read_text()
    sizes = []
    for name in LAMBDAS:
        found = re.search(rf"-{re.escape(name)}\"\}}(?:(?!Type: AWS::).)*?MemorySize: (\d+)", text, re.S)
        if not found:
            raise ValueError(f"{path}: no MemorySize for the {name} function")
        sizes.append(int(found.group(1)))
    return tuple(sizes)


def success_path(path: Path = SINGLE_ASL) -> list[str]:
    """The states one successful execution enters, StartAt to End (each is a Standard state transition)."""
    definition = json.loads(path.read_text())
    states, name, seen = definition["States"], definition["StartAt"], []
    while name and name not in seen:
        seen.append(name)
        state = states[name]
        if state.get("End") or state["Type"] in ("Succeed", "Fail"):
            break
        name = state.get("Next") or next(iter(state.get("Choices", [])), {}).get("Next") or state.get("Default")
    return seen


@dataclass(frozen=True)
class Line:
    """One row of `scones cost`: USD per way (standard, express, backfill) and the quantities behind them."""

    what: str
    usd: tuple[float, float, float]
    quantity: tuple[str, str, str] = ("", "", "")


WAYS = ("Standard", "Express", "backfill")


def per_images(images: int, table: prices.Table, work: Workload = Workload()) -> list[Line]:
    """What `images` images cost through a Standard and an Express single-image workflow and a backfill
    (a Distributed Map of Express children, `work.batch` images each). The last line is the total."""
    memories = work.memories()
    gb_s = sum(ms / 1000 * mb / 1024 for ms, mb in zip(work.lambda_ms, memories, strict=True))  # per image
    batches = math.ceil(images / work.batch)
    transitions = len(success_path())
    # Step Functions: Standard bills transitions; Express bills requests and memory-time in 100 ms steps
    single_s = math.ceil((sum(work.lambda_ms) + work.express_overhead_ms) / 100) / 10
    batch_s = math.ceil((sum(work.lambda_ms) * work.batch + work.express_overhead_ms) / 100) / 10
    express_gb_s = work.express_mb / 1024
    parent = batches + 3  # the backfill's Standard parent: assumed one transition per child started, and 3 more
    sfn = (
        images * transitions * table.sfn_standard_per_thousand / 1000,
        images * (table.sfn_express_per_million / 1e6 + single_s * express_gb_s * table.sfn_express_gb_s),
        parent * table.sfn_standard_per_thousand / 1000
        + batches * (table.sfn_express_per_million / 1e6 + batch_s * express_gb_s * table.sfn_express_gb_s),
    )
    invocations = (images * len(LAMBDAS), images * len(LAMBDAS), batches * len(LAMBDAS))
    gets, puts = images, math.ceil(images / work.records_per_capture_file)
    lists = math.ceil(images / work.list_page)
    s3 = gets * table.s3_get_per_thousand / 1000 + puts * table.s3_put_per_thousand / 1000
    hours = images / work.endpoint_img_s / 3600
    hosting = table.hourly("hosting", work.endpoint_instance) or math.nan
    stored_gb = images * work.capture_kb / 1e6
    kind = requests.monitor_instance_type(images)
    vcpus = dict(requests.MONITOR_INSTANCES)[kind]
    read_s = images / (vcpus * work.monitor_records_per_vcpu_s)
    monitoring = read_s / 3600 * (table.hourly("processing", kind) or math.nan)
    lines = [
        Line(
            "Step Functions",
            sfn,
            (
                f"{images * transitions:,} transitions",
                f"{images:,} requests x {single_s:g} s",
                f"{parent:,} transitions + {batches:,} x {batch_s:g} s",
            ),
        ),
        Line(
            "Lambda requests",
            tuple(n * table.lambda_per_million / 1e6 for n in invocations),
            tuple(f"{n:,}" for n in invocations),
        ),
        Line("Lambda GB-seconds", (images * gb_s * table.lambda_gb_s,) * 3, (f"{images * gb_s:,.0f} GB-s",) * 3),
        Line("endpoint instance-hours", (hours * hosting,) * 3, (f"{hours:,.2f} h",) * 3),
        Line(
            "S3 requests",
            (s3, s3, s3 + lists * table.s3_put_per_thousand / 1000),
            (f"{gets:,} GET, {puts:,} PUT",) * 2 + (f"{gets:,} GET, {puts:,} PUT, {lists:,} LIST",),
        ),
        Line("capture storage, a month", (stored_gb * table.s3_gb_month,) * 3, (f"{stored_gb:,.2f} GB",) * 3),
        Line("monitoring job, reading", (monitoring,) * 3, (f"{read_s:,.0f} s on {kind}",) * 3),
    ]
    total = tuple(sum(line.usd[i] for line in lines) for i in range(3))
    return [*lines, Line("total", total)]


def assumptions(work: Workload, table: prices.Table) -> list[str]:
    memories = work.memories()
    path = success_path()
    hourly_start = work.monitor_start_s / 3600 * (table.hourly("processing", "ml.m5.large") or math.nan)
    each = zip(LAMBDAS, work.lambda_ms, memories, strict=True)
    return [
        f"Lambdas {', '.join(f'{n} {ms:g} ms at {mb} MB' for n, ms, mb in each)}"
        " per image (durations assumed, not measured on AWS: replace them with CloudWatch's Duration; memory from "
        "template.yaml)",
        f"Standard: {len(path)} transitions per image, the success path of {SINGLE_ASL.name} ({' > '.join(path)}); "
        "a failure path enters more states",
        f"Express: one request per image, billed at {work.express_mb} MB in 100 ms steps, "
        f"{work.express_overhead_ms:g} ms of its own beside the Lambdas (assumed)",
        f"backfill: a Distributed Map (Standard parent, one transition per child assumed) of Express children of "
        f"{work.batch} images, each Lambda invoked once per batch for the same per-image time; the keys listed "
        f"{work.list_page} per request",
        f"endpoint: {work.endpoint_instance} at {work.endpoint_img_s:,.0f} images/s (measured on 2 cores, "
        "docs/benchmarks.md); busy hours only: the endpoint bills every hour it is up "
        f"({usd(table.hourly('hosting', work.endpoint_instance) or math.nan)}/h)",
        f"S3: one GET per image (serialize reads it), one capture PUT per {work.records_per_capture_file:,} records "
        f"(assumed), {work.capture_kb:g} KB of capture per record (measured)",
        f"monitoring: {work.monitor_records_per_vcpu_s:,.0f} records/s per vCPU (the bench target) on the instance "
        f"sized for that many records (scones.deploy.requests); each hourly run also spends ~"
        f"{work.monitor_start_s:g} s starting: {usd(hourly_start * 24)} a day whatever the traffic",
        "not included: CloudWatch, data transfer, free tiers, the training job (see `scones deploy --dry-run`)",
    ]


def render_per_images(images: int, region: str, work: Workload = Workload()) -> str:
    """`scones cost`: the table per million images (and for `images` when another number), then the assumptions."""
    table = prices.table(region)
    if table is None:
        return (
            f"cost: no prices for {region} (scones/deploy/prices.py lists {', '.join(sorted(prices.TABLES))}); "
            f"see {prices.SOURCE}\n"
        )
    out = [
        f"scones cost: {region} list prices as of {table.as_of}, USD ({prices.SOURCE} and the Lambda, Step "
        "Functions and S3 pages)"
    ]
    counts = [1_000_000] if images == 1_000_000 else [1_000_000, images]
    heads = (*WAYS[:2], f"{WAYS[2]} (B={work.batch})")
    for n in counts:
        lines = per_images(n, table, work)
        out += ["", f"per {n:,} images{'' if n == 1_000_000 else ' (--images)'}:"]
        out.append(f"  {'':<26}" + "".join(f"{h:>20}" for h in heads))
        out += [f"  {line.what:<26}" + "".join(f"{money(v):>20}" for v in line.usd) for line in lines]
        out.append("  quantities:")
        for line in lines:
            if len(set(line.quantity)) == 1 and line.quantity[0]:
                out.append(f"    {line.what}: {line.quantity[0]}, whichever way")
            elif any(line.quantity):
                each = "; ".join(f"{w} {q}" for w, q in zip(WAYS, line.quantity, strict=True))
                out.append(f"    {line.what}: {each}")
    out += ["", "assumptions:"] + [f"  - {a}" for a in assumptions(work, table)]
    return "\n".join(out) + "\n"


def money(amount: float) -> str:
    """Dollars to four significant digits under $1, cents above: the columns of `scones cost`."""
    if amount >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.4f}" if amount >= 0.01 else f"${amount:.4g}" if amount >= 1e-4 else f"${amount:.2e}"


def million_line(table: prices.Table, work: Workload = Workload(), chosen: str = "STANDARD") -> str:
    """The deploy's estimate's line for traffic: the totals `scones cost` prints per million images, the chosen
    single-image workflow (STANDARD | EXPRESS, the stack's WorkflowType) first, the other way after."""
    total = per_images(1_000_000, table, work)[-1].usd
    mine, other = (1, 0) if chosen == "EXPRESS" else (0, 1)
    return (
        f"  per million images through the {WAYS[mine]} workflow deployed (--workflow-type {WAYS[mine].lower()}): "
        f"{usd(total[mine])}; {WAYS[other]} would be {usd(total[other])}, a backfill {usd(total[2])} "
        f"(B={work.batch}); endpoint busy hours included (`scones cost` for the lines and assumptions)"
    )
