"""Exact ties: a point on a kink stays a kink down to the noise floor (issue 12's sweep).

Rounding the inputs to bfloat16 (8 bits) makes exact ties frequent: two elements of a max-pool
window equal in about 2% of random 2x2x4x4 points. At a tie of max(a, b) the central
differences are the mean of the one-sided slopes at every step, and the slope gap G keeps the
size of the jump, while the kink test's rounding bound grows as 1/s: the lowest ladders of
the descent passed the test by noise alone, and the mean slope came out as the numeric
gradient with a small error, a false "numeric is the odd one out" (2 of 1,001 points of
max_pool_naive in bfloat16; the same points fail in float64 too).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._dtypes import round_to
from gradcheck_suite._engine import sample_points
from gradcheck_suite._sources.numeric.differences import descend

from .conftest import DATA

H0 = 2.0**-8


def _ladder(noise: float, offset: float, slope: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The numeric estimate of d/dt slope * max(t + offset, 0) at t = 0 (a kink at the point
    for offset 0), with a second row at the same point, 10 t, setting the gradient scale, and
    phi's noise bounded by ``noise``."""

    def phi(t: np.ndarray, row: np.ndarray) -> np.ndarray:
        return np.where(row[:, None] == 0, slope * np.maximum(t + offset, 0.0), 10.0 * t)

    def evaluate(rows: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return phi(steps, rows), phi(-steps, rows), steps, steps

    f0 = np.array([slope * max(offset, 0.0), 0.0])
    est = descend(evaluate, np.full(2, H0), f0, np.full(2, noise), np.zeros(2, dtype=int), "richardson", True, False)
    return est.kink, est.value


# phi's noise from 1e-14 to 1e-10 of a unit slope: the lowest ladder reached lands at every
# position against the kink test's rounding bound
NOISES = np.geomspace(1e-14, 1e-10, 41)


@pytest.mark.parametrize("noise", NOISES)
def test_a_kink_at_the_point_stays_a_kink_at_every_noise_level(noise: float) -> None:
    kink, _ = _ladder(noise, 0.0)
    assert kink[0], f"noise {noise:.3g}: the tie's kink was cleared by a ladder that only fits within its rounding"
    assert not kink[1]


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("offset", [1e-3, 1e-6, -1e-6])
def test_a_kink_off_the_point_is_decided_by_the_steps_below_it(noise: float, offset: float) -> None:
    kink, value = _ladder(noise, offset)
    assert not kink[0]
    assert value[0] == pytest.approx(1.0 if offset > 0 else 0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
@pytest.mark.parametrize("index", [407, 588])
def test_a_tie_in_a_max_pool_window_is_an_inconclusive_kink_not_a_fail(dtype: str, index: int) -> None:
    """The two points of the 1,000-point bfloat16 sweep of max_pool_naive as it was then
    (tests/data/max_pool_2x2.toml; index 0 is the case's own point) where numeric was named the
    odd one out; rounded to bfloat16 each has a window with two equal elements, checked in
    float64 as in bfloat16."""
    case = load_case(DATA / "max_pool_2x2.toml")
    point = {k: round_to(v, "bfloat16") for k, v in sample_points(case.resolved(), index)[index - 1].items()}
    x = point["x"].reshape(2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 2, 2, 4)
    assert any(np.sum(w == w.max()) == 2 for w in x.reshape(-1, 4))  # the tie
    r = check_case(replace(case, inputs=point), RunOptions(dtype=dtype))
    assert r.verdict == "inconclusive", [(i.verdict, i.odd_one_out, i.reason) for i in r.inputs]
    assert r.inputs[0].reason.startswith("kink")
