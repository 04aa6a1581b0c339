"""Load → endpoint capture → `scones monitor` on the local cloud: counts, drift, metrics, alert, bad input.

The endpoint serves the brightness model (tests/helpers.py); the staged test split is a textured image set it
classifies right (tests/monitoring_fixtures.py).
"""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest
from helpers import deployment_env, environ, make_brightness_model, subscribe_queue
from monitoring_fixtures import held_out_images

from scones import cli, endpoint, load, stacks
from scones.core import aws, settings
from scones.monitoring import capture, monitor

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployed(local_cloud, tmp_path_factory):
    suffix, env = deployment_env("mon")
    env.update({settings.PREFIX: "data", settings.DATA_DIR: str(tmp_path_factory.mktemp("data"))})
    with environ(env):
        model = make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=env[settings.BUCKET])
        images = held_out_images(n_per_class=40)
        for name, body in images:
            s3.put_object(Bucket=env[settings.BUCKET], Key=f"data/test/{name}", Body=body)
        lst = "".join(f"{i}\t{int(name.startswith('motorcycle'))}\t{name}\n" for i, (name, _) in enumerate(images))
        s3.put_object(Bucket=env[settings.BUCKET], Key="data/test.lst", Body=lst.encode())
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for path in model.iterdir():
                tar.add(path, arcname=path.name)
        model_key = "models/brightness-job/output/model.tar.gz"
        s3.put_object(Bucket=env[settings.BUCKET], Key=model_key, Body=archive.getvalue())
        # the deployed model is the one in S3, so its baseline is stored beside it (monitor's default: the served model)
        model_uri = f"s3://{env[settings.BUCKET]}/{model_key}"
        assert cli.main(["deploy", "--target", "local", "--model", model_uri]) == 0
        outputs = stacks.outputs(env[settings.STACK_NAME])
        yield {
            "bucket": env[settings.BUCKET],
            "endpoint": env[settings.SCONES_ENDPOINT_NAME],
            "outputs": outputs,
            "queue": subscribe_queue(outputs["AlertTopicArn"], f"mon-alerts-{suffix}"),
            "model_uri": model_uri,
        }
        endpoint.stop(env[settings.SCONES_ENDPOINT_NAME], log=lambda _m: None)
        stacks.delete(env[settings.STACK_NAME], log=lambda _m: None)


def records_under(deployed) -> capture.CaptureTable:
    where = capture.Location.parse(monitor.default_capture())
    assert where.prefix.endswith(deployed["endpoint"])
    return capture.read(where, ["bicycle", "motorcycle"])


def test_a_burst_is_read_back_record_for_record(deployed):
    summary = load.generate("burst", via="endpoint", count=60, concurrency=4, seed=1)
    assert (summary.sent, summary.succeeded, summary.failed) == (60, 60, 0)
    assert summary.capture_flushed is True and summary.threshold == 0.93  # the deployed stack's
    table = records_under(deployed)
    assert (table.lines, table.parsed, table.unparseable) == (60, 60, 0)


def test_a_stream_through_the_workflow_counts_every_request(deployed):
    before = records_under(deployed).lines
    summary = load.generate("stream", via="workflow", rate=10, duration_s=2.0, concurrency=8, seed=2)
    assert summary.sent > 5 and summary.sent == summary.succeeded + summary.failed
    assert summary.succeeded == summary.sent, summary.failed_by_error
    assert records_under(deployed).lines == before + summary.sent  # one capture record per classification


def test_monitor_computes_the_baseline_finds_dark_drift_puts_metrics_and_alerts(deployed, tmp_path, capsys):
    time.sleep(1.1)  # capture times have one-second resolution: --since must not take the earlier records
    summary = load.generate("burst", via="workflow", count=40, concurrency=8, drift="dark", seed=3)
    assert summary.sent == 40 == summary.succeeded + summary.failed
    out = tmp_path / "report"
    code = cli.main(["monitor", "--out", str(out), "--since", summary.started_at, "--alert"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads((out / "summary.json").read_text())
    assert result["verdict"] == "DRIFT" and "brightness" in result["failed_checks"]
    assert result["analysed"] == 40 and result["skipped_before_since"] >= 60
    assert result["baseline_images"] == 80 and "verdict: DRIFT" in printed
    # the baseline was computed from the staged test split and stored beside the model
    keys = aws.client("s3").list_objects_v2(Bucket=deployed["bucket"], Prefix="models/brightness-job/monitoring/")
    assert {k["Key"].rsplit("/", 1)[-1] for k in keys.get("Contents", [])} == {
        "statistics.json",
        "constraints.json",
        "baseline.csv",
        "baseline.json",
    }
    metrics = aws.client("cloudwatch").list_metrics(Namespace=monitor.NAMESPACE, MetricName=monitor.DRIFT_METRIC)
    dims = [m["Dimensions"] for m in metrics["Metrics"]]
    assert [{"Name": "EndpointName", "Value": deployed["endpoint"]}] in dims
    sqs = aws.client("sqs")
    messages = sqs.receive_message(QueueUrl=deployed["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=2)
    alerts = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    drift_alerts = [a for a in alerts if a["Subject"].startswith("scones: drift")]
    assert drift_alerts and json.loads(drift_alerts[0]["Message"])["verdict"] == "DRIFT"


def test_a_prefix_with_nothing_is_not_ready_and_says_what_to_run(deployed, tmp_path, capsys):
    code = cli.main(["monitor", "--capture", f"s3://{deployed['bucket']}/nothing/here", "--out", str(tmp_path)])
    assert code == 3 and "scones load" in capsys.readouterr().err
    code = cli.main(["monitor", "--capture", "s3://no-such-bucket-here/x", "--out", str(tmp_path)])
    assert code == 3 and "does not exist" in capsys.readouterr().err


def test_sent_is_succeeded_plus_failed_when_the_endpoint_stops_half_way(deployed):
    stopped = []

    def on_result(i, outcome):
        if i == 19:  # one request at a time: the 20th answer stops the endpoint before the 21st is sent
            stopped.append(endpoint.stop(deployed["endpoint"], log=lambda _m: None))

    summary = load.generate("burst", via="endpoint", count=60, concurrency=1, seed=4, on_result=on_result)
    assert stopped == [True]
    assert summary.sent == 60 == summary.succeeded + summary.failed
    assert (summary.succeeded, summary.failed) == (20, 40)
    assert summary.failed_by_error == {"EndpointConnectionError": 40}
