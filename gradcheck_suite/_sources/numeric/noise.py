"""The rounding noise of phi: a bound from the terms a program sums, or a measurement.

A difference quotient divides the rounding error of phi by the step, so every error
estimate and every step choice needs to know how large that error can be. It is *not* a
fraction of |phi|: ``mean(x * x) - mean(x) ** 2`` of values near 1000 is near 1 but carries
the rounding of terms near 10^6.

* For a program forward, :mod:`gradcheck_suite._rounding` bounds the rounding error of phi
  from the magnitudes of every intermediate (a first-order bound, no extra evaluation).
* For a callable nothing inside can be seen, so the noise is measured from evaluations of phi
  itself, as in More and Wild, "Estimating computational noise" (SIAM J. Sci. Comput. 33,
  2011): phi at 2m+1 equally spaced points along a random direction, so close together that
  phi's smooth part has no visible k-th difference (k >= 3), while rounding, which changes
  from point to point, does; the k-th differences of noise of standard deviation sigma have
  variance sigma^2 (2k)! / (k!)^2. A floor of a few ulps of the output's terms covers noise
  that the line happens not to see (phi constant along it: a saturated function).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .runner import Runner
from .steps import EPS, input_scale, pow2

__all__ = ["ECNOISE_POINTS", "SIGMAS", "SPACINGS", "ecnoise", "measure_noise", "term_floor"]

# Points on each side of x along each line (2m evaluations per spacing).
ECNOISE_POINTS = 3
# Spacings of the lines, relative to each element's magnitude: far below any step a
# difference quotient takes (phi's smooth part has no visible third difference there), far
# above one ulp. One spacing: a second line at 2^-32 used to be measured too and the smaller
# estimate kept, so dropping it halves the cost and can only raise the estimate.
SPACINGS = (2.0**-40,)
# A measured standard deviation bounds single errors only statistically; a difference of two
# errors within SIGMAS standard deviations of each is what the estimates assume.
SIGMAS = 8.0


def ecnoise(f: np.ndarray) -> np.ndarray:
    """The standard deviation of the noise in equally spaced values ``f`` (along the last axis;
    one estimate per row), from their difference tables of order 3 up (the largest estimate:
    low orders still carry some of the smooth part, higher ones are the noisier estimates of
    the same number)."""
    diff = np.asarray(f, dtype=np.float64)
    best = np.zeros(diff.shape[:-1])
    for k in range(1, min(7, diff.shape[-1])):
        diff = np.diff(diff, axis=-1)
        if k < 3:
            continue
        gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
        best = np.maximum(best, np.sqrt(gamma * np.mean(diff**2, axis=-1)))
    return best


def term_floor(phi_scale: float) -> float:
    """A few ulps of the sum of the output's terms: rounding that no measurement may undercut."""
    return 4 * EPS * phi_scale


def measure_noise(runner: Runner, name: str, X: np.ndarray, f0: np.ndarray, seed: int) -> np.ndarray:
    """The noise of phi (standard deviation) at each point, measured along a random direction
    in ``name`` (X: (P, n) float64 values of that input)."""
    P, n = X.shape
    rng = np.random.default_rng(seed)
    scale = input_scale(X)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(P, n))
    W = signs * pow2(np.maximum(np.abs(X), scale[:, None]))  # exact multiples of each element's scale
    m = ECNOISE_POINTS
    steps = np.array([j for j in range(-m, m + 1) if j], dtype=np.float64)
    offsets = np.concatenate([steps * s for s in SPACINGS])
    noise = np.zeros(P)
    for p in range(P):
        dirs = torch.as_tensor(W[p][None, :], device=runner.obj.be.device)
        f, _, _ = runner.run(
            name, np.full(len(offsets), p), offsets, direction=np.zeros(len(offsets), dtype=int), directions=dirs
        )
        lines = f.reshape(len(SPACINGS), 2 * m)
        noise[p] = min(float(ecnoise(np.concatenate([line[:m], [f0[p]], line[m:]]))) for line in lines)
    return noise
