"""scones/training_job.py reads train.py's output as JSON lines, and picks the channels a job gets."""

from __future__ import annotations

from scones import training_job
from scones.data import staged


def test_metrics_and_result_lines_are_parsed_as_json():
    kind, fields = training_job.parse_line('METRICS {"epoch": 3, "epochs": 12, "train_loss": 0.25, "oe_loss": 0.7}')
    assert kind == "METRICS" and fields == {"epoch": 3, "epochs": 12, "train_loss": 0.25, "oe_loss": 0.7}
    assert training_job.format_metrics(fields) == "epoch 3/12  train_loss=0.25  oe_loss=0.7"
    kind, fields = training_job.parse_line('RESULT {"test_acc": 0.98, "outlier_exposure": true}')
    assert kind == "RESULT" and fields["outlier_exposure"] is True


def test_other_lines_are_not_metrics():
    assert training_job.parse_line("training on cpu (2 CPU threads) for epochs=18") is None
    assert training_job.parse_line("METRICS epoch=3 train_loss=0.2") is None  # the old prose format
    assert training_job.parse_line("METRICS [1, 2]") is None


def test_a_job_gets_the_training_outliers_but_never_the_held_out_ones():
    manifest = {"outliers": {"mode": "auto", "train": {"channel": "outliers"}, "test": {"channel": "outliers_test"}}}
    assert staged.channel_splits(manifest) == ("train", "test", "outliers")
    assert staged.channel_splits({"outliers": {"mode": "none"}}) == ("train", "test")
    assert staged.channel_splits({}) == ("train", "test")  # staged before outliers existed
