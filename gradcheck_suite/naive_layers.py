"""Naive numpy layers in the cs231n shape, for the layer library (cases/layers/).

``out, cache = f_forward(x, ..., param)`` and ``dx, ... = f_backward(dout, cache)``, written the
way an assignment writes them: explicit loops over output positions, so the case files check
exactly the kind of code people hand in, against torch's own conv2d and max_pool2d.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["conv_forward_naive", "conv_backward_naive", "max_pool_forward_naive", "max_pool_backward_naive"]


def conv_forward_naive(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, int]
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W')."""
    stride, pad = int(conv_param["stride"]), int(conv_param["pad"])
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, ho, wo), dtype=np.result_type(x, w, b))
    for i in range(ho):
        for j in range(wo):
            window = xp[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]  # (N, C, HH, WW)
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout: np.ndarray, cache: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, b, conv_param = cache
    stride, pad = int(conv_param["stride"]), int(conv_param["pad"])
    _, _, hh, ww = w.shape
    _, _, ho, wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.sum(dout, axis=(0, 2, 3))
    for i in range(ho):
        for j in range(wo):
            rows = slice(i * stride, i * stride + hh)
            cols = slice(j * stride, j * stride + ww)
            d = dout[:, :, i, j]  # (N, F)
            dw += np.tensordot(d, xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(d, w, axes=([1], [0]))
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, db


def max_pool_forward_naive(x: np.ndarray, pool_param: dict[str, int]) -> tuple[np.ndarray, tuple[Any, ...]]:
    """x (N, C, H, W) -> out (N, C, H', W'), the max of each pool_height x pool_width window."""
    ph, pw, stride = int(pool_param["pool_height"]), int(pool_param["pool_width"]), int(pool_param["stride"])
    n, c, h, wd = x.shape
    ho, wo = 1 + (h - ph) // stride, 1 + (wd - pw) // stride
    out = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout: np.ndarray, cache: tuple[Any, ...]) -> np.ndarray:
    x, pool_param = cache
    ph, pw, stride = int(pool_param["pool_height"]), int(pool_param["pool_width"]), int(pool_param["stride"])
    n, c, _, _ = dout.shape
    dx = np.zeros_like(x)
    for nn in range(n):
        for cc in range(c):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    hs, ws = i * stride, j * stride
                    window = x[nn, cc, hs : hs + ph, ws : ws + pw]
                    a, k = divmod(int(np.argmax(window)), pw)
                    dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]
    return dx
