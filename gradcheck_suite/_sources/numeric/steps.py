"""Step sizes of the difference methods and the complex step."""

from __future__ import annotations

import numpy as np

from ..._defaults import METHODS

__all__ = ["COMPLEX_STEP", "EPS", "METHODS", "base_step", "pow2", "resolve_method", "step_multipliers"]

EPS = float(np.finfo(np.float64).eps)


def resolve_method(method: str, analytic: bool) -> str:
    """``auto`` takes the most accurate method that applies to the program."""
    if method == "auto":
        return "complex-step" if analytic else "richardson"
    return method


def pow2(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(x)))


# Relative base steps: the optimum for each method's truncation order in float64
# (eps^(1/3) for second order; eps^(1/7) for the sixth order the Richardson table reaches).
BASE_STEP = {"central": EPS ** (1 / 3), "richardson": EPS ** (1 / 7)}
MULTIPLIERS = {
    "central": (1.0, 2.0),
    "richardson": (1.0, 0.5, 0.25),
}
# Where the program has kinks, every difference method steps at h, h/2, h/4 and h/8: the
# first three serve Richardson (and the first two central differences), all four the kink test.
KINK_MULTIPLIERS = (1.0, 0.5, 0.25, 0.125)


def base_step(method: str) -> float:
    return BASE_STEP[method]


def step_multipliers(method: str, detect: bool) -> tuple[float, ...]:
    return KINK_MULTIPLIERS if detect else MULTIPLIERS[method]


# Im phi(x + ih) / h has no subtraction, so h can be tiny: its truncation error
# h^2 |phi'''| / 6 is far below rounding. A power of two keeps the division exact.
COMPLEX_STEP = 2.0**-60
