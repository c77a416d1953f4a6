"""Comparing the sources' gradients, element by element, and judging each input.

Every source carries a bound on its own error, and two sources agree when they differ by at
most the sum of theirs:

* an analytic source (manual, autograd) may differ from the true gradient only by rounding.
  Where it is a program, :mod:`gradcheck_suite._rounding` bounds that rounding from the
  magnitudes of its intermediates (``Gradients.rounding``): ``BOUND_SAFETY`` times that bound.
  Elsewhere (callables) the bound is ``ROUNDING * eps(dtype) * (|g| + S)``, ``S`` the case's
  gradient scale (the largest reference gradient element of any input, standing in for the
  terms a cancelling gradient lost), plus ``MEASURED`` times the rounding measured by a rerun
  in higher precision (``Gradients.reference``), capped at that same bound: a measurement can
  only widen the tolerance by what the dtype's arithmetic can explain, so a bug that exists
  only in float32 is not mistaken for float32's rounding;
* the numeric value carries its own error estimate ``E`` (float64): ``SAFETY * E``.

An element is undecided when the numeric estimate cannot decide (``E`` larger than
``UNDECIDED`` of the scale, a non-finite value) or when a kink persists at every step down to
the noise floor.

Who is wrong (``attribute``): the source whose two pairs disagree while the pair of the
other two agrees. Before a verdict blames numeric, or names no odd one out, a referee at 50
digits (where the forward is a program) recomputes the disputed elements and decides; without
one, a single disagreeing pair names the suspect when one of its sources is also near its
tolerance with the third source while the other agrees with it closely (``suspect``). A
source that runs the same hand-written backward as the manual one (an autograd.Function inside
the forward) is not independent: it never outvotes numeric.

A sample check (``Gradients.checked``) judges numeric pairs on the sampled elements only. A
projection check has no numeric element at all: ``judge_projection`` applies the same rule to
directional derivatives, ``<g, w>`` against the numeric derivative along ``w``: they agree
when they differ by at most ``SAFETY * E`` plus the analytic side's rounding, which for a
projection is the per-element rounding bound weighted by ``|w|`` plus the rounding of the
sum itself (the products ``g * w`` are exact: ``w`` is a signed power of two per element).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    "analytic_bound",
    "suspect",
    "Referee",
    "RefereeAnswer",
    "RefereeFn",
    "project",
    "gradient_scale",
    "attribute",
]

# Calibrated with benchmarks/numerics.py over 1,000 random points per seed case: the largest
# manual-vs-autograd gap seen was below 8 eps (float32 and float64), so 64 leaves a margin of 8.
ROUNDING = 64.0
# The program bound is first order: twice it covers the second-order terms it leaves out.
BOUND_SAFETY = 2.0
# A measured rounding may widen a callable's bound by at most the bound itself.
MEASURED_CAP = 1.0
# A single disagreeing pair names a suspect when the suspect's other pair is at least this
# close to its tolerance, and that many times closer than the third pair.
SUSPECT_RATIO = 0.1
SUSPECT_MARGIN = 10.0
# A backward formula is wrong when, evaluated exactly, it differs from the true gradient by
# more than this many times the rounding the dtype commits on it (or 2 u of the gradient).
FORMULA_SAFETY = 4.0
# Within its rounding bound, a manual program still differs suspiciously from the two other
# sources when it is this many times further from them than its measured rounding and their
# own disagreement explain: the referee then evaluates the formula exactly. (At 4, a formula
# off by 8 times its real rounding passed at 17 of 25 such points of benchmarks/corpus's
# expanded (x - 1)^5, where autograd and the complex step round as much as the manual does.)
SUSPICION = 2.0
# A doubtful element is further from the other two than this many units of rounding of its own
# value too: correct formulas differ from each other by a few (summation order, the complex
# step's last bit), and a question about each would send most cases to the referee for nothing.
DOUBT_ULPS = 16
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
    # per element (or direction): the difference over its tolerance; NaN where undecided or not
    # compared (what report.html's heatmaps draw)
    ratios: np.ndarray | None = None

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"

    @property
    def status(self) -> str:
        if self.disagree:
            return "disagree"
        return "agree"


@dataclass
class Referee:
    """What the high-precision referee found on the disputed elements of an input."""

    digits: int
    elements: list[tuple[int, ...]]  # the elements it recomputed
    wrong: dict[str, list[tuple[int, ...]]]  # source -> elements where it is off the truth
    truth: np.ndarray  # the true gradient at ``elements``
    error: np.ndarray  # the referee's own error estimate there
    sampled: int = 0  # disputed elements left out (a sample of a large input)


@dataclass
class RefereeAnswer:
    """The referee's values at the elements it was asked about (in that order, maybe fewer)."""

    truth: np.ndarray  # the true gradient, from the forward alone
    error: np.ndarray  # its error estimate (inf on a kink)
    digits: int
    formula: np.ndarray | None = None  # the backward program itself at ``digits`` (manual programs)
    formula_error: np.ndarray | None = None


# A referee takes the flat indices of ``what`` elements ("disputed", "suspicious" or "doubtful")
# and answers, or answers None when it cannot (the forward is not a program) or will not (its
# budget for a sweep's suspicious and doubtful elements is spent, or the question costs too much).
RefereeFn = Callable[[np.ndarray, str], "RefereeAnswer | None"]


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
    referee: Referee | None = None
    # source -> elements non-finite in the check's dtype but finite in the higher-precision
    # rerun: the dtype's range, not a wrong formula; those elements are judged without it
    overflow: dict[str, int] = field(default_factory=dict)

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


def suspect(pairs: list[PairDiff], present: list[str]) -> str | None:
    """With one disagreeing pair among three sources: the one of its two sources whose pair
    with the third is near its tolerance (ratio at least SUSPECT_RATIO) while the other's pair
    with the third agrees SUSPECT_MARGIN times more closely. A documented rule for verdicts
    near a threshold (README, "How verdicts are decided")."""
    if len(present) != 3:
        return None
    bad = [p for p in pairs if p.disagree]
    if len(bad) != 1:
        return None
    a, b = bad[0].a, bad[0].b
    third = next(s for s in present if s not in (a, b))
    ratio = {}
    for s in (a, b):
        p = next((q for q in pairs if {q.a, q.b} == {s, third}), None)
        if p is None:
            return None
        ratio[s] = p.ratio
    for s, o in ((a, b), (b, a)):
        if ratio[s] >= SUSPECT_RATIO and ratio[s] >= SUSPECT_MARGIN * ratio[o]:
            return s
    return None


def analytic_bound(r: Gradients, name: str, g: np.ndarray, scale: float) -> tuple[np.ndarray, float | None]:
    """The rounding bound of an analytic source per element, and its measured relative
    rounding (None where it was not measured)."""
    eps = _eps(r.dtype)
    if r.rounding is not None:
        bound = BOUND_SAFETY * r.rounding[name]
    else:
        bound = ROUNDING * eps * (np.abs(np.nan_to_num(g, posinf=0, neginf=0)) + scale)
    if r.reference is None:
        return bound, None
    measured = np.abs(g - r.reference[name])
    # non-finite in the check's dtype but finite above it is overflow, not rounding
    measured = np.where(np.isfinite(measured), measured, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = measured / np.maximum(np.abs(r.reference[name]), ROUNDING * eps * scale)
    precision = float(np.nanmax(rel)) if rel.size and not np.isnan(rel).all() else 0.0
    if r.rounding is None:
        bound = bound + np.minimum(MEASURED * measured, MEASURED_CAP * bound)
    return bound, precision


def judge_input(
    name: str,
    results: list[Gradients],
    dtype: str,
    scale: float,
    referee: RefereeFn | None = None,
) -> InputResult:
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
    overflowed: dict[str, np.ndarray] = {}
    for s in present:
        if s == "numeric":
            continue
        rounding[s], measured = analytic_bound(by[s], name, grads[s], scale)
        allowance = by[s].allowance
        if allowance is not None:  # --repeat: a nondeterministic source (_nondeterminism)
            rounding[s] = rounding[s] + allowance[name]
        if measured is not None:
            precision[s] = measured
        ref = by[s].reference
        if ref is not None:
            over = ~np.isfinite(grads[s]) & np.isfinite(ref[name])
            if over.any():
                overflowed[s] = over

    tolerance: dict[str, np.ndarray] = dict(rounding)
    if numeric is not None and err is not None:
        tolerance["numeric"] = SAFETY * np.where(np.isfinite(err), err, 0.0)

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
        tol = tolerance[a] + tolerance[b]
        rules = [_rule(by[s], numeric) for s in (a, b)]
        undecided = kink.copy()
        for src in (a, b):
            if src in overflowed:
                undecided |= overflowed[src]
        compared = int(np.prod(shape))
        compared_mask = np.ones(shape, dtype=bool)
        if "numeric" in (a, b):
            undecided |= undecided_num
            if checked is not None:  # a sample: the elements numeric left out are not compared
                diff = np.where(checked, diff, 0.0)
                rel = np.where(checked, rel, 0.0)
                undecided &= checked
                compared = int(checked.sum())
                compared_mask = checked
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
                ratios=np.where(undecided | ~compared_mask, np.nan, ratio),
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
    dependent = [s for s in present if s in by and by[s].depends_on]
    verdict = _Verdict(
        name, shape, grads, err, pairs, present, kinks, masks, precision, kinked, dependent, by, overflowed
    )
    result = verdict.conclude(referee, tolerance)
    result.overflow = {s: int(m.sum()) for s, m in overflowed.items()}
    if projection is not None:
        result.projections = values
        result.projection_error = projection.error
    return result


def _rule(r: Gradients, numeric: Gradients | None) -> str:
    if r.source == "numeric":
        return f"{SAFETY:g} x numeric error estimate ({numeric.method if numeric else ''})"
    if r.rounding is not None:
        return f"{r.source} rounding bound {BOUND_SAFETY:g} x the program's (intermediate magnitudes, {r.dtype})"
    measured = f" + {MEASURED:g} x rounding measured in {r.reference_dtype} (capped)" if r.reference is not None else ""
    return f"{r.source} rounding bound {ROUNDING:g} eps({r.dtype}) (|g| + S){measured}"


@dataclass
class _Verdict:
    """Everything judge_input found about one input, and the rules that turn it into a verdict."""

    name: str
    shape: tuple[int, ...]
    grads: dict[str, np.ndarray]
    err: np.ndarray | None
    pairs: list[PairDiff]
    present: list[str]
    kinks: list[tuple[int, ...]]
    masks: dict[str, np.ndarray]
    precision: dict[str, float]
    kinked_directions: list[int]
    dependent: list[str]
    by: dict[str, Gradients]
    overflowed: dict[str, np.ndarray] = field(default_factory=dict)  # judged without these elements

    def result(self, verdict: str, odd: str | None, reason: str, referee: Referee | None = None) -> InputResult:
        return InputResult(
            self.name,
            self.shape,
            self.grads,
            self.err,
            self.pairs,
            verdict,
            odd,
            reason,
            self.kinks,
            self.masks,
            self.precision,
            referee=referee,
        )

    def conclude(self, referee: RefereeFn | None, tolerance: dict[str, np.ndarray]) -> InputResult:
        disagreeing = {frozenset({p.a, p.b}) for p in self.pairs if p.disagree}
        if disagreeing:
            return self._disagreement(disagreeing, referee, tolerance)
        if self.kinks:
            where = ", ".join(str(list(k)) for k in self.kinks[:5])
            more = f" and {len(self.kinks) - 5} more" if len(self.kinks) > 5 else ""
            reason = (
                f"kink: the perturbation crosses a point with no derivative at element(s) {where}{more}"
                " (a jump in the first derivative that persists at every step down to the noise floor)"
            )
            return self.result("inconclusive", None, reason)
        if self.kinked_directions:
            where = ", ".join(str(k) for k in self.kinked_directions)
            reason = f"kink: the perturbation along direction(s) {where} crosses a point with no derivative"
            return self.result("inconclusive", None, reason)
        decided = [p for p in self.pairs if p.undecided < p.compared]
        if not decided:
            return self.result("inconclusive", None, "the numeric error estimate is too large to decide")
        if referee is not None:
            for what, flat in self._suspicious(tolerance).items():
                if len(flat):
                    judged = self._ask(referee, flat, tolerance, what)
                    if judged is not None and judged.verdict == "fail":
                        return judged
        present = self.present
        reason = "all sources agree" if len(present) == 3 else " and ".join(present) + " agree"
        return self.result("pass", None, reason + self._dependence_note())

    def _suspicious(self, tolerance: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Flat elements where the manual program passes its rounding bound (a first-order worst
        case, often 10 to 100 times its real rounding) but sits further from the other sources
        than its measured rounding and their own disagreement can explain ("suspicious"), or
        than its measured rounding alone ("doubtful": the others are too noisy to tell, as where
        autograd and numeric cancel as badly as the formula; the engine asks about these only
        where the referee is cheap)."""
        manual = self.by.get("manual")
        if manual is None or manual.reference is None or manual.rounding is None:
            return {}
        m = self.grads["manual"]
        u = _eps(manual.dtype) / 2
        rho = np.abs(m - manual.reference[self.name]) + 2 * u * np.abs(m)
        others = [s for s in ("autograd", "numeric") if s in self.grads]
        if not others:
            return {}
        if len(others) == 2:
            a, n = self.grads["autograd"], self.grads["numeric"]
            own = np.abs(a - n)
            gap = np.minimum(np.abs(m - a), np.abs(m - n))
        else:
            x = others[0]
            own = tolerance[x]
            gap = np.abs(m - self.grads[x])
        with np.errstate(invalid="ignore"):
            suspicious = gap > SUSPICION * (rho + own)
            # with one other source its tolerance stands for its noise: no finer question to ask
            doubt = gap > SUSPICION * (rho + DOUBT_ULPS * u * np.abs(m))
            doubtful = doubt & ~suspicious if len(others) == 2 else np.zeros_like(suspicious)
        out = {}
        for what, mask in (("suspicious", suspicious), ("doubtful", doubtful)):
            for k in self.kinks:
                mask[k] = False
            out[what] = np.flatnonzero(np.nan_to_num(mask.reshape(-1), nan=False))
        return out

    def _dependence_note(self) -> str:
        if not self.dependent:
            return ""
        runs = "; ".join(f"{s} runs {', '.join(self.by[s].depends_on)}" for s in self.dependent)
        return f" ({runs}: not independent of the hand-written backward)"

    def _disagreement(
        self, disagreeing: set[frozenset[str]], referee: RefereeFn | None, tolerance: dict[str, np.ndarray]
    ) -> InputResult:
        present = self.present
        odd = attribute(disagreeing, present)
        if odd in self.dependent:
            pass  # a dependent source that is the odd one out is still wrong
        elif odd == "numeric" and self.dependent:
            odd = None  # numeric is outvoted only by sources that share hand-written code
        if (odd is None or odd == "numeric") and referee is not None and "numeric" in present:
            disputed = np.zeros(self.shape, dtype=bool)
            for mask in self.masks.values():
                disputed |= mask
            decided = self._ask(referee, np.flatnonzero(disputed.reshape(-1)), tolerance, "disputed")
            if decided is not None:
                return decided
        if odd:
            return self.result("fail", odd, f"{odd} disagrees with the other two" + self._dependence_note())
        if self.dependent and "numeric" in present:
            shared = ", ".join(sorted({f for s in self.dependent for f in self.by[s].depends_on}))
            reason = (
                f"numeric, the only source independent of the hand-written backward ({shared}),"
                " disagrees with it" + self._dependence_note()
            )
            return self.result("fail", None, reason)
        if len(present) < 3:
            reason = " and ".join(present) + " disagree; a third source would tell which is wrong"
            return self.result("fail", None, reason)
        guess = suspect(self.pairs, present)
        if guess is not None:
            bad = next(p for p in self.pairs if p.disagree)
            others = ", ".join(f"{p.name} {p.ratio:.2g}x" for p in self.pairs if not p.disagree)
            reason = (
                f"{guess} is the likely odd one out: {bad.name} disagrees ({bad.ratio:.2g}x its tolerance);"
                f" of the other pairs ({others}) only {guess}'s comes near its tolerance"
            )
            return self.result("fail", guess, reason)
        return self.result("fail", None, "the sources disagree and no single one is the odd one out")

    def _ask(
        self, referee: RefereeFn, flat: np.ndarray, tolerance: dict[str, np.ndarray], what: str
    ) -> InputResult | None:
        """The referee's verdict on the ``what`` elements ``flat`` (None: it cannot judge).

        A manual program is judged by its formula, evaluated exactly: wrong where it differs
        from the true gradient by more than FORMULA_SAFETY times the rounding the dtype
        committed on it. Other sources are judged by their tolerances against the truth."""
        if not len(flat):
            return None
        answer = referee(flat, what)
        if answer is None:
            return None
        checked = flat[: len(answer.truth)]
        truth, error = answer.truth, answer.error
        wrong: dict[str, list[tuple[int, ...]]] = {}
        for s in self.present:
            if s not in self.grads:  # a projection's numeric source has no elements to judge
                continue
            g = self.grads[s].reshape(-1)[checked]
            if s == "manual" and answer.formula is not None:
                b = answer.formula
                u = _eps(self.by[s].dtype) / 2
                fe = answer.formula_error if answer.formula_error is not None else 0.0
                rounding = np.maximum(np.abs(g - b), 2 * u * np.abs(truth))
                off = ~(np.abs(b - truth) <= FORMULA_SAFETY * (rounding + error + fe))
            else:
                off = ~(np.abs(g - truth) <= tolerance[s].reshape(-1)[checked] + SAFETY * error)
            if s in self.overflowed:  # the dtype's range, not the formula: no verdict on these
                off &= ~self.overflowed[s].reshape(-1)[checked]
            if off.any():
                wrong[s] = [tuple(int(i) for i in np.unravel_index(int(k), self.shape)) for k in checked[off]]
        elements = [tuple(int(i) for i in np.unravel_index(int(k), self.shape)) for k in checked]
        info = Referee(answer.digits, elements, wrong, truth, error, sampled=len(flat) - len(checked))
        analytic = [s for s in self.present if s != "numeric" and s in wrong]
        n, digits = len(checked), answer.digits
        if not analytic:
            overruled = f"; numeric was off at {len(wrong['numeric'])}" if "numeric" in wrong else ""
            reason = (
                f"all sources agree (a {digits}-digit referee recomputed the {n} {what} element(s): the analytic"
                f" sources are within their rounding{overruled})"
            )
            return self.result("pass", None, reason + self._dependence_note(), info)
        odd = analytic[0] if len(analytic) == 1 else None
        first = wrong[analytic[0]][0]
        who = " and ".join(analytic)
        formula = " (its formula, evaluated exactly, is not the derivative)" if "manual" in analytic else ""
        reason = (
            f"{who} {'is' if odd else 'are'} off the true gradient at {sum(len(wrong[s]) for s in analytic)}"
            f" element(s), first {list(first)}{formula} (a {digits}-digit referee recomputed the {n} {what}"
            " element(s))"
        )
        return self.result("fail", odd, reason + self._dependence_note(), info)


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
