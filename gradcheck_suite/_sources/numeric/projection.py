"""Projection mode: directional derivatives of phi along random directions, for inputs too
large to perturb one element at a time.

Each direction is Rademacher signs times a power of two near each element's scale (its
magnitude, or its input's scale where smaller), so a step along it is relative to every
element, as the per-element steps are, and its product with any float64 gradient is exact.
"""

from __future__ import annotations

import numpy as np
import torch

from .differences import complex_error, descend
from .first_pass import FirstPass
from .runner import Runner
from .steps import BASE_STEP, COMPLEX_STEP, FIRST_STEP, element_scale, pow2

__all__ = ["directions", "project_complex", "project_differences"]

Projected = list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # per point: d, error, kink, W


def directions(X: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(P, K, n) directions from (K, n) signs."""
    return signs[None, :, :] * pow2(element_scale(X))[:, None, :]


def project_complex(
    runner: Runner, name: str, X: np.ndarray, signs: np.ndarray, bounds: list[np.ndarray] | None
) -> Projected:
    P, n = X.shape
    K = signs.shape[0]
    W = directions(X, signs)
    h = COMPLEX_STEP
    results = []
    for p in range(P):
        # One more evaluation along 3 w_0: in exact arithmetic it is three times the first,
        # and 3h is no power of two, so every rounding differs: their gap samples the
        # rounding error that no a-priori bound sees (cancellation inside a callable).
        dirs = torch.as_tensor(np.concatenate([W[p], 3 * W[p][:1]]), device=runner.obj.be.device)
        rows = K + 1
        fx, _, imag_terms = runner.run(
            name, np.full(rows, p), np.full(rows, h), direction=np.arange(rows), directions=dirs, magnitudes=True
        )
        d = fx.imag / h
        defect = np.full(K, abs(d[K] / 3 - d[0]))
        bound = None if bounds is None else np.abs(W[p]) @ bounds[p]
        # the rounding of the imaginary part is relative to the terms summed into it
        err = complex_error(d[:K], bound, defect, imag_terms[:K] / h)
        results.append((d[:K], err, np.zeros(K, dtype=bool), W[p]))
    return results


def project_differences(
    runner: Runner,
    name: str,
    X: np.ndarray,
    signs: np.ndarray,
    method: str,
    f0: np.ndarray,
    noise: np.ndarray,
    kinks: bool,
    measured: bool,
    first_pass: str | None = None,
) -> Projected:
    P, n = X.shape
    K = signs.shape[0]
    W = directions(X, signs)
    dirs = [torch.as_tensor(W[p], device=runner.obj.be.device) for p in range(P)]
    point = np.repeat(np.arange(P), K)
    direction = np.tile(np.arange(K), P)

    def evaluate(rows: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        q = steps.shape[1]
        fp = np.empty(steps.shape)
        fm = np.empty(steps.shape)
        for p in np.unique(point[rows]):
            mine = np.flatnonzero(point[rows] == p)
            offsets = np.concatenate([steps[mine], -steps[mine]], axis=1)
            f, _, _ = runner.run(
                name,
                np.full(offsets.size, p),
                offsets.reshape(-1),
                direction=np.repeat(direction[rows][mine], 2 * q),
                directions=dirs[p],
            )
            f = f.reshape(len(mine), 2 * q)
            fp[mine], fm[mine] = f[:, :q], f[:, q:]
        return fp, fm, steps, steps

    # w already carries each element's magnitude, so the step along it is the base step
    base = BASE_STEP["central" if method == "central" else "richardson"]
    h0 = np.full(P * K, float(pow2(np.array(base))))
    first = None
    if first_pass is not None:
        first = FirstPass(np.full(P * K, FIRST_STEP), first_pass)
    est = descend(evaluate, h0, f0[point], noise[point], point, method, kinks, measured, first)
    results = []
    for p in range(P):
        rows = slice(p * K, (p + 1) * K)
        results.append((est.value[rows], est.error[rows], est.kink[rows], W[p]))
    return results
