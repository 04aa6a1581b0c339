"""The quality gate: a worse candidate is refused naming the figure, an equal one passes, other labels are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import make_brightness_model

from scones import gate

MARGINS = {"accuracy": 0.01, "ece": 0.01, "coverage": 0.02, "false_pass": 0.02}


@pytest.fixture(scope="module")
def split():
    # bright images are bicycles (0), dark ones motorcycles (1); outliers: mid-grey images of neither class
    rng = np.random.default_rng(0)
    bright = rng.integers(200, 256, (20, 32, 32, 3), dtype=np.uint8)
    dark = rng.integers(0, 50, (20, 32, 32, 3), dtype=np.uint8)
    grey = np.full((10, 32, 32, 3), 128, np.uint8)
    return gate.Split(
        np.concatenate([bright, dark]), np.array([0] * 20 + [1] * 20), (grey, np.zeros(10, int), ["grey"])
    )


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    return make_brightness_model(tmp_path_factory.mktemp("gate") / "production")


def test_an_equal_candidate_passes(split, production, tmp_path):
    candidate = shutil.copytree(production, tmp_path / "candidate")
    found = gate.check(candidate, production, split, 0.93, MARGINS, log=lambda _m: None)
    assert found["candidate"] == found["production"] and found["candidate"]["accuracy"] == 1.0


def test_a_worse_candidate_is_refused_naming_the_figure(split, production, tmp_path):
    # given a candidate that swaps the classes (accuracy 0)
    candidate = make_brightness_model(tmp_path / "candidate", sharpness=-30.0)
    # then the gate refuses it in one line naming accuracy, the worst figure
    with pytest.raises(gate.GateError) as refused:
        gate.check(candidate, production, split, 0.93, MARGINS, log=lambda _m: None)
    line = refused.value.line()
    assert "\n" not in line and line.startswith("the candidate is worse than production: accuracy 0.0000 vs 1.0000")
    assert "--force" in line


def test_only_what_exceeds_its_margin_counts():
    production = {"accuracy": 0.90, "ece": 0.03, "coverage": 0.70, "false_pass": 0.10}
    within = {"accuracy": 0.895, "ece": 0.035, "coverage": 0.69, "false_pass": 0.11}
    assert gate.worse(within, production, MARGINS) == []
    beyond = {**within, "false_pass": 0.25, "coverage": 0.60}
    assert [line.split()[0] for line in gate.worse(beyond, production, MARGINS)] == ["false_pass", "coverage"]


def test_other_labels_are_refused_by_name(split, production, tmp_path):
    candidate = shutil.copytree(production, tmp_path / "candidate")
    (candidate / "labels.json").write_text(json.dumps(["bus", "train"]))
    with pytest.raises(gate.GateError, match="answers bus, train but production answers bicycle, motorcycle"):
        gate.check(candidate, production, split, 0.93, MARGINS, log=lambda _m: None)
