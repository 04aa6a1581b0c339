"""training/probe.py: the probe's views, its folds, and out-of-fold logits that never come from a probe that saw the
photo (what the cross-fitted temperature is fitted on); train.py's flags for them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import probe, train


def test_views_mirror_and_shift_the_photo_by_two_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert torch.equal(probe.view(x, "id"), x)
    assert torch.equal(probe.view(x, "flip")[..., 0], x[..., -1])
    for name in probe.VIEWS:
        assert probe.view(x, name).shape == x.shape
    assert torch.equal(probe.view(x, "left")[..., :, :-2], x[..., :, 2:])  # content moves left
    assert torch.equal(probe.view(x, "right")[..., :, 2:], x[..., :, :-2])
    assert torch.equal(probe.view(x, "up")[..., :-2, :], x[..., 2:, :])
    assert torch.equal(probe.view(x, "down")[..., 2:, :], x[..., :-2, :])


def test_parse_views_puts_the_photo_first_and_names_unknown_views():
    assert probe.parse_views("flip,up") == ["id", "flip", "up"]
    assert probe.parse_views("id") == ["id"]
    with pytest.raises(ValueError, match=r"unknown view.*rotate"):
        probe.parse_views("flip,rotate")


def test_folds_are_stratified_and_seeded():
    labels = np.array([0] * 50 + [1] * 30)
    fold = probe.stratified_folds(labels, 5, seed=0)
    for f in range(5):
        assert (fold[labels == 0] == f).sum() == 10 and (fold[labels == 1] == f).sum() == 6
    assert np.array_equal(fold, probe.stratified_folds(labels, 5, seed=0))


def test_out_of_fold_logits_come_from_probes_that_never_saw_the_photo():
    """Random features with random labels: a weakly regularised probe memorises the photos it was fitted on
    (in-sample accuracy ~1), so only logits from probes fitted without the photo are at chance."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 200, 400, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 2, (200,), generator=generator)
    weight, bias, _ = probe.fit_probe(features, targets, 2, l2=1e-4)
    in_sample = (probe.logits(weight, bias, features).argmax(1) == targets.numpy()).mean()
    oof = probe.out_of_fold_logits(features, targets, 2, l2=1e-4, k=5, seed=0)
    out_of_fold = (oof.argmax(1) == targets.numpy()).mean()
    assert in_sample > 0.95 and out_of_fold < 0.65, (in_sample, out_of_fold)


def test_every_view_is_a_row_with_its_photos_label_and_outliers_are_pulled_to_uniform():
    features = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]], [[0.9, 0.1], [-0.9, 0.1]]], dtype=torch.float64)
    targets = torch.tensor([0, 1])
    weight, bias, _ = probe.fit_probe(features, targets, 2, l2=1e-3)
    assert (probe.logits(weight, bias, features[0]).argmax(1) == [0, 1]).all()
    outliers = torch.tensor([[0.0, 5.0]] * 4, dtype=torch.float64)
    weight, bias, _ = probe.fit_probe(features, targets, 2, l2=1e-3, out_features=outliers, oe_weight=1.0)
    on_outliers = torch.softmax(torch.from_numpy(probe.logits(weight, bias, outliers)), 1)
    assert on_outliers.max() < 0.6


def test_the_standardised_probe_folded_into_the_head_gives_the_same_logits_on_raw_features():
    """The probe is fitted on standardised features (one L2 for features of every layer's scale); the head the
    model carries reads raw ones, so the standardiser is folded into it and must change no logit."""
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 60, 5, generator=generator, dtype=torch.float64) * torch.tensor([1, 10, 100, 0.1, 3.0])
    raw = raw + torch.tensor([5.0, -2, 0, 1, 40])
    raw[:, :, 2] = 0.0  # a channel no photo lights
    targets = (raw[0, :, 0] > 5).long()
    mean, scale = probe.standardiser(raw)
    assert torch.allclose(mean, raw[0].mean(0)) and torch.allclose(scale[[0, 1, 3, 4]], raw[0].std(0)[[0, 1, 3, 4]])
    assert scale[2] == 1.0  # not ~0: an outlier lighting it must not become an enormous feature
    weight, bias, _ = probe.fit_probe((raw - mean) / scale, targets, 2, l2=0.3)
    folded_weight, folded_bias = probe.fold_standardiser(weight, bias, mean, scale)
    expected = probe.logits(weight, bias, (raw[0] - mean) / scale)
    np.testing.assert_allclose(probe.logits(folded_weight, folded_bias, raw[0]), expected, rtol=1e-9, atol=1e-9)


def test_the_lite0_probe_alone_reads_every_blocks_features_by_default_fine_tuning_and_small_the_last():
    lite0 = ["--classes", "a,b", "--backbone", "efficientnet-lite0"]
    assert train.parse_args([*lite0, "--epochs", "0"]).features == "blocks"
    assert train.parse_args(lite0).features == "last"  # fine-tuned by default
    assert train.parse_args(["--classes", "a,b"]).features == "last"
    assert train.parse_args([*lite0, "--epochs", "0", "--features", "last"]).features == "last"
    assert train.parse_args([*lite0, "--features", "blocks"]).features == "blocks"


def test_the_lite0_probe_alone_defaults_to_a_cross_fitted_temperature_and_fine_tuning_to_the_split():
    args = train.parse_args(["--classes", "a,b", "--backbone", "efficientnet-lite0", "--epochs", "0"])
    assert (args.probe_views, args.temperature_folds) == ("id", 5)
    args = train.parse_args(["--classes", "a,b"])
    assert (args.probe_views, args.temperature_folds) == ("id", 0)
    args = train.parse_args(["--classes", "a,b", "--backbone", "efficientnet-lite0"])
    assert args.temperature_folds == 0  # fine-tuned: the temperature goes back to the --val-fraction split


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backbone", "efficientnet-lite0", "--probe-views", "id,spin"], "--probe-views: unknown view"),
        (["--backbone", "efficientnet-lite0", "--temperature-folds", "1"], "--temperature-folds must be 0 or in"),
        (["--backbone", "efficientnet-lite0", "--epochs", "2", "--temperature-folds", "5"], "probe only"),
        (["--temperature-folds", "5"], "--temperature-folds applies to a pretrained backbone"),
        (["--probe-views", "id,flip"], "--probe-views applies to a pretrained backbone"),
        (["--features", "blocks"], "--features applies to a pretrained backbone only"),
        (["--backbone", "efficientnet-lite0", "--features", "all"], "--features must be one of last, blocks"),
        (["--backbone", "efficientnet-lite0", "--probe-l2", "-1"], "--probe-l2 must be a number >= 0"),
    ],
)
def test_bad_probe_flags_are_named(argv, message):
    with pytest.raises(train.TrainingInputError, match=message):
        train.parse_args(["--classes", "a,b", *argv])
