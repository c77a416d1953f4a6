"""Projection mode: directional derivatives of phi along random directions, for inputs too
large to perturb one element at a time."""

from __future__ import annotations

import numpy as np
import torch

from .differences import extrapolate
from .runner import Runner
from .steps import COMPLEX_STEP, EPS, base_step, pow2, step_multipliers

__all__ = ["project_complex", "project_differences"]


def _directions(X: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(P, K, n): Rademacher signs times a power of two near each element's magnitude, so a
    step along the direction is relative to every element (as the per-element steps are)."""
    return signs[None, :, :] * pow2(np.maximum(np.abs(X), 1.0))[:, None, :]


def project_complex(
    runner: Runner, name: str, X: np.ndarray, signs: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    P, n = X.shape
    K = signs.shape[0]
    W = _directions(X, signs)
    h = COMPLEX_STEP
    results = []
    for p in range(P):
        # One more evaluation along 3 w_0: in exact arithmetic it is three times the first,
        # and 3h is no power of two, so every rounding differs: their gap samples the
        # rounding error that no a-priori bound sees (cancellation inside the program).
        dirs = torch.as_tensor(np.concatenate([W[p], 3 * W[p][:1]]), device=runner.obj.be.device)
        rows = K + 1
        fx, _, imag_terms = runner.run(
            name, np.full(rows, p), np.full(rows, h), direction=np.arange(rows), directions=dirs, magnitudes=True
        )
        d = fx.imag / h
        defect = abs(d[K] / 3 - d[0])
        # The rounding of the imaginary part is relative to the terms summed into it: the
        # program's output terms (measured, imag_terms) and the result itself.
        err = 16 * EPS * (np.abs(d[:K]) + imag_terms[:K] / h) + 2 * defect
        results.append((d[:K], err, np.zeros(K, dtype=bool), W[p]))
    return results


def project_differences(
    runner: Runner,
    name: str,
    X: np.ndarray,
    signs: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    P, n = X.shape
    K = signs.shape[0]
    W = _directions(X, signs)
    mults = np.array(step_multipliers(method, f0 is not None))
    # w already carries each element's magnitude, so the step along it is the base step.
    t = float(pow2(np.array(base_step(method))))
    steps = np.concatenate([t * mults, -t * mults])
    q = len(mults)
    results = []
    for p in range(P):
        dirs = torch.as_tensor(W[p], device=runner.obj.be.device)
        direction = np.repeat(np.arange(K), 2 * q)
        f, _, _ = runner.run(name, np.full(len(direction), p), np.tile(steps, K), direction=direction, directions=dirs)
        f = f.reshape(K, 2 * q)
        plus = np.broadcast_to(t * mults, (K, q))
        d, e, k = extrapolate(
            f[:, :q],
            f[:, q:],
            plus,
            plus,
            method,
            np.full((K, 1), phi_scale[p]),
            None if f0 is None else np.full((K, 1), f0[p]),
        )
        results.append((d, e, k, W[p]))
    return results
