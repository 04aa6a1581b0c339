"""The outlier channels: generated kinds, the fixed train/test split, and the staged format."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from scones.data import outliers, staging
from scones.data.classes import VEHICLES


@pytest.fixture
def small(monkeypatch):
    """Fewer images per kind, so that a test draws a few hundred images rather than thousands."""
    monkeypatch.setitem(outliers.GENERATED_PER_KIND, "train", 6)
    monkeypatch.setitem(outliers.GENERATED_PER_KIND, "test", 4)
    monkeypatch.setitem(outliers.CLASS_PER_KIND, "train", 5)
    monkeypatch.setitem(outliers.CLASS_PER_KIND, "test", 3)


@pytest.mark.parametrize("kind", list(outliers.GENERATORS))
def test_each_generated_kind_is_a_deterministic_32x32_rgb_image(kind):
    image = outliers.draw(kind, seed=3, index=7)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, outliers.draw(kind, seed=3, index=7))
    assert not np.array_equal(image, outliers.draw(kind, seed=3, index=8))


def test_flat_is_one_colour_and_noise_is_not():
    flat, noise = outliers.draw("flat", 0, 0), outliers.draw("noise", 0, 0)
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) == 1
    assert len(np.unique(noise.reshape(-1, 3), axis=0)) > 100


def test_generated_training_images_carry_colour_and_luminance_grain():
    """On a grey picture, luminance grain keeps R = G = B and colour grain does not; both must occur, or the
    model never learns that greyscale noise is no vehicle (held-out grey noise passed 96-100 % without it)."""
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    kinds = set()
    for index in range(40):
        image = outliers._finish(grey, np.random.default_rng([5, index])).astype(int)
        spread = np.abs(image - image.mean(2, keepdims=True)).max()
        if image.std() > 0.5:  # sigma can draw near 0
            kinds.add("luminance" if spread == 0 else "colour")
    assert kinds == {"luminance", "colour"}


def test_generated_kinds_for_training_and_evaluation_are_disjoint():
    assert not set(outliers.TRAIN_KINDS) & set(outliers.TEST_KINDS)
    assert set(outliers.TEST_KINDS) == {"noise", "flat", "tiny"}


def test_unselected_classes_alternate_in_cifar_order():
    train, test = outliers.split_classes(["train", "bus", "tank", "rocket", "lawn_mower"])
    assert train == ["bus", "rocket", "train"] and test == ["lawn_mower", "tank"]


def test_synthetic_outliers_are_the_other_vehicles_plus_generated_kinds_never_shared(small):
    sets = outliers.build(["bicycle", "motorcycle"], None, seed=0)
    train, test = sets["train"], sets["test"]
    others = [v for v in VEHICLES if v not in ("bicycle", "motorcycle")]
    assert sorted(k for k in train.kinds + test.kinds if k in VEHICLES) == sorted(others)
    assert not set(train.kinds) & set(test.kinds)
    assert "bicycle" not in train.kinds + test.kinds and "motorcycle" not in train.kinds + test.kinds
    assert train.kinds[-5:] == list(outliers.TRAIN_KINDS) and test.kinds[-3:] == list(outliers.TEST_KINDS)
    assert np.bincount(train.labels).tolist() == [5] * 4 + [6] * 5
    assert np.bincount(test.labels).tolist() == [3] * 4 + [4] * 3
    assert len(set(train.names)) == len(train.names) and not set(train.names) & set(test.names)


def test_a_limit_caps_every_kind():
    sets = outliers.build(["bicycle", "motorcycle"], None, seed=0, limit={"train": 2, "test": 1})
    assert np.bincount(sets["train"].labels).tolist() == [2] * 9
    assert np.bincount(sets["test"].labels).tolist() == [1] * 7


def test_ten_vehicles_leave_only_generated_kinds(small):
    sets = outliers.build(list(VEHICLES), None, seed=0)
    assert sets["train"].kinds == list(outliers.TRAIN_KINDS) and sets["test"].kinds == list(outliers.TEST_KINDS)


def test_staged_outlier_channels_format_and_manifest(cifar_tarball, tmp_path, small):
    # the fixture tarball holds bicycle, motorcycle and apple: apple is the one unselected class
    source = staging.resolve_source(str(cifar_tarball), ["bicycle", "motorcycle"])
    workdir = tmp_path / "staged"
    manifest = staging.build(source, ["bicycle", "motorcycle"], workdir)
    entry = manifest["outliers"]
    assert entry["mode"] == "auto" and entry["rule"] == outliers.RULE
    assert entry["train"]["channel"] == "outliers" and entry["test"]["channel"] == "outliers_test"
    assert entry["train"]["kinds"] == ["apple", *outliers.TRAIN_KINDS]  # apple: the first (and only) class
    assert entry["test"]["kinds"] == list(outliers.TEST_KINDS)
    assert not set(entry["train"]["kinds"]) & set(entry["test"]["kinds"])
    for split in ("train", "test"):
        folder = entry[split]["channel"]
        lines = (workdir / f"{folder}.lst").read_text().splitlines()
        assert len(lines) == sum(entry[split]["counts"].values()) == len(list((workdir / folder).iterdir()))
        per_kind = {}
        for number, line in enumerate(lines):
            index, label, path = line.split("\t")
            assert int(index) == number
            kind = entry[split]["kinds"][int(label)]
            per_kind[kind] = per_kind.get(kind, 0) + 1
            with Image.open(workdir / folder / path) as image:
                assert image.size == (32, 32) and image.mode == "RGB" and image.format == "PNG"
        assert per_kind == entry[split]["counts"]
        assert f"{folder}.lst" in manifest["files"]
    assert entry["train"]["counts"] == {"apple": 5, **dict.fromkeys(outliers.TRAIN_KINDS, 6)}  # apple: of 6
    assert entry["test"]["counts"] == dict.fromkeys(outliers.TEST_KINDS, 2)  # no more than a class has: 2
    for rel, md5 in manifest["files"].items():
        assert hashlib.md5((workdir / rel).read_bytes()).hexdigest() == md5
    assert "held-out outliers (evaluation only): 6 in outliers_test/" in staging.describe(manifest)


def test_outliers_none_stages_no_channel_and_switching_rebuilds(cifar_tarball, tmp_path, small):
    source = staging.resolve_source(str(cifar_tarball), ["bicycle", "motorcycle"])
    workdir = tmp_path / "staged"
    manifest = staging.build(source, ["bicycle", "motorcycle"], workdir, "none")
    assert manifest["outliers"] == {"mode": "none"}
    assert not (workdir / "outliers").exists() and not (workdir / "outliers.lst").exists()
    assert not any(rel.startswith("outliers") for rel in manifest["files"])
    assert "outliers: none staged" in staging.describe(manifest)
    again = staging.build(source, ["bicycle", "motorcycle"], workdir, "auto")
    assert again["outliers"]["mode"] == "auto" and (workdir / "outliers_test.lst").is_file()
    assert staging.default_workdir(source, ["bicycle"], "none") != staging.default_workdir(source, ["bicycle"])


def test_unknown_outlier_mode_is_refused(cifar_tarball, tmp_path):
    source = staging.resolve_source(str(cifar_tarball), ["bicycle", "motorcycle"])
    with pytest.raises(staging.StagingError, match="--outliers 'some'"):
        staging.build(source, ["bicycle", "motorcycle"], tmp_path / "x", "some")
