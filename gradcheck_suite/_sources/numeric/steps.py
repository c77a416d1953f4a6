"""Step sizes: relative to each element's own magnitude, with a floor from its input.

A step relative to ``max(|x|, 1)`` is absolute 2^-7 for an input near 1e-6 (a thousand times
the input itself) and 0.5 for a logit near 80; here the floor is the input's own scale (its
root mean square at the point), so inputs near 1e-15 or 1e15 are ordinary. The step is a
power of two near the element's magnitude times a base step; the difference engine
(:mod:`.differences`) shrinks it further where the function asks for it (a kink or a jump in
the second derivative within reach, a function whose scale is far below the element's).
"""

from __future__ import annotations

import numpy as np

from ..._defaults import METHODS

__all__ = [
    "BASE_STEP",
    "base_step",
    "step_multipliers",
    "COMPLEX_STEP",
    "EPS",
    "FIRST_STEP",
    "METHODS",
    "input_scale",
    "element_scale",
    "initial_steps",
    "pow2",
    "resolve_method",
]

EPS = float(np.finfo(np.float64).eps)

# Relative base steps: the optimum for each method's truncation order in float64
# (eps^(1/3) for second order; eps^(1/7) for the sixth order the Richardson table reaches).
BASE_STEP = {"central": EPS ** (1 / 3), "richardson": EPS ** (1 / 7)}
# The first pass of --numeric auto (.first_pass) needs no more than about 1e-8 relative: near
# eps^(1/4) its truncation (s^2 times the third derivative / 6: 2.5e-9 where the third derivative is as large as
# the first) and its rounding (phi's noise over s, 7 times: about 5e-11 times the ratio of
# phi's terms to the gradient) both stay below that for ordinary functions; the optimal step
# of central differences (eps^(1/3)) would leave the rounding 20 times larger.
FIRST_STEP = 2.0**-13
# Im phi(x + ih) / h has no subtraction, so h can be tiny: its truncation error
# h^2 |phi'''| / 6 is far below rounding. Relative to the element (a power of two keeps the
# division exact), so that an input near 1e-15 is not perturbed by more than itself.
COMPLEX_STEP = 2.0**-60
# Subnormal steps lose bits: no step below this.
_TINY = 2.0**-1000


def resolve_method(method: str, analytic: bool) -> str:
    """``auto`` takes the most accurate method that applies to the program."""
    if method == "auto":
        return "complex-step" if analytic else "richardson"
    return method


def base_step(method: str) -> float:
    return BASE_STEP["central" if method == "central" else "richardson"]


def step_multipliers(method: str, kinks: bool) -> tuple[float, ...]:
    """The rungs of one ladder (see :mod:`.differences`): two windows of three steps."""
    return (1.0, 0.5) if method == "central" and not kinks else (1.0, 0.5, 0.25, 0.125)


def pow2(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(x)))


def input_scale(X: np.ndarray) -> np.ndarray:
    """Each point's scale of an input (X: (P, n)): its root mean square, 1 where all are zero."""
    rms = np.sqrt(np.mean(np.abs(X) ** 2, axis=-1))
    return np.where((rms > 0) & np.isfinite(rms), rms, 1.0)


def element_scale(X: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """max(|x|, the input's scale) per element (P, m): what a relative step is relative to."""
    x = X if idx is None else X[:, idx]
    return np.maximum(np.abs(x), input_scale(X)[:, None])


def initial_steps(X: np.ndarray, idx: np.ndarray, method: str) -> np.ndarray:
    """The first (largest) step of each element (P, m), a power of two."""
    base = {"complex-step": COMPLEX_STEP, "first": FIRST_STEP}.get(method) or BASE_STEP[method]
    return np.maximum(pow2(base * element_scale(X, idx)), _TINY)
