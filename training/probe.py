"""The linear probe on a pretrained backbone's pooled features, and its cross-fitted temperature (numpy + torch).

`train.py --backbone efficientnet-lite0` (no fine-tuning epochs) computes the frozen features once, for each
training photo in several views (`VIEWS`: the photo, its mirror image, small shifts), fits the head on all of
them, and fits the temperature (calibration.fit_temperature) on out-of-fold logits: k probes, each fitted on the
other folds' photos (all their views), score the fold's own photos, so every training photo is calibrated on by a
probe that never saw it, and none is held back from the final probe. bench/cv_real_probe.py chose the recipe with
the same functions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

SHIFT_PX = 2  # the shifted views move the 32×32 photo this many pixels (edges replicated)
VIEWS = ("id", "flip", "left", "right", "up", "down")


def view(x: torch.Tensor, name: str) -> torch.Tensor:
    """One deterministic view of an N×3×H×W batch: itself, mirrored, or shifted by SHIFT_PX (edges replicated)."""
    if name == "id":
        return x
    if name == "flip":
        return x.flip(-1)
    s = SHIFT_PX
    padded = F.pad(x, (s, s, s, s), mode="replicate")
    h, w = x.shape[-2:]
    dy, dx = {"left": (s, 2 * s), "right": (s, 0), "up": (2 * s, s), "down": (0, s)}[name]
    return padded[..., dy : dy + h, dx : dx + w]


def parse_views(text: str) -> list[str]:
    """`--probe-views` as a list: comma-separated names from VIEWS, `id` always first (added when missing)."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown view(s) {', '.join(unknown)}; use any of {', '.join(VIEWS)}")
    return ["id", *dict.fromkeys(v for v in names if v != "id")]


@torch.no_grad()
def pooled_features(model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch: int = 128) -> torch.Tensor:
    model.eval()
    return torch.cat([model.features(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


def view_features(model, x: torch.Tensor, device: torch.device, views: list[str]) -> torch.Tensor:
    """V×N×D float64: the pooled features of every photo in every view (views[0] is the photo itself)."""
    return torch.stack([pooled_features(model, view(x, name), device) for name in views]).double()


def standardiser(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, scale) of each feature over the photos (the first view's rows of V×N×D, or N×D). The probe is fitted on
    standardised features, so one L2 weighs features of every layer alike; `fold_standardiser` puts it in the head.
    A feature constant over the photos (a channel no photo lights) keeps scale 1: divided by ~0, an outlier that
    does light it would become an enormous value."""
    rows = features[0] if features.dim() == 3 else features
    scale = rows.std(0)
    return rows.mean(0), torch.where(scale > 1e-6, scale, torch.ones_like(scale))


def fold_standardiser(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head on raw features that gives `weight`, `bias`'s logits on standardised ones: W/s and b - (W/s)·m."""
    weight = weight / scale
    return weight, bias - weight @ mean


def fit_probe(
    features: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    l2: float,
    out_features: torch.Tensor | None = None,
    oe_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Multinomial logistic regression by L-BFGS: (weight C×D, bias C, final loss), float64.

    `features` is N×D or V×N×D (every view of a photo is a training row with its label). With `out_features`,
    the outliers' cross-entropy to uniform is added with weight `oe_weight` (outlier exposure)."""
    if features.dim() == 3:
        targets = targets.repeat(features.shape[0])
        features = features.reshape(-1, features.shape[-1])
    features, targets = features.double(), targets.long()
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=200, line_search_fn="strong_wolfe")
    use_outliers = out_features is not None and len(out_features) > 0 and oe_weight > 0

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, targets) + l2 * (weight**2).sum()
        if use_outliers:
            loss = loss + oe_weight * -F.log_softmax(out_features.double() @ weight.T + bias, dim=1).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    loss = float(closure().detach())
    return weight.detach(), bias.detach(), loss


def logits(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor) -> np.ndarray:
    """Logits of N×D features (or of V×N×D: averaged over the views, as a test-time-averaged model does)."""
    out = features.double() @ weight.T + bias
    return (out.mean(0) if out.dim() == 3 else out).numpy()


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold number 0..k-1 per photo, each class dealt round-robin over the folds after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def out_of_fold_logits(
    features: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    l2: float,
    k: int,
    seed: int,
    out_features: torch.Tensor | None = None,
    oe_weight: float = 0.0,
    test_views: int = 1,
) -> np.ndarray:
    """N×C logits, each photo's from a probe fitted on the other k-1 folds (all their views; the outliers in
    every fold). `test_views` > 1 averages the logits of the first that many views (test-time averaging)."""
    fold = stratified_folds(targets.numpy(), k, seed)
    result = np.zeros((len(targets), num_classes))
    for f in range(k):
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        weight, bias, _ = fit_probe(features[:, fit], targets[fit], num_classes, l2, out_features, oe_weight)
        result[held] = logits(weight, bias, features[:test_views, held])
    return result
