"""How separable is a staged set without learning features? A multinomial logistic regression on raw
pixels (standardised), trained with Adam on the training split and scored on the test split.

The synthetic set must not be trivially separable: a linear model on raw pixels should stay well below
what a small CNN reaches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scones.data import lst


def load_split(workdir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N×32×32×3 uint8 images, N labels) from a staged folder's `<split>.lst`."""
    return lst.load_images(workdir / split, workdir / f"{split}.lst")


def logistic_regression_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    epochs: int = 300,
    l2: float = 1e-3,
    lr: float = 0.01,
    seed: int = 0,
) -> float:
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32)
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    k = int(max(y_train.max(), y_test.max())) + 1
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.01, (x_train.shape[1], k)).astype(np.float32)
    b = np.zeros(k, np.float32)
    onehot = np.eye(k, dtype=np.float32)[y_train]
    m_w, v_w, m_b, v_b = (np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b))
    for step in range(1, epochs + 1):  # full-batch Adam
        logits = x_train @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x_train)
        g_w, g_b = x_train.T @ g + l2 * w, g.sum(0)
        for param, grad, m, v in ((w, g_w, m_w, v_w), (b, g_b, m_b, v_b)):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return float(((x_test @ w + b).argmax(1) == y_test).mean())


def staged_accuracy(workdir: Path) -> float:
    """The logistic regression's test accuracy on a staged folder (train on train.lst, score on test.lst)."""
    x_train, y_train = load_split(workdir, "train")
    x_test, y_test = load_split(workdir, "test")
    return logistic_regression_accuracy(x_train, y_train, x_test, y_test)
