"""The three independent sources of a gradient, behind one result type."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Gradients", "Projection", "SOURCES"]

SOURCES = ("manual", "autograd", "numeric")


@dataclass
class Projection:
    """Directional derivatives of phi along ``directions`` (shape (K, *input shape)).

    Each direction is a Rademacher sign vector times a power of two per element, so its
    product with any float64 gradient is exact and an analytic projection carries no
    rounding beyond its summation.
    """

    directions: np.ndarray
    values: np.ndarray  # (K,)
    error: np.ndarray  # (K,) absolute error estimate of each value
    kinks: np.ndarray  # (K,) True where the perturbation along a direction crossed a kink


@dataclass
class Gradients:
    """What one source says the gradient is, converted to float64 numpy arrays for comparing.

    ``error`` (numeric only) is the source's estimate of its own absolute error per element,
    ``kinks`` marks elements whose perturbation crossed a point with no derivative.
    ``reference`` is the same source computed again in higher precision (float64 for a
    float32 check, long double for a float64 program where the platform has one): the
    difference is this source's own rounding error, measured rather than assumed.
    ``rounding`` (analytic sources of programs) bounds that error per element from the
    magnitudes of the program's intermediates (:mod:`gradcheck_suite._rounding`), absolute.
    ``depends_on`` names hand-written backward code the source runs (an autograd.Function
    inside the forward): such a source is not independent of the manual one.
    """

    source: str
    values: dict[str, np.ndarray]
    dtype: str
    device: str = "cpu"
    error: dict[str, np.ndarray] | None = None
    kinks: dict[str, np.ndarray] | None = None
    method: str = ""
    seconds: float = 0.0
    reference: dict[str, np.ndarray] | None = None
    reference_dtype: str = ""
    notes: list[str] = field(default_factory=list)
    rounding: dict[str, np.ndarray] | None = None
    depends_on: list[str] = field(default_factory=list)
    # The check mode that produced a numeric source ("full", "sample", "projection"). A sample
    # computes only the elements ``checked`` marks (the rest are NaN); a projection computes
    # no elements, only ``projections`` per input.
    mode: str = "full"
    checked: dict[str, np.ndarray] | None = None
    projections: dict[str, Projection] | None = None
    # --repeat: the largest difference between any run and the first, per element, and how
    # many runs; a source that reproduces itself exactly has a spread of zeros. ``allowance``
    # is what its comparisons then allow it besides rounding (gradcheck_suite._nondeterminism)
    spread: dict[str, np.ndarray] | None = None
    runs: int = 1
    allowance: dict[str, np.ndarray] | None = None
    # low precision (autograd only): its worst error in the dtype per input, over the point and
    # jittered copies of it (gradcheck_suite._lowprecision.measure_reference)
    dtype_error: dict[str, tuple[float, float, int]] | None = None  # (rho, norm error, runs)
