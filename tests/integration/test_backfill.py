"""`scones invoke --prefix s3://…` on the cloud under test: a Distributed Map over a staged prefix (ItemReader,
ItemBatcher, Express children, ResultWriter), every key accounted for, and its bad inputs.

The endpoint serves the brightness model (tests/helpers.py): bright images are confidently 'bicycle', dark ones
'motorcycle', grey ones a coin toss below the threshold.
"""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, TARGET, deployment_env, environ, make_brightness_model, solid_png

from scones import backfill, cli, endpoint, stacks
from scones.core import aws, settings
from scones.core.errors import UsageError

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # not localstack: its Step Functions refuse ItemBatcher
PREFIX_DEFINITION = ROOT / "statemachine" / "classify_prefix.asl.json"
BRIGHT, DARK, GREY, TEXT = 700, 300, 20, 5  # 1,020 images and 5 files that are not images


@pytest.fixture(scope="module")
def deployed(local_cloud, tmp_path_factory):
    _, env = deployment_env("bf")
    with environ(env):
        model = make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")
        bucket = env[settings.BUCKET]
        s3 = aws.client("s3", max_pool_connections=32)
        s3.create_bucket(Bucket=bucket)
        bright, dark, grey = solid_png(230), solid_png(25), solid_png(128)
        from concurrent.futures import ThreadPoolExecutor

        objects = [(f"many/bright-{i:04d}.png", bright) for i in range(BRIGHT)]
        objects += [(f"many/dark-{i:04d}.png", dark) for i in range(DARK)]
        objects += [(f"many/grey-{i:04d}.png", grey) for i in range(GREY)]
        objects += [(f"many/notes-{i}.txt", b"not an image") for i in range(TEXT - 1)]
        objects += [("many/fake.png", b"a .png name, text inside")]
        objects += [("few/bright-0.png", bright), ("few/dark-0.png", dark), ("other/a.png", bright)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects))
        assert cli.main(["deploy", "--target", TARGET, "--model", str(model)]) == 0
        yield {"bucket": bucket, "outputs": stacks.outputs(env[settings.STACK_NAME]), "env": env}
        endpoint.stop(env[settings.SCONES_ENDPOINT_NAME], log=lambda _m: None)
        stacks.delete(env[settings.STACK_NAME], log=lambda _m: None)


def test_a_backfill_classifies_over_a_thousand_images_and_accounts_for_every_key(deployed, capsys):
    bucket = deployed["bucket"]
    with environ(deployed["env"]):
        # when every image under the prefix is classified, 50 keys per child
        code = cli.main(["invoke", "--prefix", f"s3://{bucket}/many/", "--batch-size", "50", "--allow-failures"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        # then the summary counts every outcome and class, and says where the results are
        assert f"{BRIGHT + DARK + GREY + TEXT} keys" in printed
        assert f"SUCCEEDED {BRIGHT + DARK}" in printed and f"LowConfidenceError {GREY}" in printed
        assert f"SKIPPED {TEXT}" in printed
        assert f"bicycle {BRIGHT}, motorcycle {DARK}" in printed
        assert f"results: s3://{bucket}/backfill/" in printed and "/scones-backfill-" in printed
        # and the result files account for every key once, each with its verdict
        done = backfill.Backfill(bucket, "many/", "", "", 0.0)
        results = printed.split("results: ")[1].split()[0]
        manifest_key = results.removeprefix(f"s3://{bucket}/") + "manifest.json"
        rows = backfill.rows_from(bucket, manifest_key)
        keys = [r.key for r in rows]
        assert len(keys) == len(set(keys)) == BRIGHT + DARK + GREY + TEXT
        by_key = {r.key: r for r in rows}
        assert (
            by_key["many/bright-0007.png"].label == "bicycle" and by_key["many/bright-0007.png"].status == "SUCCEEDED"
        )
        assert by_key["many/dark-0003.png"].label == "motorcycle"
        assert by_key["many/grey-0001.png"].error == "LowConfidenceError"
        assert by_key["many/fake.png"].status == "SKIPPED" and by_key["many/notes-0.txt"].status == "SKIPPED"
        # the manifest is AWS's layout: a SUCCEEDED file of child records, each its input batch and output
        manifest = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        assert manifest["ResultFiles"]["FAILED"] == [] and len(manifest["ResultFiles"]["SUCCEEDED"]) == 1
        assert done.bucket == bucket


def test_limit_and_batch_size_are_honoured(deployed, capsys):
    with environ(deployed["env"]):
        done = backfill.run(f"s3://{deployed['bucket']}/many/", batch_size=7, limit=30, log=lambda _m: None)
    assert done.status == "SUCCEEDED" and len(done.rows) == 30
    children = {r.execution for r in done.rows}
    assert len(children) == 5  # 30 keys, 7 per child


def test_the_definition_is_stored_as_sent(deployed):
    # the local cloud rewrites it for moto's parser, but describe (and scones export) shows the text as sent
    with environ(deployed["env"]):
        described = aws.client("stepfunctions").describe_state_machine(
            stateMachineArn=deployed["outputs"][stacks.PREFIX]
        )
    definition = json.loads(described["definition"])
    assert definition["States"]["ClassifyPrefix"]["ItemBatcher"]["MaxItemsPerBatchPath"] == "$.batch_size"
    assert definition["States"]["ClassifyPrefix"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "EXPRESS"


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        ("s3://{bucket}/nothing-here/", [], "holds no objects"),
        ("s3://{bucket}/few/", ["--batch-size", "0"], "--batch-size 0 is outside 1..100"),
        ("s3://{bucket}/few/", ["--batch-size", "101"], "--batch-size 101 is outside 1..100"),
        ("s3://some-other-bucket-xyz/few/", [], "is not the deployed workflow's data bucket"),
    ],
)
def test_bad_requests_are_one_line_and_start_nothing(deployed, capsys, url, extra, message):
    with environ(deployed["env"]):
        sfn = aws.client("stepfunctions")
        before = len(sfn.list_executions(stateMachineArn=deployed["outputs"][stacks.PREFIX])["executions"])
        code = cli.main(["invoke", "--prefix", url.format(bucket=deployed["bucket"]), *extra])
        after = len(sfn.list_executions(stateMachineArn=deployed["outputs"][stacks.PREFIX])["executions"])
    err = capsys.readouterr().err
    assert code == UsageError.exit_code and message in err, err
    assert "Traceback" not in err and after == before


@pytest.mark.localstack
def test_the_backfill_definition_parses_here_and_on_localstack_its_refusal_is_the_known_one(local_cloud, unique):
    """LocalStack (localstack-core 2026.3.0) refuses the definition, so the stack leaves the backfill out there
    (Backfill=false): its ASL grammar has no ItemBatcher at all and takes only "ExecutionType": "STANDARD"
    (docs/backfill.md). The day a LocalStack upgrade parses it, this test says so: turn the backfill on there."""
    account = aws.client("sts").get_caller_identity()["Account"]
    text = PREFIX_DEFINITION.read_text()
    text = text.replace("${ClassifyBatchFunctionArn}", f"arn:aws:lambda:{settings.region()}:{account}:function:f")
    text = text.replace("${AlertTopicArn}", f"arn:aws:sns:{settings.region()}:{account}:t")
    sfn = aws.client("stepfunctions")
    role = f"arn:aws:iam::{account}:role/backfill-{unique}"
    try:
        arn = sfn.create_state_machine(name=f"parse-{unique}", definition=text, roleArn=role)["stateMachineArn"]
    except sfn.exceptions.InvalidDefinition as exc:
        assert TARGET == "localstack", str(exc)
        assert "ASLParserException" in str(exc) and '"ItemBatcher"' in str(exc), str(exc)
        return
    sfn.delete_state_machine(stateMachineArn=arn)
    assert TARGET != "localstack", (
        "LocalStack now parses classify_prefix.asl.json: set Backfill true there (scones/deploy/run.py) "
        "and mark test_backfill.py localstack"
    )
