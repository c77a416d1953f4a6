"""A cs231n-style numpy layer: ``out, cache = forward(...)`` and ``grads = backward(dout, cache)``."""

from __future__ import annotations

from typing import Any

import numpy as np


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple[Any, ...]]:
    """x (N, d_1, ..., d_k), w (D, M) with D = d_1 * ... * d_k, b (M,) -> out (N, M)."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout: np.ndarray, cache: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db
