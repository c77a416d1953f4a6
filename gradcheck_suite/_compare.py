"""Comparing the sources' gradients, element by element, and judging each input.

Two rules, one per kind of pair:

* analytic vs analytic (manual vs autograd): both are exact formulas evaluated in the check's
  dtype, so they may differ only by rounding. Each side's rounding bound is
  ``ROUNDING * eps(dtype) * (|g| + S)`` plus ``MEASURED`` times its measured rounding error
  where the source could be run again in higher precision (``Gradients.reference``).
  ``S`` is the case's gradient scale (the largest reference gradient element of any input):
  a gradient that cancels to near zero still carries rounding of the size of the terms it
  cancelled, and S stands in for them. The measured part covers formulas that lose far
  more than a few eps, such as the notebook's ``(1 - f) * f`` once f rounds close to 1:
  correct, and reported as a loss of precision rather than a wrong gradient.
* numeric vs analytic: the numeric value carries its own error estimate ``E`` (float64);
  they agree when they differ by at most ``SAFETY * E`` plus the analytic side's rounding.

An element is inconclusive when the numeric estimate cannot decide (``E`` larger than
``UNDECIDED`` of the scale, a non-finite value) or when its perturbation crossed a kink.

A sample check (``Gradients.checked``) judges numeric pairs on the sampled elements only. A
projection check has no numeric element at all: ``judge_projection`` applies the same rule to
directional derivatives, ``<g, w>`` against the numeric derivative along ``w``: they agree
when they differ by at most ``SAFETY * E`` plus the analytic side's rounding, which for a
projection is the per-element rounding bound weighted by ``|w|`` plus the rounding of the
sum itself (the products ``g * w`` are exact: ``w`` is a signed power of two per element).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ._sources import SOURCES, Gradients, Projection

__all__ = [
    "ROUNDING",
    "SAFETY",
    "UNDECIDED",
    "PairDiff",
    "InputResult",
    "judge_input",
    "judge_projection",
    "project",
    "gradient_scale",
    "attribute",
]

# Calibrated with benchmarks/numerics.py over 1,000 random points per seed case: the largest
# manual-vs-autograd gap seen was below 8 eps (float32 and float64), so 64 leaves a margin of 8.
ROUNDING = 64.0
# The numeric error estimates already bound the true error at every calibration point; the
# factor 4 covers points where the estimate's own error is large (one-sided step noise).
SAFETY = 4.0
# The higher-precision rerun gives a source's rounding error almost exactly; 2 covers the
# rerun's own (much smaller) rounding and the other operand of the pair.
MEASURED = 2.0
UNDECIDED = 0.1


EPS64 = float(np.finfo(np.float64).eps)


def _eps(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


@dataclass
class PairDiff:
    a: str
    b: str
    max_abs: float
    max_rel: float
    worst: tuple[int, ...]  # the element with the largest difference relative to its tolerance
    ratio: float  # that difference over its tolerance: above 1 means disagree
    disagree: int  # how many elements disagree
    undecided: int  # elements the rule could not decide
    rule: str
    compared: int = 0  # elements (or, for a projection, directions) the pair compared

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"

    @property
    def status(self) -> str:
        if self.disagree:
            return "disagree"
        return "agree"


@dataclass
class InputResult:
    name: str
    shape: tuple[int, ...]
    grads: dict[str, np.ndarray]
    numeric_error: np.ndarray | None
    pairs: list[PairDiff]
    verdict: str  # pass | fail | inconclusive
    odd_one_out: str | None
    reason: str
    kinks: list[tuple[int, ...]] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # pair name -> disagreeing elements
    precision: dict[str, float] = field(default_factory=dict)  # source -> measured max rel rounding
    # projection checks: source -> its value along each direction, and the numeric estimate
    projections: dict[str, np.ndarray] = field(default_factory=dict)
    projection_error: np.ndarray | None = None

    @property
    def max_rel(self) -> float:
        return max((p.max_rel for p in self.pairs), default=0.0)

    def pair(self, a: str, b: str) -> PairDiff | None:
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p
        return None


def gradient_scale(results: list[Gradients]) -> float:
    """The case's gradient scale S: largest finite element of the reference source, any input."""
    # A sample or projection leaves numeric elements out: autograd then has them all.
    ref = next((r for r in results if r.source == "numeric" and r.mode == "full"), None) or next(
        (r for r in results if r.source == "autograd"), results[0]
    )
    biggest = 0.0
    for g in ref.values.values():
        finite = np.abs(g[np.isfinite(g)])
        if finite.size:
            biggest = max(biggest, float(finite.max()))
    return biggest


def attribute(disagreeing: set[frozenset[str]], present: list[str]) -> str | None:
    """The source whose two pairs disagree while the pair of the other two agrees."""
    if len(present) < 3:
        return None
    for s in present:
        mine = {frozenset({s, o}) for o in present if o != s}
        others = frozenset(o for o in present if o != s)
        if mine <= disagreeing and others not in disagreeing:
            return s
    return None


def judge_input(name: str, results: list[Gradients], dtype: str, scale: float) -> InputResult:
    numeric = next((r for r in results if r.source == "numeric"), None)
    projection = numeric.projections.get(name) if numeric is not None and numeric.projections else None
    if projection is not None:
        # the element-wise rules judge manual against autograd; the directions judge numeric
        results = [r for r in results if r is not numeric]
    by = {r.source: r for r in results}
    present = [s for s in SOURCES if s in by]
    grads = {s: by[s].values[name] for s in present}
    shape = next(iter(grads.values())).shape
    numeric = by.get("numeric")
    checked = numeric.checked.get(name) if numeric is not None and numeric.checked else None
    err = numeric.error[name] if numeric is not None and numeric.error is not None else None
    kink = numeric.kinks[name] if numeric is not None and numeric.kinks is not None else np.zeros(shape, bool)

    undecided_num = np.zeros(shape, dtype=bool)
    if numeric is not None and err is not None:
        n = grads["numeric"]
        undecided_num = ~np.isfinite(n) | ~np.isfinite(err) | (err > UNDECIDED * (np.abs(n) + scale))

    rounding: dict[str, np.ndarray] = {}
    precision: dict[str, float] = {}
    for s in present:
        r = by[s]
        if s == "numeric":
            continue
        g = grads[s]
        bound = ROUNDING * _eps(r.dtype) * (np.abs(np.nan_to_num(g, posinf=0, neginf=0)) + scale)
        if r.reference is not None:
            measured = np.abs(g - r.reference[name])
            # non-finite in the check's dtype but finite above it is overflow, not rounding
            measured = np.where(np.isfinite(measured), measured, 0.0)
            bound = bound + MEASURED * measured
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = measured / np.maximum(np.abs(r.reference[name]), ROUNDING * _eps(r.dtype) * scale)
            precision[s] = float(np.nanmax(rel)) if rel.size else 0.0
        if r.allowance is not None:  # --repeat: a nondeterministic source (_nondeterminism)
            bound = bound + r.allowance[name]
        rounding[s] = bound

    pairs: list[PairDiff] = []
    masks: dict[str, np.ndarray] = {}
    for a, b in combinations(present, 2):
        ga, gb = grads[a], grads[b]
        diff = np.abs(ga - gb)
        both_nan = np.isnan(ga) & np.isnan(gb)
        diff = np.where(both_nan, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(ga), np.abs(gb)))
        tol = np.zeros(shape)
        rules = []
        for s in (a, b):
            if s == "numeric":
                assert err is not None
                tol = tol + SAFETY * np.where(np.isfinite(err), err, 0.0)
                rules.append(f"{SAFETY:g} x numeric error estimate ({numeric.method if numeric else ''})")
            else:
                r = by[s]
                tol = tol + rounding[s]
                measured = (
                    f" + {MEASURED:g} x rounding measured in {r.reference_dtype}" if r.reference is not None else ""
                )
                rules.append(f"{s} rounding bound {ROUNDING:g} eps({r.dtype}) (|g| + S){measured}")
        undecided = kink.copy()
        compared = int(np.prod(shape))
        if "numeric" in (a, b):
            undecided |= undecided_num
            if checked is not None:  # a sample: the elements numeric left out are not compared
                diff = np.where(checked, diff, 0.0)
                rel = np.where(checked, rel, 0.0)
                undecided &= checked
                compared = int(checked.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(diff == 0, 0.0, diff / np.where(tol > 0, tol, np.finfo(float).tiny))
        ratio_decided = np.where(undecided, 0.0, ratio)
        bad = ratio_decided > 1.0
        worst = np.unravel_index(int(np.argmax(ratio_decided)), shape) if ratio.size else ()
        pairs.append(
            PairDiff(
                a=a,
                b=b,
                max_abs=float(np.max(diff)) if diff.size else 0.0,
                max_rel=float(np.max(rel)) if rel.size else 0.0,
                worst=tuple(int(i) for i in worst),
                ratio=float(ratio_decided[worst]) if ratio.size else 0.0,
                disagree=int(bad.sum()),
                undecided=int(undecided.sum()),
                rule=" + ".join(rules),
                compared=compared,
            )
        )
        masks[f"{a}-{b}"] = bad

    kinks = [tuple(int(i) for i in ix) for ix in np.argwhere(kink)]
    values: dict[str, np.ndarray] = {}
    kinked: list[int] = []
    if projection is not None:
        analytic = {s: by[s] for s in present}
        values = {s: project(grads[s], projection.directions) for s in present}
        values["numeric"] = projection.values
        pairs += judge_projection(name, analytic, projection, rounding, values)
        present = [s for s in SOURCES if s in by or s == "numeric"]
        kinked = [int(k) for k in np.flatnonzero(projection.kinks)]
    result = _conclude(name, shape, grads, err, pairs, present, kinks, masks, precision, kinked)
    if projection is not None:
        result.projections = values
        result.projection_error = projection.error
    return result


def _conclude(
    name: str,
    shape: tuple[int, ...],
    grads: dict[str, np.ndarray],
    err: np.ndarray | None,
    pairs: list[PairDiff],
    present: list[str],
    kinks: list[tuple[int, ...]],
    masks: dict[str, np.ndarray],
    precision: dict[str, float],
    kinked_directions: list[int],
) -> InputResult:
    disagreeing = {frozenset({p.a, p.b}) for p in pairs if p.disagree}
    if disagreeing:
        odd = attribute(disagreeing, present)
        if odd:
            reason = f"{odd} disagrees with the other two"
        elif len(present) < 3:
            reason = " and ".join(present) + " disagree; a third source would tell which is wrong"
        else:
            reason = "the sources disagree and no single one is the odd one out"
        return InputResult(name, shape, grads, err, pairs, "fail", odd, reason, kinks, masks, precision)
    if kinks:
        where = ", ".join(str(list(k)) for k in kinks[:5])
        more = f" and {len(kinks) - 5} more" if len(kinks) > 5 else ""
        reason = f"kink: the perturbation crosses a point with no derivative at element(s) {where}{more}"
        return InputResult(name, shape, grads, err, pairs, "inconclusive", None, reason, kinks, masks, precision)
    if kinked_directions:
        where = ", ".join(str(k) for k in kinked_directions)
        reason = f"kink: the perturbation along direction(s) {where} crosses a point with no derivative"
        return InputResult(name, shape, grads, err, pairs, "inconclusive", None, reason, kinks, masks, precision)
    decided = [p for p in pairs if p.undecided < p.compared]
    if not decided:
        reason = "the numeric error estimate is too large to decide"
        return InputResult(name, shape, grads, err, pairs, "inconclusive", None, reason, kinks, masks, precision)
    reason = "all sources agree" if len(present) == 3 else " and ".join(present) + " agree"
    return InputResult(name, shape, grads, err, pairs, "pass", None, reason, kinks, masks, precision)


def project(g: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """<g, w> for each direction w, summed in long double (exact products, see judge_projection)."""
    flat = g.reshape(-1)
    return np.array([float(np.sum((flat * w.reshape(-1)).astype(np.longdouble))) for w in directions], dtype=np.float64)


def _sum_rounding(n: int) -> float:
    """Relative bound on the rounding of project's sum of n terms (of their absolute sum).

    numpy sums pairwise in blocks of at most 128 terms, eight accumulators each, so no term
    passes through more than 16 + 3 + log2(n / 128) additions; 128 + log2(n) is far above
    that; the final conversion to float64 adds one rounding of the result."""
    acc = float(np.finfo(np.longdouble).eps)
    return (128 + math.ceil(math.log2(max(n, 2)))) * acc


def judge_projection(
    name: str,
    analytic: dict[str, Gradients],
    projection: Projection,
    rounding: dict[str, np.ndarray],
    values: dict[str, np.ndarray],
) -> list[PairDiff]:
    """Each analytic source's projections against the numeric directional derivatives.

    ``rounding`` is judge_input's per-element rounding bound of each analytic source; it
    propagates into a projection weighted by ``|w|``.
    """
    num = projection.values
    err = projection.error
    K = len(num)
    absw = np.abs(projection.directions.reshape(K, -1))
    n = absw.shape[1]
    pairs = []
    for s, r in analytic.items():
        g = np.nan_to_num(r.values[name].reshape(-1), posinf=0.0, neginf=0.0)
        mine = values[s]
        bound = absw @ rounding[s].reshape(-1) + _sum_rounding(n) * (absw @ np.abs(g)) + EPS64 * np.abs(mine)
        tol = SAFETY * np.where(np.isfinite(err), err, 0.0) + bound
        diff = np.abs(mine - num)
        diff = np.where(np.isnan(diff), np.inf, diff)
        # the same test as an element's, scaled: an estimate above UNDECIDED of the size a
        # projection of gradient-scale elements reaches (|w|_2 S for random signs) decides nothing
        size = np.abs(num) + np.sqrt(np.sum(absw**2, axis=1)) * float(np.max(np.abs(g), initial=0.0))
        undecided = ~np.isfinite(num) | ~np.isfinite(err) | (err > UNDECIDED * size) | projection.kinks
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(diff == 0, 0.0, diff / np.where(tol > 0, tol, np.finfo(float).tiny))
            rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(mine), np.abs(num)))
        ratio = np.where(undecided, 0.0, ratio)
        worst = int(np.argmax(ratio)) if K else 0
        pairs.append(
            PairDiff(
                a=s,
                b="numeric",
                max_abs=float(np.max(diff, initial=0.0)),
                max_rel=float(np.max(rel, initial=0.0)),
                worst=(worst,),
                ratio=float(ratio[worst]) if K else 0.0,
                disagree=int((ratio > 1.0).sum()),
                undecided=int(undecided.sum()),
                rule=(
                    f"directional derivatives along {K} random directions: {SAFETY:g} x numeric error estimate"
                    f" + {s} rounding bound weighted by |w| + rounding of the projection's sum"
                ),
                compared=K,
            )
        )
    return pairs
