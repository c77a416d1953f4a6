"""Derivatives from evaluations of phi: the complex step, central differences and their
Richardson extrapolation, each with an estimate of its own error, and the kink test."""

from __future__ import annotations

import math

import numpy as np

from .runner import Runner
from .steps import COMPLEX_STEP, EPS, base_step, pow2, step_multipliers

__all__ = ["complex_step", "differences", "extrapolate", "rows"]


def rows(P: int, idx: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Point and element of each row, ordered point-major, then element, then offset."""
    point = np.repeat(np.arange(P), len(idx) * q)
    element = np.tile(np.repeat(idx, q), P)
    return point, element


def complex_step(
    runner: Runner, name: str, X: np.ndarray, idx: np.ndarray, phi_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h = COMPLEX_STEP
    P = X.shape[0]
    point, element = rows(P, idx, 1)
    fx, _, _ = runner.run(name, point, np.full(len(point), h), element=element)
    d = fx.reshape(P, len(idx)).imag / h
    # What is left is the rounding of the imaginary part, relative to the size of the terms
    # that make it up; phi_scale / |x| stands in for those terms where d itself cancels.
    # (numeric_gradients_at adds the case's gradient scale once every input is done.)
    terms = np.abs(d) + phi_scale[:, None] / np.maximum(np.abs(X[:, idx]), 1.0)
    return d, 16 * EPS * terms


def differences(
    runner: Runner,
    name: str,
    X: np.ndarray,
    idx: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mults = step_multipliers(method, f0 is not None)
    x = X[:, idx]  # (P, m)
    h = pow2(base_step(method) * np.maximum(np.abs(x), 1.0))
    plus = np.stack([(x + m * h) - x for m in mults], axis=2)  # (P, m, q)
    minus = np.stack([x - (x - m * h) for m in mults], axis=2)
    offsets = np.concatenate([plus, -minus], axis=2)
    q = len(mults)
    point, element = rows(X.shape[0], idx, 2 * q)
    f, _, _ = runner.run(name, point, offsets.reshape(-1), element=element)
    f = f.reshape(offsets.shape)
    fp, fm = f[..., :q], f[..., q:]
    scale = phi_scale[:, None, None]
    return extrapolate(fp, fm, plus, minus, method, scale, None if f0 is None else f0[:, None, None])


def extrapolate(
    fp: np.ndarray,
    fm: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Derivative, error estimate and kink flag from phi at +-steps (last axis: the steps)."""
    mults = step_multipliers(method, f0 is not None)
    D = (fp - fm) / (plus + minus)  # central differences at each step
    noise = 4 * EPS * phi_scale / np.minimum(plus, minus)  # rounding in phi, per step
    if method == "central":
        # D(s) = phi' + c s^2 + ..., so the difference of two steps measures c. Twice that:
        # the h^4 term can make the two-step difference understate it (benchmarks/numerics.py
        # saw true errors up to 1.3x the plain estimate).
        d = D[..., 0]
        err = 2 * np.abs(D[..., 1] - D[..., 0]) / abs(mults[1] ** 2 - 1) + 2 * noise[..., 0]
    else:
        r1a = (4 * D[..., 1] - D[..., 0]) / 3
        r1b = (4 * D[..., 2] - D[..., 1]) / 3
        d = (16 * r1b - r1a) / 15
        # |d - r1b| bounds r1b's fourth-order error, a generous bound on d's sixth-order one;
        # extrapolation multiplies the noise of the smallest step by at most 16/15 * 5/3.
        err = np.abs(d - r1b) + 2 * noise[..., 2]
    kink = np.zeros(d.shape, dtype=bool)
    if f0 is not None:
        # Second differences J(s) = (f(x+s) - 2 f(x) + f(x-s)) / s. Where phi is smooth they
        # follow J(s) = a s + b s^3 + O(s^5), so any three consecutive steps s, s/2, s/4 satisfy
        # J(s) - 10 J(s/2) + 16 J(s/4) = O(s^5): relative to the J's, about 1e-10 for smooth
        # functions at these steps. For a kink at any distance in (0, h], the larger of the two
        # residuals, each over its own J's largest value, is at least 1 (lowest at d = 4h/9;
        # one residual alone can vanish, near d = 9h/19), so a threshold of 0.1 separates them.
        J = (fp + fm - 2 * f0) / plus
        r = [np.abs(J[..., k] - 10 * J[..., k + 1] + 16 * J[..., k + 2]) for k in (0, 1)]
        m = [np.max(np.abs(J[..., k : k + 3]), axis=-1) for k in (0, 1)]
        biggest = np.max(np.abs(np.where(np.isfinite(d), d, 0.0)), axis=-1, keepdims=True, initial=0.0)
        # rounding: each J(s) carries 4 eps phi / s, so the residual on h/2 .. h/8 about
        # 680 eps phi / h; 4x that, and a kink worth reporting moves the slope by 1e-7 at least
        floor = np.maximum(2800 * EPS * phi_scale[..., 0] / plus[..., 0], 1e-7 * (np.abs(d) + biggest))
        kink = ((r[0] > 0.1 * m[0]) | (r[1] > 0.1 * m[1])) & (np.maximum(r[0], r[1]) > floor)
    err = np.where(~np.isfinite(d), math.inf, err)
    return d, err, kink
