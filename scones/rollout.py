"""Canary and linear rollouts of a new model on the local endpoint, with automatic rollback on alarms.

The plan is SageMaker's deployment guardrails, and the same DeploymentConfig drives both targets: on AWS it is
passed to UpdateEndpoint (`deployment_config`); here it drives the local endpoint:
1. the named alarms must exist (refused before any traffic moves);
2. the new fleet starts beside the old one: the endpoint serves AllTraffic (old model, weight 1) and Candidate
   (new model, weight 0), switched with no request lost (scones/endpoint.py `serve_variants`);
3. traffic shifts stage by stage (canary: P % then all; linear: S % more each stage), each stage held for its
   wait while the alarms are evaluated every period (scones/alarms.py, from the metrics the endpoint puts);
4. an alarm in ALARM rolls back: 100 % to the old fleet at once (every worker follows within 0.1 s), the reason
   (alarm, value, threshold) printed and published to the stack's alert topic, then the candidate is unloaded;
5. all stages passed: the endpoint serves the new model alone (AllTraffic).
The rollout's state is kept in the endpoint's record at each step: a rollout that was interrupted (killed,
Ctrl-C) is rolled back by the next `scones deploy` or `scones rollback`, never left half-shifted. Two rollouts
take turns on the target's state lock (`scones deploy` holds it).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones import alarms, endpoint, stacks
from scones.core import aws, settings
from scones.core.errors import NotReadyError, SconesError, UsageError
from services.endpoint import quality
from services.endpoint.supervisor import WORKER_DEATHS
from services.endpoint.variants import PRODUCTION, Variant

CANDIDATE = "Candidate"  # the new fleet's variant on the local endpoint


class RolledBackError(SconesError):
    """An alarm fired during the rollout: traffic went back to the old model."""

    exit_code = 4
    next_default = "scones endpoint status; fix the candidate, then scones deploy --model … --rollout …"


@dataclass
class Plan:
    kind: str  # canary | linear
    percent: int  # canary: the canary's share; linear: the step
    wait_s: int  # how long each stage is held (and watched) before the next

    def stages(self) -> list[int]:
        """The candidate's share at each stage, the last one 100."""
        if self.kind == "canary":
            return [self.percent, 100] if self.percent < 100 else [100]
        return [*range(self.percent, 100, self.percent), 100]

    def text(self) -> str:
        return f"{self.kind}:{self.percent}:{self.wait_s}"


def parse(text: str) -> Plan:
    """`canary:PERCENT:SECONDS` or `linear:STEP:SECONDS`; UsageError naming what is wrong."""
    parts = text.split(":")
    example = "e.g. --rollout canary:10:300 or --rollout linear:25:120"
    if len(parts) != 3 or parts[0] not in ("canary", "linear"):
        raise UsageError(f"--rollout {text!r} is not canary:PERCENT:SECONDS nor linear:STEP:SECONDS", example)
    try:
        percent, wait_s = int(parts[1]), int(parts[2])
    except ValueError:
        raise UsageError(f"--rollout {text!r}: percent and seconds must be whole numbers", example) from None
    if not 1 <= percent <= 100 or not 1 <= wait_s <= 3600:
        raise UsageError(f"--rollout {text!r}: percent must be in 1..100 and seconds in 1..3600", example)
    return Plan(parts[0], percent, wait_s)


def deployment_config(plan: Plan, alarm_names: list[str]) -> dict:
    """UpdateEndpoint's DeploymentConfig for this plan (blue/green traffic shifting, rollback on the alarms)."""
    if plan.kind == "canary":
        routing = {
            "Type": "CANARY",
            "WaitIntervalInSeconds": plan.wait_s,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": plan.percent},
        }
    else:
        routing = {
            "Type": "LINEAR",
            "WaitIntervalInSeconds": plan.wait_s,
            "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": plan.percent},
        }
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": max(600, min(28800, plan.wait_s * (len(plan.stages()) + 1) + 300)),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names]},
    }


def from_deployment_config(config: dict) -> tuple[Plan, list[str]]:
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    size = routing.get("CanarySize") or routing.get("LinearStepSize")
    plan = Plan(routing["Type"].lower(), int(size["Value"]), int(routing["WaitIntervalInSeconds"]))
    return plan, [a["AlarmName"] for a in config.get("AutoRollbackConfiguration", {}).get("Alarms", [])]


def default_alarms(name: str, variant: str = CANDIDATE, period: int | None = None, answers: bool = True) -> list[dict]:
    """PutMetricAlarm requests for the candidate's 5xx errors and ModelLatency p95 ($SCONES_ROLLOUT_LATENCY_MS),
    then, with `answers`, for what it answers over the endpoint's sliding windows of $SCONES_ROLLOUT_WINDOW answers
    (services/endpoint/quality.py): its LowConfidenceRise over production and its ConfidenceDrift from production,
    each above its critical value at the monitor's ALPHA, and for its WorkerDeaths (a worker serving it died unasked:
    killed, crashed, out of memory; services/endpoint/supervisor.py puts it). Only the local endpoint puts those
    three metrics: the AWS path asks for `answers=False` (SageMaker replaces a failed instance itself).
    `period`: $SCONES_ROLLOUT_PERIOD_S (60 by default)."""
    period = settings.rollout_period_s() if period is None else period
    dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}]
    common = {"Namespace": "AWS/SageMaker", "Dimensions": dims, "Period": period, "EvaluationPeriods": 2}
    windowed = {  # both periods: consecutive windows share most answers, so one breaching period proves little
        "Namespace": quality.NAMESPACE,
        "Dimensions": dims,
        "Period": period,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "Statistic": "Average",  # over the workers' windows
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",  # a window not yet full puts nothing
    }
    local_alarms = [
        {
            "AlarmName": f"{name}-{variant.lower()}-low-confidence",
            "AlarmDescription": "a rollout's candidate is unsure of more answers than production",
            "MetricName": quality.RISE,
            "Threshold": round(quality.rise_threshold(settings.rollout_window()), 4),
            **windowed,
        },
        {
            "AlarmName": f"{name}-{variant.lower()}-drift",
            "AlarmDescription": "a rollout's candidate is sure of its answers otherwise than production",
            "MetricName": quality.DRIFT,
            "Threshold": round(quality.drift_threshold(settings.rollout_window()), 4),
            **windowed,
        },
        {
            "AlarmName": f"{name}-{variant.lower()}-worker-deaths",
            "AlarmDescription": "a worker serving a rollout's candidate died (killed, crashed, out of memory)",
            "Namespace": quality.NAMESPACE,
            "MetricName": WORKER_DEATHS,
            "Dimensions": dims,
            "Period": period,
            "EvaluationPeriods": 1,  # one death is enough: the candidate may have brought it down
            "DatapointsToAlarm": 1,
            "Statistic": "Sum",
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",  # no death, no datapoint
        },
    ]
    return [
        {
            "AlarmName": f"{name}-{variant.lower()}-5xx",
            "AlarmDescription": "a rollout's candidate answers server errors",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "DatapointsToAlarm": 1,
            "Threshold": 0.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            **common,
        },
        {
            "AlarmName": f"{name}-{variant.lower()}-latency-p95",
            "AlarmDescription": "a rollout's candidate answers slowly",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p95",
            "DatapointsToAlarm": 2,
            "Threshold": settings.rollout_latency_ms() * 1000,  # ModelLatency is in microseconds
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            **common,
        },
        *(local_alarms if answers else []),
    ]


def ensure_alarms(requests: list[dict]) -> list[str]:
    cloudwatch = aws.client("cloudwatch")
    for request in requests:
        cloudwatch.put_metric_alarm(**request)
    return [r["AlarmName"] for r in requests]


def check_alarms(names: list[str]) -> list[alarms.Alarm]:
    """The named alarms, or NotReadyError naming those that do not exist (before any traffic moves)."""
    if not names:
        raise UsageError("a rollout needs at least one alarm to roll back on", "pass --alarm NAME")
    found = alarms.describe(aws.client("cloudwatch"), names)
    missing = [n for n in names if n not in found]
    if missing:
        raise NotReadyError(
            f"alarm {', '.join(missing)} does not exist: no traffic was moved",
            "create it (aws cloudwatch put-metric-alarm) or leave --alarm out for the default alarms",
        )
    return [found[n] for n in names]


def _publish(subject: str, message: str, log: Callable[[str], None]) -> None:
    """To the stack's alert topic, when there is one (best effort: the rollback itself has happened)."""
    try:
        topic = stacks.outputs().get("AlertTopicArn")
    except Exception:  # no stack deployed: nothing to publish to
        topic = None
    if not topic:
        log("no alert topic (the workflow stack is not deployed): the rollback is not published")
        return
    try:
        aws.client("sns").publish(TopicArn=topic, Subject=subject[:99], Message=message)
        log(f"published to {topic}")
    except Exception as exc:
        log(f"could not publish the rollback to {topic}: {exc}")


def _served(name: str) -> tuple[Variant, Variant | None]:
    """(the production variant serving now, the rollout's candidate when one is loaded)."""
    found = {v.name: v for v in endpoint.variants(name)}
    if PRODUCTION not in found:
        raise NotReadyError(f"endpoint {name} serves no {PRODUCTION} variant", "scones endpoint status")
    return found[PRODUCTION], found.get(CANDIDATE)


def rollback(name: str, reason: str, log: Callable[[str], None] = print, timeout_s: float = 60.0) -> str:
    """100 % back to the old fleet now, say why, publish it, then unload the candidate. Returns what it did."""
    old, candidate = _served(name)
    if candidate is None:
        state = endpoint.record(name).get("rollout")
        previous = (state or {}).get("previous")
        if not previous:
            raise UsageError(f"endpoint {name} has no rollout to roll back", "scones endpoint status")
        log(f"rollback: endpoint {name} goes back to {previous['model_uri']} ({reason})")
        endpoint.serve_variants(
            name, [Variant(PRODUCTION, Path(previous["model_dir"]), 1.0, 0.0, previous["model_uri"])], timeout_s, log
        )
        _publish(f"scones rollback on {name}", f"endpoint {name} rolled back to {previous['model_uri']}: {reason}", log)
        return f"endpoint {name} serves {previous['model_uri']} again"
    started = time.monotonic()
    endpoint.set_weights(name, {PRODUCTION: 1.0, CANDIDATE: 0.0})
    endpoint.note_rollout(name, {**(endpoint.record(name).get("rollout") or {}), "state": "rolling back"})
    log(f"rollback: 100% of endpoint {name} back on {old.model_uri} ({reason})")
    _publish(
        f"scones rollout rolled back on {name}",
        f"endpoint {name}: the candidate {candidate.model_uri} was rolled back: {reason}. "
        f"100% of traffic is on {old.model_uri} again.",
        log,
    )
    endpoint.serve_variants(name, [Variant(PRODUCTION, old.model_dir, 1.0, 0.0, old.model_uri)], timeout_s, log)
    log(f"rollback done in {time.monotonic() - started:.1f} s: the candidate is unloaded")
    return f"endpoint {name} serves {old.model_uri} only"


def recover(name: str, log: Callable[[str], None] = print) -> bool:
    """Roll back a rollout a killed command left half-shifted (found in the endpoint's record); True if one was."""
    state = endpoint.record(name).get("rollout")
    _, candidate = _served(name) if endpoint.serving(name) else (None, None)  # one /ping may meet a dying worker
    if not state or state.get("state") == "done" or candidate is None:
        return False
    owner = state.get("pid")
    if owner and owner != os.getpid() and _alive(owner):
        raise UsageError(f"a rollout of endpoint {name} is running (pid {owner})", "wait for it, or scones rollback")
    log(f"endpoint {name}: a rollout was interrupted at {state.get('percent')}% on the candidate; rolling it back")
    rollback(name, "the rollout was interrupted", log)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(
    name: str,
    model: str,
    plan: Plan,
    alarm_names: list[str],
    log: Callable[[str], None] = print,
    timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Roll `model` out on the running local endpoint `name` by `plan`; RolledBackError when an alarm fires."""
    recover(name, log)
    old, _ = _served(name)
    watched = check_alarms(alarm_names)  # before any traffic moves
    log(f"rollout plan for endpoint {name}: {plan.text()} from {old.model_uri} to {model}")
    for i, percent in enumerate(plan.stages(), 1):
        hold = f", held {plan.wait_s} s" if percent < 100 else ""
        log(f"  stage {i}: {percent}% to the candidate{hold}")
    log(f"  rollback on: {', '.join(f'{a.name} ({a.metric} {a.statistic} over {a.period} s)' for a in watched)}")
    uri, model_dir = endpoint.prepare_model(model, name)
    previous = {"model_uri": old.model_uri, "model_dir": str(old.model_dir)}
    fleets = [Variant(PRODUCTION, old.model_dir, 1.0, 0.0, old.model_uri), Variant(CANDIDATE, model_dir, 0.0, 0.0, uri)]
    log(f"starting the new fleet for {uri} beside the old one ...")
    endpoint.serve_variants(name, fleets, timeout_s, log)
    state = {"plan": plan.text(), "alarms": alarm_names, "previous": previous, "candidate": uri, "pid": os.getpid()}
    states = {a.name: alarms.INSUFFICIENT for a in watched}
    cloudwatch = aws.client("cloudwatch")
    began = time.time()  # periods before this hold no answer of this candidate
    try:
        for i, percent in enumerate(plan.stages(), 1):
            endpoint.set_weights(name, {PRODUCTION: 100.0 - percent, CANDIDATE: float(percent)})
            endpoint.note_rollout(name, {**state, "state": "shifting", "stage": i, "percent": percent})
            log(f"[stage {i}/{len(plan.stages())}] {percent}% of endpoint {name} on the candidate")
            wait = plan.wait_s if percent < 100 else 0
            deadline = time.monotonic() + wait
            tick = max(0.5, min(a.period for a in watched) / 2)
            while True:
                for a in watched:
                    points = alarms.since(alarms.fetch(cloudwatch, a, time.time()), began)
                    found = alarms.evaluate(a, points, time.time(), states[a.name])
                    states[a.name] = found.state
                    if found.state == alarms.ALARM:
                        reason = f"alarm {a.name}: {found.reason}"
                        rollback(name, reason, log, timeout_s)
                        raise RolledBackError(f"the rollout of {uri} was rolled back at {percent}%: {reason}")
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                shown = ", ".join(sorted(set(states.values())))
                log(f"  {percent}% on the candidate, alarms {shown}, {left:.0f} s left")
                sleep(min(tick, left))
    except (KeyboardInterrupt, SconesError) as exc:
        if isinstance(exc, RolledBackError):
            raise
        with contextlib.suppress(SconesError):
            rollback(name, f"the rollout stopped: {exc or 'interrupted'}", log, timeout_s)
        raise
    log(f"all stages passed: endpoint {name} serves {uri} alone")
    endpoint.serve_variants(name, [Variant(PRODUCTION, model_dir, 1.0, 0.0, uri)], timeout_s, log)
    endpoint.note_rollout(name, {**state, "state": "done", "percent": 100})
    return f"endpoint {name} serves {uri}"
