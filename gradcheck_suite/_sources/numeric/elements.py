"""Full and sample mode: the derivative of phi along every chosen element of an input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .differences import complex_error, descend
from .first_pass import FirstPass
from .runner import Runner
from .steps import element_scale, initial_steps

__all__ = ["PointRounding", "complex_elements", "difference_elements"]


@dataclass(frozen=True)
class PointRounding:
    """What bounds the rounding at one point, where the forward is a program
    (:mod:`gradcheck_suite._rounding`): of one float64 evaluation of phi, and of each
    element's derivative as the complex step propagates it."""

    phi: float
    derivative: dict[str, np.ndarray] | None = None


def _rows(P: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point and element of each row, point-major."""
    return np.repeat(np.arange(P), len(idx)), np.tile(idx, P)


def complex_elements(
    runner: Runner,
    name: str,
    X: np.ndarray,
    idx: np.ndarray,
    phi_scale: np.ndarray,
    bounds: list[np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Im phi(x + i h e_k) / h for each chosen element, with its error estimate.

    ``bounds`` (per point, flat per element of ``name``) bound the rounding of the derivative
    through a program; without them (an analytic callable) a second evaluation at 3h, no
    power of two away, samples the rounding instead."""
    P = X.shape[0]
    point, element = _rows(P, idx)
    h = initial_steps(X, idx, "complex-step").reshape(-1)
    measure = bounds is None
    offsets = np.concatenate([h, 3 * h]) if measure else h
    fx, _, _ = runner.run(
        name,
        np.tile(point, 2) if measure else point,
        offsets,
        element=np.tile(element, 2) if measure else element,
    )
    d = (fx[: len(h)].imag / h).reshape(P, len(idx))
    defect = None
    if measure:
        d3 = (fx[len(h) :].imag / (3 * h)).reshape(P, len(idx))
        defect = np.abs(d3 - d)
    bound = None if bounds is None else np.stack([b[idx] for b in bounds])
    # a derivative that cancels to near zero still carries the rounding of the terms it
    # cancelled: phi's terms per unit of the element stand in for them
    floor = phi_scale[:, None] / element_scale(X, idx)
    return d, complex_error(d, bound, defect, floor)


def difference_elements(
    runner: Runner,
    name: str,
    X: np.ndarray,
    idx: np.ndarray,
    method: str,
    f0: np.ndarray,
    noise: np.ndarray,
    kinks: bool,
    measured: bool,
    first_pass: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Derivative, error estimate and persistent kink of each chosen element, from ladders of
    central differences (:func:`.differences.descend`), after a two-step first pass where
    ``first_pass`` names the check's dtype (``--numeric auto``)."""
    P, m = X.shape[0], len(idx)
    point, element = _rows(P, idx)
    x = X[point, element]

    def evaluate(rows: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        xr = x[rows][:, None]
        plus = (xr + steps) - xr  # the steps actually taken
        minus = xr - (xr - steps)
        q = steps.shape[1]
        offsets = np.concatenate([plus, -minus], axis=1)
        f, _, _ = runner.run(
            name, np.repeat(point[rows], 2 * q), offsets.reshape(-1), element=np.repeat(element[rows], 2 * q)
        )
        f = f.reshape(len(rows), 2 * q)
        return f[:, :q], f[:, q:], plus, minus

    h0 = initial_steps(X, idx, "central" if method == "central" else "richardson").reshape(-1)
    first = None
    if first_pass is not None:
        first = FirstPass(initial_steps(X, idx, "first").reshape(-1), first_pass)
    est = descend(evaluate, h0, f0[point], noise[point], point, method, kinks, measured, first)
    return est.value.reshape(P, m), est.error.reshape(P, m), est.kink.reshape(P, m)
