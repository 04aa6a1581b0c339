"""Temperature scaling and expected calibration error (numpy + torch only)."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.nn import functional as F


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the bin-weighted gap between confidence (top probability) and accuracy, equal-width bins."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per-bin confidence, accuracy and count (for a reliability diagram)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        rows.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": int(in_bin.sum()),
                "confidence": float(confidence[in_bin].mean()) if in_bin.any() else None,
                "accuracy": float(correct[in_bin].mean()) if in_bin.any() else None,
            }
        )
    return rows


def fit_temperature(logits: np.ndarray, labels: np.ndarray, prior_sigma: float = 0.5) -> float:
    """The temperature T minimising the held-out negative log-likelihood of softmax(logits / T).

    A weak log-normal prior on T (log T ~ N(0, prior_sigma²), i.e. a MAP estimate) keeps the fit finite when the
    held-out split is classified perfectly: plain NLL then keeps falling as T → 0, which would make every
    prediction, including the wrong ones on new data, fully confident.
    """
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        nll = F.cross_entropy(x / log_t.exp(), y, reduction="sum")
        loss = nll + (log_t**2).sum() / (2 * prior_sigma**2)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
