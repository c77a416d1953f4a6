"""The first pass of ``--numeric auto`` differences: the cheapest stencil that can be good enough.

Every element (or direction) first gets two central differences, at the central method's
step ``s`` (a power of two near eps^(1/3) of the element's scale) and at ``s/2``: four
evaluations of phi, against eight for the first ladder of :mod:`.differences`. The element is
**accepted** with

    value  D(s/2)
    error  E1 = 2 |D(s) - D(s/2)| + N(s) + 2 N(s/2)  (+ the kink residual below, where charged)

where ``N(t)`` bounds the rounding of a difference at step ``t`` (phi's noise over ``t``), when

1. both differences are finite;
2. (forwards with kinks) the slope gaps ``G(t) = (phi(x + t) - 2 phi(x) + phi(x - t)) / t``
   follow the smooth model ``G(s) = 2 G(s/2)`` (``G(t) = a t + b t^3``): the residual
   ``|G(s) - 2 G(s/2)|`` is at most ``KINK_RESIDUAL`` of the larger gap, or below the
   rounding of the gaps (20 noise / s), or a kink too small to matter (``KINK_FLOOR`` of the
   gradient scale, as for the ladder); a residual that is not clean is added to ``E1``;
3. ``E1`` is good enough: at most ``SHARE`` of what the comparison resolves anyway,
   ``max(SENSITIVITY[dtype] |D|, ROUNDING eps(dtype) (|D| + S))``: the relative error issue 10
   requires every check to catch (a gradient scaled by 1 + 1e-6 in float64, 1 + 1e-3 in
   float32), or the analytic sources' own rounding tolerance (``S`` the largest |D| of the
   input at the point). A numeric pair's tolerance is ``SAFETY`` (4) x E1, so an accepted
   element leaves at least 15/16 of such a bug visible.

Everything else goes on to the full ladder, descents and kink tests (:func:`.differences.descend`).

Why ``E1`` holds. For a smooth function at these steps ``D(s) - D(s/2)`` is 3/4 of the
``s^2`` term at ``s``, three times the truncation error of ``D(s/2)``; ``2 |D(s) - D(s/2)|``
is six times it. For a kink of slope jump ``J`` at distance ``d`` within the step (the model
of ReLU, max and abs), the error of ``D(s/2)`` is ``J (s - 2d) / 2s`` for ``d < s/2`` and 0
beyond, while ``2 |D(s) - D(s/2)| = J d / s`` and the residual is ``J |3d - s| / s``: their sum
covers the error at every ``d``, and the residual is clean (below 0.1 of the gap) only for
``d`` in about [0.31 s, 0.35 s], where ``J d / s`` alone is at least 1.6 times the error.
A kink on the point itself (``d = 0``) leaves a residual equal to the whole gap ``J``.
Accepting needs ``E1`` below ``SHARE x SENSITIVITY`` of the gradient, so a kink is accepted
only where its jump is a few parts in a billion of the gradient (float64), inside ``E1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "KINK_FLOOR",
    "KINK_RESIDUAL",
    "ROUNDING",
    "SENSITIVITY",
    "SHARE",
    "FirstPass",
    "accuracy_target",
    "read_first_pass",
]

# What a comparison resolves by itself, by the check's dtype: the relative error issue 10
# requires to be caught (a manual gradient scaled by 1 + SENSITIVITY fails, manual named).
# Lower precisions (issue 12) are held to float32's, which asks more of them than they need.
SENSITIVITY = {"float64": 1e-6, "float32": 1e-3}
# The analytic sources' fixed rounding tolerance, ROUNDING eps(dtype) (|g| + S): the same
# constant as :data:`gradcheck_suite._compare.ROUNDING` (kept here so that the numeric source
# imports nothing from the comparison; tests/test_first_pass.py checks they match).
ROUNDING = 64.0
# An accepted element's error estimate is at most this share of what the comparison resolves:
# its tolerance SAFETY x E1 (4 x) then takes at most 1/16 of a bug of that size.
SHARE = 1 / 64
# As for the ladder (.differences): the slope-gap residual that still counts as smooth,
# relative to the largest gap, and a kink too small to matter, relative to the gradient scale.
KINK_RESIDUAL = 0.1
KINK_FLOOR = 1e-7


def _eps(dtype: str) -> float:
    try:
        return float(np.finfo(np.dtype(dtype)).eps)
    except TypeError:  # a dtype numpy lacks (bfloat16): float16's eps is as coarse
        return float(np.finfo(np.float16).eps)


def accuracy_target(value: np.ndarray, scale: np.ndarray, dtype: str) -> np.ndarray:
    """Per row, the largest error estimate that is good enough for a check in ``dtype``:
    ``SHARE`` of the larger of ``SENSITIVITY`` times max(|value|, scale) and the analytic
    rounding tolerance."""
    size = np.abs(value)
    analytic = ROUNDING * _eps(dtype) * (size + scale)
    sensitivity = SENSITIVITY.get(dtype, SENSITIVITY["float32"])
    return SHARE * np.maximum(sensitivity * np.maximum(size, scale), analytic)


@dataclass(frozen=True)
class FirstPass:
    """What the first pass needs besides the evaluations: each row's first step ``s`` and the
    check's dtype (what accuracy is good enough)."""

    step: np.ndarray
    dtype: str = "float64"


@dataclass
class FirstRead:
    value: np.ndarray
    error: np.ndarray
    accepted: np.ndarray
    size: np.ndarray  # |D(s)|, for the gradient scale at each point


def read_first_pass(
    fp: np.ndarray,
    fm: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    f0: np.ndarray | None,
    noise: np.ndarray,
    point: np.ndarray,
    dtype: str,
) -> FirstRead:
    """Read the two-step stencil of every row (columns: steps s and s/2). ``f0`` is phi at
    each row's point (None: no kinks to look for), ``noise`` a bound on one evaluation's
    rounding there, ``point`` the row's point (the gradient scale is per point)."""
    with np.errstate(invalid="ignore", over="ignore"):
        D = (fp - fm) / (plus + minus)
        N = noise[:, None] / np.minimum(plus, minus)
        size = np.abs(D[:, 0])
        size = np.where(np.isfinite(size), size, 0.0)
        biggest = np.zeros(int(point.max(initial=-1)) + 1)
        np.maximum.at(biggest, point, size)
        scale = biggest[point]
        value = D[:, 1]
        error = 2 * np.abs(D[:, 0] - D[:, 1]) + N[:, 0] + 2 * N[:, 1]
        smooth = np.ones(len(value), dtype=bool)
        if f0 is not None:
            G = (fp + fm - 2 * f0[:, None]) / plus
            residual = np.abs(G[:, 0] - 2 * G[:, 1])
            clean = residual <= KINK_RESIDUAL * np.max(np.abs(G), axis=1)
            negligible = residual <= np.maximum(20 * noise / plus[:, 0], KINK_FLOOR * scale)
            smooth = clean | negligible
            error = error + np.where(clean, 0.0, residual)
        finite = np.isfinite(value) & np.isfinite(error)
        accepted = finite & smooth & (error <= accuracy_target(value, scale, dtype))
    return FirstRead(value, np.where(finite, error, np.inf), accepted, size)
