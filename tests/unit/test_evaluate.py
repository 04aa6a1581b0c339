"""`scones evaluate`'s model (issue #21): the deployed one by default, not the newest, said in one line; a model whose
labels are not the staged classes (or the deployed stack's) refused with both lists. No cloud: the S3 reads are
replaced by what they would return."""

from __future__ import annotations

import json

import pytest
from helpers import make_brightness_model

from scones import evaluate, models, stacks
from scones.core import settings
from scones.data import staged


class Picked(Exception):
    """Stops evaluate once it has chosen and checked its model (the rest needs staged images)."""


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path / "state"))
    monkeypatch.setenv(settings.SCONES_ENDPOINT_NAME, "ep")
    monkeypatch.setenv(settings.STACK_NAME, "s-workflow")
    (tmp_path / "state").mkdir()
    monkeypatch.setattr(models, "latest_model_uri", lambda *_a, **_k: "s3://b/models/newest/output/model.tar.gz")
    monkeypatch.setattr(stacks, "deployed_labels", lambda *_a: None)
    return tmp_path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model of bicycle,motorcycle wherever evaluate fetches from; evaluate stops after the label check."""
    return make_brightness_model(tmp_path_factory.mktemp("model") / "model")


def run(monkeypatch, model_dir, classes, **kwargs):
    fetched = []

    def fetch(uri, _dest):
        fetched.append(uri)
        return model_dir

    monkeypatch.setattr(models, "fetch_model", fetch)
    monkeypatch.setattr(staged, "read_manifest", lambda *_a: {"classes": classes})
    monkeypatch.setattr(staged, "download_channels", lambda *_a, **_k: (_ for _ in ()).throw(Picked()))
    lines: list[str] = []
    with pytest.raises(Picked):
        evaluate.evaluate("b", "data", log=lines.append, **kwargs)
    return fetched, lines


def test_the_default_is_the_model_the_local_endpoint_serves_not_the_newest(state, model, monkeypatch):
    record = {"pid": 1, "model_uri": "s3://b/models/served/output/model.tar.gz", "model_dir": str(model)}
    settings.endpoint_record_path("ep").write_text(json.dumps(record))
    fetched, lines = run(monkeypatch, model, ["bicycle", "motorcycle"], target="local")
    assert fetched == ["s3://b/models/served/output/model.tar.gz"]
    assert lines[0] == (
        "evaluating s3://b/models/served/output/model.tar.gz: the model endpoint ep serves "
        "(pass --model to evaluate another)"
    )


def test_on_aws_the_default_is_what_the_stack_serves(state, model, monkeypatch):
    record = {"stack": "s-workflow", "bucket": "b", "training_job": "s-train-1", "model_data": "s3://b/models/x.tar.gz"}
    settings.aws_record_path("s-workflow").write_text(json.dumps(record))
    assert models.deployed_model_uri("aws") == ("s3://b/models/x.tar.gz", "the model stack s-workflow serves on AWS")
    del record["model_data"]
    settings.aws_record_path("s-workflow").write_text(json.dumps(record))
    assert models.deployed_model_uri("aws")[0] == "s3://b/models/s-train-1/output/model.tar.gz"
    assert models.deployed_model_uri("local") is None


def test_with_nothing_deployed_the_newest_is_taken_and_said(state, model, monkeypatch):
    fetched, lines = run(monkeypatch, model, ["bicycle", "motorcycle"], target="local")
    assert fetched == ["s3://b/models/newest/output/model.tar.gz"] and "nothing is deployed" in lines[0]


def test_labels_that_differ_from_the_staged_classes_are_refused_with_both_lists(state, model, monkeypatch):
    with pytest.raises(evaluate.LabelsDifferError) as raised:
        run(monkeypatch, model, ["bus", "train"], model="some/model", target="local")
    line = raised.value.line()
    assert "answers in bicycle,motorcycle" in line and "stages bus,train" in line and "\n" not in line


def test_the_newest_model_is_refused_when_the_deployed_stack_answers_in_other_classes(state, model, monkeypatch):
    monkeypatch.setattr(stacks, "deployed_labels", lambda *_a: ["motorcycle", "bicycle"])
    with pytest.raises(evaluate.LabelsDifferError, match="deployed stack answers in motorcycle,bicycle"):
        run(monkeypatch, model, ["bicycle", "motorcycle"], target="local")
