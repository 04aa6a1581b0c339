"""The dry run's CreateTrainingJob is the one the SageMaker SDK v3's ModelTrainer really sends.

ModelTrainer runs against the local cloud (its S3 takes the uploads, its SageMaker the job); a botocore hook on
the trainer's own session records the parameters as the client receives them. Only the timestamp ModelTrainer
appends to the job's name (and so to the code and driver URIs) is unknown before the call.
"""

from __future__ import annotations

import json
import uuid

import pytest

from scones.core import aws, settings
from scones.deploy import aws_training, images, naming, requests
from scones.deploy.checks import Report
from scones.deploy.spec import Spec

pytestmark = pytest.mark.integration
ROLE = "arn:aws:iam::123456789012:role/scones-sagemaker"


@pytest.fixture
def spec(local_cloud):
    pytest.importorskip("sagemaker", reason="ModelTrainer is the SDK's: needs the aws extra")
    bucket = f"treq-{uuid.uuid4().hex[:8]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    return Spec(bucket=bucket, region=settings.region(), role=ROLE)


def send(spec: Spec, answer_here: bool = False) -> tuple[dict, dict, str]:
    """(the plan's request, what ModelTrainer sent with its timestamp replaced by the plan's placeholder, the
    timestamp)."""
    planned = requests.training_request(spec, requests.Facts(account=naming.account_of(spec)), images.retrieve)
    trainer, channels = aws_training.model_trainer(spec, planned)
    with aws_training.sent_request(trainer, answer_here=answer_here) as sent:
        trainer.train(input_data_config=channels, wait=False, logs=False)
    base = planned["TrainingJobName"].removesuffix(f"-{naming.UNKNOWN_TIMESTAMP}")
    stamp = sent["TrainingJobName"].removeprefix(f"{base}-")
    assert stamp.isdigit() and len(stamp) == 14, sent["TrainingJobName"]  # YYYYmmddHHMMSS
    return planned, json.loads(json.dumps(sent).replace(stamp, naming.UNKNOWN_TIMESTAMP)), stamp


def validate(request: dict) -> None:
    from botocore.validate import validate_parameters

    model = aws.client("sagemaker").meta.service_model
    validate_parameters(request, model.operation_model("CreateTrainingJob").input_shape)


@pytest.mark.parametrize(
    "changes",
    [{}, {"spot": True, "instance_type": "ml.m5.xlarge", "epochs": 3}, {"algorithm": "builtin"}],
    ids=["script", "script-spot", "builtin"],
)
def test_the_plans_request_is_the_one_model_trainer_sends(spec, changes):
    spec = Spec(**{**spec.__dict__, **changes})
    planned, sent, _ = send(spec)
    validate(planned)
    validate(sent)
    assert sent == planned  # keys and values, order of channels included


def test_the_code_channel_holds_exactly_the_files_the_fingerprint_covers(spec):
    _, sent, stamp = send(spec)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent["InputDataConfig"]}
    s3 = aws.client("s3")

    def keys(uri: str) -> set[str]:
        real = uri.replace(naming.UNKNOWN_TIMESTAMP, stamp)
        prefix = real.split("/", 3)[3]
        listed = s3.list_objects_v2(Bucket=spec.bucket, Prefix=prefix + "/").get("Contents", [])
        return {o["Key"][len(prefix) + 1 :] for o in listed}

    assert keys(channels["code"]) == {str(p) for p in requests.training_files()}
    assert {"sm_train.sh", "sourcecode.json", "distributed_drivers/basic_script_driver.py"} <= keys(
        channels["sm_drivers"]
    )


def test_answered_here_nothing_is_created_and_the_request_is_the_same(spec):
    planned, sent, _ = send(spec, answer_here=True)
    assert sent == planned
    base = planned["TrainingJobName"].removesuffix(f"-{naming.UNKNOWN_TIMESTAMP}")
    assert aws.client("sagemaker").list_training_jobs(NameContains=base)["TrainingJobSummaries"] == []


def test_deploy_takes_the_jobs_name_from_the_request_when_the_listing_lags(spec, monkeypatch):
    """ListTrainingJobs is eventually consistent: right after CreateTrainingJob it may not show the job."""
    monkeypatch.setattr(aws_training, "_training_jobs", lambda base: [])
    report, logs = Report(), []
    name, artifact = aws_training.train(spec, requests.Facts(account="123456789012"), report, 0.01, logs.append)
    assert name.startswith(requests.training_base_name(spec) + "-")
    assert artifact.endswith(f"/{name}/output/model.tar.gz")
    assert ("train", "created", f"{name} on {spec.instance_type}") in report.actions


def test_container_mode_creates_no_job_anywhere_even_if_the_sdk_got_past_the_hook(spec, monkeypatch):
    """`scones train --mode container` answers CreateTrainingJob here; were the SDK to send it through a client
    the hook does not see, it meets a closed port (never the target's SageMaker) and the user gets one line."""
    import contextlib

    from scones.containers import training as container
    from scones.training_job import TrainingJobError

    @contextlib.contextmanager
    def blind(trainer, answer_here=False):
        yield {}

    monkeypatch.setattr(aws_training, "sent_request", blind)
    here = container.spec_for(spec.bucket, "data", ["bicycle", "motorcycle"], {"epochs": 1})
    with pytest.raises(TrainingJobError, match=r"got past the hook .* nothing was created"):
        container.sent_request(here, True, "blind", lambda _m: None)
    assert aws.client("sagemaker").list_training_jobs(NameContains="blind")["TrainingJobSummaries"] == []
