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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ._sources import SOURCES, Gradients

__all__ = [
    "ROUNDING",
    "SAFETY",
    "UNDECIDED",
    "PairDiff",
    "InputResult",
    "judge_input",
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
    ref = next((r for r in results if r.source == "numeric"), None) or next(
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
    by = {r.source: r for r in results}
    present = [s for s in SOURCES if s in by]
    grads = {s: by[s].values[name] for s in present}
    shape = next(iter(grads.values())).shape
    numeric = by.get("numeric")
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
        if "numeric" in (a, b):
            undecided |= undecided_num
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
            )
        )
        masks[f"{a}-{b}"] = bad

    kinks = [tuple(int(i) for i in ix) for ix in np.argwhere(kink)]
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
    decided = [p for p in pairs if p.undecided < int(np.prod(shape))]
    if not decided:
        reason = "the numeric error estimate is too large to decide"
        return InputResult(name, shape, grads, err, pairs, "inconclusive", None, reason, kinks, masks, precision)
    reason = "all sources agree" if len(present) == 3 else " and ".join(present) + " agree"
    return InputResult(name, shape, grads, err, pairs, "pass", None, reason, kinks, masks, precision)
