"""Derivatives from evaluations of phi, each with an estimate of its own error.

**The complex step** (analytic programs): ``Im phi(x + ih) / h`` has no subtraction; its error is
the rounding of the derivative as the program's operations propagate it, bounded from the
magnitudes of the program's intermediates (:mod:`gradcheck_suite._rounding`), or, for an
analytic callable, measured from a second evaluation at ``3h``.

**Differences** (everything else) walk a ladder of steps ``h, h/2, h/4, h/8`` per element and
read it through windows of three consecutive steps, each checked against the model it is
used with before its estimate is believed:

* the central differences ``D(s)`` of a smooth function follow ``D(s) = f' + c s^2 + ...``:
  successive differences shrink by 4 and Richardson extrapolation applies, its error
  measured by the table itself;
* at a jump in the second derivative (ELU or ``x / (1 + |x|)`` at 0) the function is
  differentiable but ``D(s) = f' + a s + ...``: successive differences halve; Richardson
  would claim an error 14 times too small, so a first-order extrapolation is used instead;
* where successive differences are below the rounding noise of phi the ladder has converged;
* the slope gap ``G(s) = (phi(x + s) - 2 phi(x) + phi(x - s)) / s`` of a smooth function
  follows ``G(s) = a s + b s^3 + ...`` (a jump in the second derivative keeps it ``O(s)``), so
  ``G(s) - 10 G(s/2) + 16 G(s/4)`` is tiny; a kink within the window's reach breaks that (for
  a kink at any distance in (0, s] the larger of two consecutive residuals is at least the
  window's largest ``G``: 0.1 of it separates them).

A window that fails its checks asks for smaller steps: the element gets another ladder
further down (``h/32 ... h/256``, then lower), until a window passes or the rounding noise
of phi takes over. A kink is only what still breaks the smooth model there: a point 0.005
from ReLU's kink is decided by steps below 0.005, a point on it stays a kink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .first_pass import FirstPass, read_first_pass
from .noise import ECNOISE_POINTS, SIGMAS, SPACINGS, ecnoise
from .steps import EPS

__all__ = ["Estimate", "analyse_ladder", "descend", "extrapolate", "ladder_offsets", "RUNGS"]

# Steps per ladder: three make one window, four make the two that must agree before an
# estimate is believed (and that the kink test needs to tell a kink near the largest step from
# one that persists).
RUNGS = 4
# Another ladder starts this far below the smallest step of the last one.
_GAP = 4.0
# Ladders an element may add before its estimate stands as it is.
MAX_EXTENSIONS = 9
# The smallest step relative to the first (about 2^-41 of the element's scale): below it a
# perturbation is a few ulps of the element, and phi's change mere rounding.
_SMALLEST = 2.0**-34
# Stop descending once the rounding noise of a difference exceeds this fraction of the scale
# of the gradient: below that, no estimate could decide a comparison anyway.
NOISE_STOP = 0.01
# How far a ladder may stray from its model: |delta2 - rho delta1| <= TOLERANCE |delta1|.
_TOLERANCE = 0.15
# Kink residual threshold, relative to the window's largest slope gap (see module doc).
_KINK_RESIDUAL = 0.1
# Kinks whose slope jump is below this fraction of the gradient scale do not matter to any
# comparison; their effect on the estimate is added to its error instead.
_KINK_FLOOR = 1e-7


@dataclass
class Estimate:
    """Per row (a point and an element or direction): the derivative, its error estimate,
    whether a kink persists, and whether the ladder should go on descending."""

    value: np.ndarray
    error: np.ndarray
    kink: np.ndarray
    descend: np.ndarray
    decided: np.ndarray  # a window of the ladder fits its model
    # the slope gap |G| of the last window whose kink test failed (0 where none did): the
    # jump in slope a kink there would have
    jump: np.ndarray | None = None


def ladder_offsets(h: np.ndarray, rungs: int) -> np.ndarray:
    """(rows, rungs) steps h, h/2, h/4, ... for rows whose first step is h."""
    return h[:, None] * 0.5 ** np.arange(rungs)[None, :]


def analyse_ladder(
    fp: np.ndarray,
    fm: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    f0: np.ndarray | None,
    noise: np.ndarray,
    scale: np.ndarray,
    method: str = "richardson",
) -> Estimate:
    """Read one ladder per row (last axis: the rungs, steps halving).

    ``plus``/``minus`` are the steps actually taken on each side, ``f0`` phi at the point
    (None: the function has no kinks to look for), ``noise`` a bound on the rounding error of
    one evaluation of phi, ``scale`` the size of gradients at the row's point (where noise
    stops the descent).
    """
    D = (fp - fm) / (plus + minus)
    N = noise[:, None] / np.minimum(plus, minus)  # bound on the rounding error of each D
    rows, rungs = D.shape
    if method == "central":
        return _central(D, N, fp, fm, plus, f0, noise, scale)
    kink_everywhere = np.ones(rows, dtype=bool) if f0 is not None else np.zeros(rows, dtype=bool)
    last_smooth = np.ones(rows, dtype=bool)
    jump = np.zeros(rows)
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    for w in range(rungs - 2):
        value, error = _window(D[:, w : w + 3], N[:, w : w + 3])
        if f0 is not None:
            smooth, residual = _smooth(fp[:, w : w + 3], fm[:, w : w + 3], plus[:, w : w + 3], f0, noise, scale)
            error = np.where(smooth, error + residual, np.inf)  # a kink too small to matter still moves it
            kink_everywhere &= ~smooth
            last_smooth = smooth
            jump = np.where(smooth, jump, _gap(fp[:, w : w + 3], fm[:, w : w + 3], plus[:, w : w + 3], f0))
        windows.append((value, error))
    # A window can fit its model by chance far from the asymptotic range (steps far above the
    # function's own scale); two consecutive windows that each fit and agree within their
    # errors do not. The smaller-step one is kept, charged with the disagreement.
    best_value = np.full(rows, np.nan)
    best_error = np.full(rows, np.inf)
    for (v0, e0), (v1, e1) in zip(windows, windows[1:], strict=False):
        gap = np.abs(v0 - v1)
        error = e1 + gap
        take = np.isfinite(e0) & np.isfinite(e1) & (gap <= e0 + e1) & (error < best_error)
        best_value = np.where(take, v1, best_value)
        best_error = np.where(take, error, best_error)
    decided = np.isfinite(best_error)
    # Nothing believable: fall back to the smallest step, its error the ladder's whole spread.
    spread = np.max(D, axis=1) - np.min(D, axis=1)
    fallback_error = spread + N[:, -1]
    value = np.where(decided, best_value, D[:, -1])
    error = np.where(decided, best_error, fallback_error)
    floor_reached = N[:, -1] > NOISE_STOP * scale
    descend = ~decided & ~floor_reached
    kink = kink_everywhere & ~decided & ~last_smooth
    error = np.where(np.isfinite(value), error, np.inf)
    return Estimate(value, error, kink, descend, decided, jump)


def _window(D: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and error from three central differences at steps s, s/2, s/4 (inf: the
    window fits no model)."""
    d1 = D[:, 0] - D[:, 1]
    d2 = D[:, 1] - D[:, 2]
    n1 = N[:, 0] + N[:, 1]
    n2 = N[:, 1] + N[:, 2]
    value = np.full(len(D), np.nan)
    error = np.full(len(D), np.inf)
    # converged: both differences within rounding, the largest step is the least noisy
    converged = (np.abs(d1) <= n1) & (np.abs(d2) <= n2)
    value = np.where(converged, D[:, 0], value)
    error = np.where(converged, N[:, 0] + 2 * (np.abs(d1) + np.abs(d2)) + n1, error)
    open_ = ~converged & (np.abs(d1) > n1)
    # second order: successive differences shrink by 4; two levels of Richardson extrapolation
    second = open_ & (np.abs(d2 - d1 / 4) <= _TOLERANCE * np.abs(d1) / 4 + n2)
    r1a = (4 * D[:, 1] - D[:, 0]) / 3
    r1b = (4 * D[:, 2] - D[:, 1]) / 3
    rich = (16 * r1b - r1a) / 15
    rich_noise = (N[:, 0] + 20 * N[:, 1] + 64 * N[:, 2]) / 45
    # |rich - r1b| bounds r1b's fourth-order error, a generous bound on rich's sixth-order one
    # (the window passed its model check, so the table is in its asymptotic range)
    rich_error = np.abs(rich - r1b) + rich_noise
    value = np.where(second & (rich_error < error), rich, value)
    error = np.where(second & (rich_error < error), rich_error, error)
    # first order (a jump in the second derivative at the point): differences halve
    first = open_ & ~second & (np.abs(d2 - d1 / 2) <= _TOLERANCE * np.abs(d1) / 2 + n2)
    lin = 2 * D[:, 2] - D[:, 1]
    lin_error = np.abs(d2) + 2 * np.abs(d2 - d1 / 2) + 2 * N[:, 2] + N[:, 1]
    value = np.where(first, lin, value)
    error = np.where(first, lin_error, error)
    return value, error


def _smooth(
    fp: np.ndarray, fm: np.ndarray, plus: np.ndarray, f0: np.ndarray, noise: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Whether a window of three steps shows no kink; and the residual to charge where a
    kink too small to matter may hide (zero where the window is clean)."""
    G = (fp + fm - 2 * f0[:, None]) / plus
    residual = np.abs(G[:, 0] - 10 * G[:, 1] + 16 * G[:, 2])
    largest = np.max(np.abs(G), axis=1)
    # each G(s) carries at most 4 noise / s: the residual 4 + 80 + 256 times noise / s
    rounding = 340 * noise / plus[:, 0]
    clean = residual <= _KINK_RESIDUAL * largest
    negligible = residual <= np.maximum(rounding, _KINK_FLOOR * scale)
    return clean | negligible, np.where(clean, 0.0, residual)


def _gap(fp: np.ndarray, fm: np.ndarray, plus: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """The largest slope gap |G(s)| of a window: a kink at the point keeps it at the jump in
    slope at every step."""
    return np.max(np.abs((fp + fm - 2 * f0[:, None]) / plus), axis=1)


def _central(
    D: np.ndarray,
    N: np.ndarray,
    fp: np.ndarray,
    fm: np.ndarray,
    plus: np.ndarray,
    f0: np.ndarray | None,
    noise: np.ndarray,
    scale: np.ndarray,
) -> Estimate:
    """``--numeric central``: the central difference at the second step (h/2), its error from
    the first: D(h) - D(h/2) is 3/4 of the s^2 term at h, so its third is that term at h/2;
    twice that (the s^4 term can make the two-step estimate short)."""
    d = D[:, 1]
    err = 2 * np.abs(D[:, 1] - D[:, 0]) / 3 + 2 * N[:, 1]
    rows = len(d)
    kink = np.zeros(rows, dtype=bool)
    if f0 is not None and D.shape[1] >= 3:
        smooth, residual = _smooth(fp[:, :3], fm[:, :3], plus[:, :3], f0, noise, scale)
        kink = ~smooth
        err = err + residual
    err = np.where(np.isfinite(d), err, np.inf)
    return Estimate(d, err, kink, np.zeros(rows, dtype=bool), np.ones(rows, dtype=bool))


Evaluate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def descend(
    evaluate: Evaluate,
    h0: np.ndarray,
    f0: np.ndarray,
    noise: np.ndarray,
    point: np.ndarray,
    method: str,
    kinks: bool,
    measured: bool,
    first: FirstPass | None = None,
) -> Estimate:
    """Every row's estimate: a first ladder from ``h0``, then further ladders below for the rows
    that ask for them.

    ``evaluate(rows, steps)`` returns phi at x + steps and x - steps for those rows, and the
    steps actually taken on each side (all shaped (len(rows), rungs)). ``f0``, ``noise`` and
    ``point`` are per row: phi at the row's point, the bound on one evaluation's rounding
    error there, and the point's index. ``kinks``: the function may have kinks to look for;
    ``measured``: the noise was measured (along one direction per point) rather than bounded,
    so it is measured again along each row that descends. ``first`` (``--numeric auto``):
    try the two-step central first pass (:mod:`.first_pass`) before any ladder, and keep the
    rows it accepts.
    """
    f0k = f0 if kinks else None
    if first is None or method == "central":
        return _ladders(evaluate, np.arange(len(h0)), h0, f0, noise, point, method, kinks, measured, None)
    rows = np.arange(len(h0))
    fp, fm, plus, minus = evaluate(rows, ladder_offsets(first.step, 2))
    read = read_first_pass(fp, fm, plus, minus, f0k, noise, point, first.dtype)
    est = Estimate(
        read.value, read.error, np.zeros(len(h0), dtype=bool), np.zeros(len(h0), dtype=bool), read.accepted.copy()
    )
    rest = np.flatnonzero(~read.accepted)
    if len(rest):
        sub = _ladders(evaluate, rest, h0[rest], f0[rest], noise[rest], point, method, kinks, measured, read.size)
        est.value[rest], est.error[rest] = sub.value, sub.error
        est.kink[rest], est.decided[rest] = sub.kink, sub.decided
    return est


def _ladders(
    evaluate: Evaluate,
    rows: np.ndarray,
    h0: np.ndarray,
    f0: np.ndarray,
    noise: np.ndarray,
    all_points: np.ndarray,
    method: str,
    kinks: bool,
    measured: bool,
    sizes: np.ndarray | None,
) -> Estimate:
    """The ladders of ``rows`` (indices into ``evaluate``'s rows; ``h0``, ``f0`` and ``noise``
    are theirs, ``all_points`` every row's point). ``sizes``: |D| of every row from a first
    pass, so that the gradient scale at each point still counts the rows that pass left out."""
    rungs = RUNGS if method == "richardson" or kinks else 2
    point = all_points[rows]
    steps = ladder_offsets(h0, rungs)
    fp, fm, plus, minus = evaluate(rows, steps)
    # The size of the gradient at each point, from the largest step's differences: the
    # descent stops where rounding noise reaches a fraction of it.
    first = np.abs((fp[:, 0] - fm[:, 0]) / (plus[:, 0] + minus[:, 0]))
    first = np.where(np.isfinite(first), first, 0.0)
    biggest = np.zeros(int(all_points.max(initial=-1)) + 1)
    np.maximum.at(biggest, point, first)
    if sizes is not None:
        np.maximum.at(biggest, all_points, sizes)
    scale = biggest[point]
    f0k = f0 if kinks else None
    est = analyse_ladder(fp, fm, plus, minus, f0k, noise, scale, method)
    if method == "central":
        return est
    jump = est.jump if est.jump is not None else np.zeros(len(h0))
    noise = noise.copy()
    remeasured = np.zeros(len(h0), dtype=bool)
    for _ in range(MAX_EXTENSIONS):
        h = np.min(steps, axis=1) / _GAP
        # steps below this fraction of the first one would fall within ulps of the element
        est.descend &= h >= h0 * _SMALLEST
        todo = np.flatnonzero(est.descend)
        if not len(todo):
            break
        fresh = todo[~remeasured[todo]]
        if measured and len(fresh):
            noise[fresh] = np.maximum(noise[fresh], _row_noise(evaluate, rows[fresh], h0[fresh], f0[fresh]))
            remeasured[fresh] = True
            # with the noise known along these rows, the first ladder may already be decided
            # by noise, or the descent may already be at its floor
        steps_todo = ladder_offsets(h[todo], rungs)
        fp, fm, plus, minus = evaluate(rows[todo], steps_todo)
        sub = analyse_ladder(fp, fm, plus, minus, None if f0k is None else f0k[todo], noise[todo], scale[todo], method)
        steps[todo] = steps_todo
        # A decided window below beats anything above it (the ladder above asked to descend);
        # an undecided one only replaces an estimate that was no number at all.
        take = sub.decided | ~np.isfinite(est.value[todo])
        est.value[todo] = np.where(take, sub.value, est.value[todo])
        est.error[todo] = np.where(take, sub.error, est.error[todo])
        est.decided[todo] = sub.decided
        est.kink[todo] = sub.kink | (est.kink[todo] & ~_clears(sub, jump[todo]))
        assert sub.jump is not None
        jump[todo] = np.where(sub.kink, sub.jump, jump[todo])
        est.descend[todo] = sub.descend
    est.descend[:] = False
    return est


def _clears(below: Estimate, jump: np.ndarray) -> np.ndarray:
    """Whether a ladder below shows a kink seen above gone: its windows fit a smooth model
    with an error under half the slope's jump there (either one-sided slope is that far from
    their mean). One that fits no model, or fits one only within its rounding (the kink test
    charges 340 noise / s, which grows as the steps shrink while the slope gap of a kink at the
    point keeps its size: at an exact tie of max(a, b) the lowest ladders pass the test by noise
    alone), has not shown the function smooth there."""
    return below.decided & (below.error < jump / 2)


def _row_noise(evaluate: Evaluate, rows: np.ndarray, h0: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """A bound on one evaluation's noise along each row's own perturbation (More and Wild's
    difference tables, :func:`.noise.ecnoise`, at two spacings, the smaller kept)."""
    m = ECNOISE_POINTS
    best = np.full(len(rows), np.inf)
    for spacing in SPACINGS:
        # h0 is about 2^-7 of the element's scale; the spacings are relative to that scale
        steps = (h0 * spacing * 2.0**7)[:, None] * np.arange(1, m + 1)[None, :]
        fp, fm, _, _ = evaluate(rows, steps)
        line = np.concatenate([fm[:, ::-1], f0[:, None], fp], axis=1)
        best = np.minimum(best, ecnoise(line))
    return SIGMAS / 2 * best


def extrapolate(
    fp: np.ndarray,
    fm: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ladder per row read as :func:`analyse_ladder` reads it, without descending: for the
    check kinds that batch their own evaluations of vector functions. ``phi_scale`` (rows, 1)
    bounds the size of each row's terms (the noise is a few ulps of it), ``f0`` (rows, 1) the
    value at the point (None: no kinks to look for). Returns value, error and kink per row;
    a row no window decides keeps the ladder's spread as its error."""
    terms = np.asarray(phi_scale, dtype=np.float64).reshape(-1)
    noise = 4 * EPS * terms
    D0 = np.abs((fp[:, 0] - fm[:, 0]) / (plus[:, 0] + minus[:, 0]))
    scale = np.full(len(terms), float(np.max(np.where(np.isfinite(D0), D0, 0.0), initial=0.0)))
    center = None if f0 is None else np.asarray(f0, dtype=np.float64).reshape(-1)
    est = analyse_ladder(fp, fm, plus, minus, center, noise, scale, method)
    return est.value, est.error, est.kink


def complex_error(
    value: np.ndarray, bound: np.ndarray | None, defect: np.ndarray | None, floor: np.ndarray
) -> np.ndarray:
    """The complex step's error: the propagated rounding bound where the program gives one,
    else twice the measured gap to a second step, over a few ulps of the terms."""
    err = 16 * EPS * (np.abs(value) + floor)
    if bound is not None:
        err = err + 2 * bound
    if defect is not None:
        err = err + 4 * defect
    return np.where(np.isfinite(value), err, np.inf)
