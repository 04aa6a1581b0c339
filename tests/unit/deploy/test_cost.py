"""The cost estimate `scones deploy --target aws` prints before it spends: arithmetic by hand, read off the plan."""

from __future__ import annotations

import json

import pytest

from scones.deploy import cost, plan, prices
from scones.deploy.spec import Spec

ROUND = prices.Table(  # round numbers, so the hand calculations below are easy to check
    region="xx-test-1",
    as_of="2000-01-01",
    training={"ml.t.train": 2.0},
    hosting={"ml.t.host": 0.5},
    processing={"ml.t.proc": 0.2},
    serverless_gb_s=0.00001,
)


@pytest.fixture
def round_prices(monkeypatch):
    monkeypatch.setitem(prices.TABLES, ROUND.region, ROUND)


def spec(**kw) -> Spec:
    base = dict(
        region=ROUND.region,
        instance_type="ml.t.train",
        endpoint_instance_type="ml.t.host",
        monitor_instance_type="ml.t.proc",
    )
    return Spec(**{**base, **kw})


def by_what(found: cost.Estimate) -> dict[str, cost.Cost]:
    return {c.what: c for c in found.costs}


def test_each_amount_is_rate_times_time_as_by_hand(round_prices):
    # given: 1.5 h max runtime, up to 3 endpoint instances, the hourly schedule (max runtime 1800 s)
    found = by_what(cost.for_spec(spec(max_run_s=5400, max_instances=3)))
    # then: training 2.0 $/h x 1.5 h = 3.0, a ceiling
    assert found["training job"].amounts == {"job": pytest.approx(3.0)} and found["training job"].ceiling
    # endpoint: 0.5 $/h; 730 h a month = 365.0; at 3 instances 1.5 $/h and 1,095.0 a month
    assert found["endpoint"].amounts == pytest.approx(
        {"hour": 0.5, "month": 365.0, "max hour": 1.5, "max month": 1095.0}
    )
    assert found["endpoint"].max_instances == 3 and not found["endpoint"].ceiling
    # monitoring: 0.2 $/h x 0.5 h = 0.1 a run; 24 runs a day = 2.4; x 730/24 days = 73.0 a month
    assert found["monitoring job"].amounts == pytest.approx({"run": 0.1, "day": 2.4, "month": 73.0})


def test_serverless_bills_memory_seconds_and_has_no_instances(round_prices):
    found = by_what(cost.for_spec(spec(serverless=True, serverless_memory_mb=2048, serverless_max_concurrency=4)))
    assert "endpoint" not in found
    # 0.00001 $/GB-s x 2 GB = 0.00002 $/s; busy hour: x 3600 s x 4 in flight = 0.288
    assert found["serverless endpoint"].amounts == pytest.approx({"second": 0.00002, "busy hour": 0.288})


def test_spot_says_the_on_demand_ceiling_and_a_given_model_trains_nothing(round_prices):
    spot = by_what(cost.for_spec(spec(spot=True, max_wait_s=7200)))["training job"]
    assert spot.amounts == {"job": pytest.approx(2.0)}  # MaxRuntime bounds the billed time, not MaxWait
    assert any("on-demand ceiling" in note and "spot usually costs less" in note for note in spot.notes)
    given = by_what(cost.for_spec(spec(model_uri="s3://b/models/m/output/model.tar.gz")))
    assert "training job" not in given and "endpoint" in given


def test_the_estimate_reads_the_requests_not_the_flags(round_prices):
    # given: the plan's Processing job as the schedule sends it (a JSON string), with another max runtime
    steps = plan.build(spec(), image=lambda *_: "<image>")
    (schedule,) = [c for s in steps for c in s.calls if c.operation == "create_schedule"]
    job = schedule.params["Target"]["Input"]
    job["StoppingCondition"]["MaxRuntimeInSeconds"] = 3600
    job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 2
    schedule.params["Target"]["Input"] = json.dumps(job)
    schedule.params["ScheduleExpression"] = "rate(6 hours)"
    # then: 0.2 $/h x 1 h x 2 instances = 0.4 a run; 4 runs a day = 1.6
    found = by_what(cost.estimate(steps, ROUND.region))["monitoring job"]
    assert found.amounts["run"] == pytest.approx(0.4) and found.amounts["day"] == pytest.approx(1.6)


@pytest.mark.parametrize(
    "expression, runs",
    [
        ("rate(1 hour)", 24),
        ("rate(15 minutes)", 96),
        ("rate(2 days)", 0.5),
        ("cron(0 */6 * * ? *)", 4),
        ("cron(0,30 8-17 * * ? *)", 20),
        ("cron(5 3 * * ? *)", 1),
        ("cron(0 8 ? * MON-FRI *)", None),  # weekdays only: not the same every day
        ("at(2027-01-01T00:00:00)", None),
    ],
)
def test_runs_per_day_of_a_scheduler_expression(expression, runs):
    assert cost.runs_per_day(expression) == runs


def test_a_cron_schedule_that_varies_by_day_gets_a_per_run_figure_only(round_prices):
    found = by_what(cost.for_spec(spec(monitor_schedule="cron(0 8 ? * MON-FRI *)")))["monitoring job"]
    assert found.amounts == {"run": pytest.approx(0.1)}
    assert "runs per day vary" in cost.render(cost.for_spec(spec(monitor_schedule="cron(0 8 ? * MON-FRI *)")))


def test_a_region_without_prices_says_so_and_nothing_else():
    found = cost.for_spec(Spec(region="eu-west-3"))
    assert found.table is None and found.costs == ()
    text = cost.render(found)
    assert text.startswith("cost estimate: no estimate for eu-west-3") and "$" not in text.split(";")[0]


def test_an_instance_type_without_a_price_says_so(round_prices):
    text = cost.render(cost.for_spec(spec(instance_type="ml.p4d.24xlarge")))
    assert "ml.p4d.24xlarge x1" in text and "no price for it in the xx-test-1 table" in text
    assert "$0.5 per hour" not in text and "$0.50 per hour" in text  # the rest is still priced


def test_the_default_deploy_at_us_east_1_list_prices():
    # the table's own figures: g4dn.xlarge training 0.736 $/h, m5.large hosting and processing 0.115 $/h
    table = prices.table("us-east-1")
    assert table.as_of == prices.AS_OF
    text = cost.render(cost.for_spec(Spec(spot=True)))
    assert f"as of {prices.AS_OF}" in text
    assert "at most $0.736 per job" in text  # 0.736 x 1 h
    assert "$0.115 per hour, $83.95 per month" in text  # 0.115 x 730
    assert "autoscaling up to 4 instances: at most $0.46 per hour, $335.80 per month" in text
    assert "$1.38 per day" in text  # 0.115 x 0.5 h x 24


def test_amounts_print_without_exponents():
    assert [cost.usd(x) for x in (0.00006, 0.0575, 0.46, 83.95, 1095.0)] == [
        "$0.00006",
        "$0.0575",
        "$0.46",
        "$83.95",
        "$1,095.00",
    ]


def test_every_monitoring_size_the_deploy_may_choose_has_a_price():
    from scones.deploy import requests

    table = prices.table("us-east-1")
    assert all(table.hourly("processing", kind) for kind, _ in requests.MONITOR_INSTANCES)


def test_scones_cost_for_a_million_images_matches_a_hand_calculation(capsys):
    from scones.cli import main

    # given: us-east-1's table and the default assumptions (template.yaml: 256, 256 and 128 MB; 40, 60, 3 ms)
    assert main(["cost", "--images", "1000000", "--target", "aws"]) == 0
    printed = capsys.readouterr().out
    # by hand, per million images:
    standard_sfn = 1e6 * 4 * 0.025 / 1000  # 4 transitions each (3 Tasks + Result) = 100.00
    express_sfn = 1e6 * (1.00 / 1e6 + 0.3 * (64 / 1024) * 0.00001667)  # 203 ms -> 0.3 s at 64 MB = 1.3126
    backfill_sfn = (10_000 + 3) * 0.025 / 1000 + 10_000 * (1.00 / 1e6 + 10.4 * (64 / 1024) * 0.00001667)  # 0.3684
    requests = 3e6 * 0.20 / 1e6  # 0.60; the backfill: 30,000 = 0.006
    gb_s = 1e6 * (0.040 * 256 + 0.060 * 256 + 0.003 * 128) / 1024 * 0.0000166667  # 25,375 GB-s = 0.4229
    endpoint = 1e6 / 1185 / 3600 * 0.115  # 0.234 h of ml.m5.large = 0.0270
    s3 = 1e6 * 0.0004 / 1000 + 1000 * 0.005 / 1000  # GETs + capture PUTs = 0.405; the backfill lists 1,000 pages more
    storage = 1e6 * 3.6 / 1e6 * 0.023  # 3.6 GB a month = 0.0828
    monitoring = 1e6 / (2 * 8000) / 3600 * 0.115  # 62.5 s on ml.m5.large = 0.0020
    shared = gb_s + endpoint + storage + monitoring
    expected = (
        standard_sfn + requests + s3 + shared,
        express_sfn + requests + s3 + shared,
        backfill_sfn + 0.006 + s3 + 0.005 + shared,
    )
    lines = cost.per_images(1_000_000, prices.table("us-east-1"))
    assert lines[-1].usd == pytest.approx(expected, rel=1e-9)
    assert [round(x, 2) for x in expected] == [101.54, 2.85, 1.32]
    (total,) = [line for line in printed.splitlines() if line.startswith("  total")]
    assert total.split()[1:] == ["$101.54", "$2.85", "$1.32"]
    # every assumption is printed, and the region and date of the prices
    assert "us-east-1 list prices as of 2026-12-02" in printed
    for words in ("40 ms at 256 MB", "4 transitions per image", "64 MB in 100 ms steps", "1,185 images/s", "3.6 KB"):
        assert words in printed, words
    # the deploy's estimate prints the same totals
    standard = (
        "the Standard workflow deployed (--workflow-type standard): $101.54; Express would be $2.85, a backfill $1.32"
    )
    assert standard in cost.render(cost.for_spec(Spec()))


def test_the_deploy_s_estimate_follows_the_chosen_workflow_type():
    # given the plan for an Express deploy: its estimate reads WorkflowType off the planned create_stack call
    found = cost.for_spec(Spec(workflow_type="express"))
    assert found.workflow_type == "EXPRESS"
    # then the per-million line leads with Express, and Standard is the alternative
    express = "the Express workflow deployed (--workflow-type express): $2.85; Standard would be $101.54"
    assert express in cost.render(found)


def test_memory_is_read_from_the_template_and_the_success_path_from_the_asl():
    assert cost.template_memory() == (256, 256, 128)
    assert cost.success_path() == ["SerializeImageData", "ClassifyImage", "FilterInferences", "Result"]


def test_a_shadow_counts_its_own_instances_beside_production(round_prices):
    # given: --shadow at 20 % of the requests, on the same instance type as production
    found = by_what(cost.for_spec(spec(model_uri="s3://b/models/m/output/model.tar.gz", shadow_percent=20.0)))
    # then: the shadow bills its instance every hour whatever its share: 0.5 $/h, 365.0 a month, as production
    assert found["shadow variant"].resource == "ml.t.host x1"
    assert found["shadow variant"].amounts == pytest.approx({"hour": 0.5, "month": 365.0})
    assert found["endpoint"].amounts["hour"] == pytest.approx(0.5)
    text = cost.render(cost.for_spec(spec(model_uri="s3://b/models/m/output/model.tar.gz", shadow_percent=20.0)))
    assert "shadow variant      ml.t.host x1" in text and "mirrored requests only" in text
    # and without --shadow there is no such line
    assert "shadow variant" not in by_what(cost.for_spec(spec(model_uri="s3://b/models/m/output/model.tar.gz")))
