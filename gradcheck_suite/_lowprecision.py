"""The low-precision rule: bfloat16, float16, and float32 with TF32.

A bfloat16 kernel cannot match a float64 gradient to a few eps: one rounding alone is 2^-9
relative. Its authors judge it as FlashAttention's tests do: run a plain PyTorch reference in
the same low precision, measure both against the reference in high precision, and pass the
kernel when its error is at most k times the reference's own error plus a floor. Here:

* the truth ``t`` is autograd of the reference in float64, at the point the dtype represents
  (inputs, constants and upstream gradients rounded to the dtype); the numeric source checks
  the truth itself, in float64, by the float64 rule of :mod:`gradcheck_suite._compare`;
* the reference's error ``|r - t|`` is autograd run in the dtype; the manual source's error
  ``|m - t|`` is the hand-written backward run in the dtype;
* per element: ``|m - t| <= k max(rho, 2u) (|t| + s) + u |t|``, where ``s`` is the RMS of the
  truth over the input, ``rho`` the reference's worst error relative to ``|t| + s``, ``u`` the
  dtype's unit roundoff and ``u |t|`` one final rounding. Relative to ``|t| + s`` because
  rounding in the dtype scales with the values an element is computed from, which s stands in
  for where an element cancels. The floor ``2u``: a correct computation reads operands stored
  in the dtype (one rounding each) and stores its result (one more);
* as a 2-norm over the input: ``||m - t|| <= k max(||r - t||, 2u ||t||) + u ||t||``.

``rho`` is the largest of a sample, and on a small input (a 4x5 layer) it underestimates the
tail of the reference's error: the manual source's worst element then passes 2 rho by chance
(1 to 4 of 100 random points of the bundled layer norm, LSTM and RNN cases in bfloat16). So
for a case of fewer than ``JITTER_BELOW`` input elements the reference also runs at
``JITTER_RUNS`` copies of the point, each element moved by -1, 0 or +1 unit in the last place
of the dtype (its truth recomputed there), and rho and the norm error are the worst over all
runs (:func:`measure_reference`).

The manual source fails when either does; the pair with the numeric source uses the same
tolerance plus 4 times the numeric error estimate, so a wrong reference (autograd in float64
disagrees with numeric) is named as such. The report shows both errors side by side
(:class:`LowPrecisionErrors`). The manual source is also run in float64: a manual gradient that
fails in the dtype but agrees with the truth in float64 has a right formula and loses precision
(accumulation in bfloat16), one that disagrees in float64 too has a wrong formula.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ._case import Case
from ._compare import (
    SAFETY,
    UNDECIDED,
    InputResult,
    PairDiff,
    attribute,
    gradient_scale,
    judge_input,
    judge_projection,
    project,
)
from ._dtypes import torch_dtype
from ._settings import CheckSettings
from ._sources import SOURCES, Gradients
from ._sources.autograd import autograd_gradients

__all__ = [
    "JITTER_BELOW",
    "JITTER_RUNS",
    "LowPrecisionErrors",
    "LowPrecisionInput",
    "jitter",
    "judge_low_precision",
    "manual_tolerance",
    "measure_reference",
]

JITTER_BELOW = 4096  # input elements of a case, in all, below which the reference is jittered
JITTER_RUNS = 8
FLOOR = 2.0  # the least error level, in units of u, the rule assumes of any computation


@dataclass
class LowPrecisionErrors:
    """The manual source's and the reference's errors against the float64 truth, side by side."""

    dtype: str  # "bfloat16", "float16" or "float32 (TF32)"
    k: float
    unit_roundoff: float
    reference: float  # the reference's worst |r - t| / (|t| + s)
    reference_norm: float  # ||r - t|| / ||t||
    manual: float | None = None  # the manual source's worst |m - t| / (|t| + s)
    manual_norm: float | None = None  # ||m - t|| / ||t||
    element_ratio: float | None = None  # worst |m - t| over its tolerance
    norm_ratio: float | None = None  # ||m - t|| over its tolerance
    manual_float64: float | None = None  # the manual source run in float64: worst |m64 - t| / (|t| + s)
    undecided: int = 0  # elements the reference cannot compute in the dtype (overflow)
    reference_runs: int = 1  # the point and its jittered copies the reference's error is the worst of

    @property
    def formula_right(self) -> bool | None:
        """Whether the manual source's float64 run agrees with the truth far below the dtype's
        rounding (a float32 kernel rerun in float64 still computes in float32: 1e-7 is right)."""
        if self.manual_float64 is None:
            return None
        return self.manual_float64 <= self.unit_roundoff / 16


@dataclass
class LowPrecisionInput(InputResult):
    low_precision: LowPrecisionErrors | None = None


def _norm(a: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(a)))) if a.size else 0.0


def _max(a: np.ndarray) -> float:
    return float(np.max(a)) if a.size else 0.0


@dataclass
class _Rule:
    """The manual source's tolerance for one input: per element and for the norm."""

    t: np.ndarray
    s: float
    tol: np.ndarray  # per element
    undecided: np.ndarray  # the truth or the reference is not finite there
    errors: LowPrecisionErrors
    norm_floor: float  # k max(||r - t||, 2u ||t||) + u ||t|| (+ the manual source's allowance)


def _rms(t: np.ndarray) -> float:
    return max(float(np.sqrt(np.mean(np.square(t)))) if t.size else 0.0, float(np.finfo(np.float64).tiny))


def _reference_error(name: str, auto: Gradients) -> tuple[float, float]:
    """(rho, ||r - t|| / ||t||) of one autograd run on input ``name``."""
    assert auto.reference is not None
    t, r = auto.reference[name], auto.values[name]
    decided = np.isfinite(t) & np.isfinite(r)
    tt = np.where(decided, t, 0.0)
    er = np.where(decided, np.abs(r - tt), 0.0)
    nt = _norm(tt)
    return _max(er / (np.abs(tt) + _rms(tt))), (_norm(er) / nt if nt else 0.0)


def jitter(point: dict[str, np.ndarray], dtype: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``point`` (values of ``dtype``) with each nonzero finite element moved by -1, 0 or +1
    unit in the last place of ``dtype``: one step of its bit pattern."""
    out = {}
    for name, v in point.items():
        t = torch.from_numpy(np.ascontiguousarray(v)).to(torch_dtype(dtype))
        bits = torch.int16 if t.element_size() == 2 else (torch.int32 if t.element_size() == 4 else torch.int64)
        step = torch.from_numpy(rng.integers(-1, 2, size=v.shape)).to(bits)
        movable = torch.isfinite(t) & (t != 0) & torch.isfinite(t.view(bits).add(step).view(t.dtype))
        moved = torch.where(movable, t.view(bits).add(step).view(t.dtype), t)
        out[name] = moved.to(torch.float64).numpy().reshape(np.shape(v))
    return out


def measure_reference(
    case: Case, point: dict[str, np.ndarray], auto: Gradients, dtype: str, device: str, seed: int = 0
) -> None:
    """Set ``auto.dtype_error``: the reference's error per input, over the point and, for a
    small case, ``JITTER_RUNS`` jittered copies of it."""
    runs = [auto]
    if sum(int(np.size(v)) for v in point.values()) < JITTER_BELOW:
        rng = np.random.default_rng(seed)
        runs += [autograd_gradients(case, jitter(point, dtype, rng), dtype, device) for _ in range(JITTER_RUNS)]
    auto.dtype_error = {}
    for name in point:
        measured = [_reference_error(name, r) for r in runs]
        auto.dtype_error[name] = (max(m[0] for m in measured), max(m[1] for m in measured), len(runs))


def _rule(name: str, auto: Gradients, manual: Gradients | None, settings: CheckSettings) -> _Rule:
    assert auto.reference is not None
    t = auto.reference[name]
    r = auto.values[name]
    k, u = settings.k, settings.unit_roundoff
    decided = np.isfinite(t) & np.isfinite(r)
    tt = np.where(decided, t, 0.0)
    s = _rms(tt)
    rho, rel_norm, runs = (auto.dtype_error or {}).get(name) or (*_reference_error(name, auto), 1)
    size = np.abs(tt) + s
    tol = k * max(rho, FLOOR * u) * size + u * np.abs(tt)
    spread = 0.0
    if manual is not None and manual.allowance is not None:
        tol = tol + manual.allowance[name]  # nondeterministic within nondet_tol: known to no better
        spread = _norm(np.where(decided, manual.allowance[name], 0.0))
    nt = _norm(tt)
    errors = LowPrecisionErrors(
        dtype=settings.label,
        k=k,
        unit_roundoff=u,
        reference=rho,
        reference_norm=rel_norm,
        undecided=int((~decided).sum()),
        reference_runs=runs,
    )
    floor = k * max(rel_norm, FLOOR * u) * nt + u * nt + spread
    return _Rule(tt, s, tol, ~decided, errors, floor)


def manual_tolerance(name: str, auto: Gradients, g: Gradients, settings: CheckSettings) -> np.ndarray:
    """The error around the float64 truth the rule allows ``g`` (per element), with ``auto``'s
    low-precision run measuring the dtype's error."""
    return _rule(name, auto, g, settings).tol


def _pair(
    a: str,
    b: str,
    diff: np.ndarray,
    tol: np.ndarray,
    undecided: np.ndarray,
    norm_ratio: float | None,
    rule: str,
    scale_of: np.ndarray,
    compared: int,
) -> tuple[PairDiff, np.ndarray]:
    diff = np.where(np.isnan(diff), np.inf, diff)
    diff = np.where(undecided, 0.0, diff)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / np.where(tol > 0, tol, np.finfo(float).tiny))
        rel = np.where(diff == 0, 0.0, diff / np.abs(scale_of))
    rel = np.where(np.isnan(rel), np.inf, rel)
    bad = ratio > 1.0
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    worst_ratio = float(ratio[worst]) if ratio.size else 0.0
    if norm_ratio is not None and norm_ratio > 1.0 and not bad.any() and ratio.size:
        bad[worst] = True  # the norm fails: its largest contributor stands for it
    return (
        PairDiff(
            a=a,
            b=b,
            max_abs=_max(diff),
            max_rel=_max(rel),
            worst=tuple(int(i) for i in worst),
            ratio=max(worst_ratio, norm_ratio or 0.0),
            disagree=int(bad.sum()),
            undecided=int(undecided.sum()),
            rule=rule,
            compared=compared,
        ),
        bad,
    )


def judge_low_precision(name: str, results: list[Gradients], settings: CheckSettings) -> InputResult:
    by = {r.source: r for r in results}
    present = [s for s in SOURCES if s in by]
    grads = {s: by[s].values[name] for s in present}
    shape = next(iter(grads.values())).shape
    auto, manual, numeric = by.get("autograd"), by.get("manual"), by.get("numeric")
    label = settings.label
    err = numeric.error[name] if numeric is not None and numeric.error is not None else None
    if auto is None or auto.reference is None:
        reason = (
            f"no reference runs in {label}: the low-precision rule measures the manual source's error against"
            f" the reference's own {label} error; give the case a torch forward or a [reference]"
        )
        return LowPrecisionInput(name, shape, grads, err, [], "inconclusive", None, reason)

    truth = replace(auto, values=auto.reference, dtype="float64", reference=None, reference_dtype="", spread=None)
    pairs: list[PairDiff] = []
    masks: dict[str, np.ndarray] = {}
    kink = np.zeros(shape, dtype=bool)
    kinks: list[tuple[int, ...]] = []
    kinked: list[int] = []
    truth_agrees = True
    if numeric is not None:
        # the truth against the numeric source, in float64, by the float64 rule
        base = judge_input(name, [truth, numeric], "float64", gradient_scale([truth, numeric]))
        truth_agrees = not any(p.disagree for p in base.pairs)
        for p in base.pairs:
            pairs.append(replace(p, rule=f"autograd in float64 (the truth): {p.rule}"))
        masks.update(base.masks)
        kinks = base.kinks
        if numeric.kinks is not None:
            kink = numeric.kinks[name].copy()
        if numeric.projections and name in numeric.projections:
            kinked = [int(i) for i in np.flatnonzero(numeric.projections[name].kinks)]

    rule = _rule(name, auto, manual, settings)
    errors = rule.errors
    if manual is not None:
        m = manual.values[name]
        t = rule.t
        undecided = rule.undecided | kink
        em = np.abs(m - t)
        keep = ~undecided
        errors.manual = _max(np.where(keep, np.where(np.isnan(em), np.inf, em), 0.0) / (np.abs(t) + rule.s))
        nm = _norm(np.where(keep, em, 0.0))
        nt = _norm(t)
        errors.manual_norm = nm / nt if nt else (0.0 if nm == 0 else float("inf"))
        errors.norm_ratio = nm / rule.norm_floor if nm else 0.0
        if manual.reference is not None:
            e64 = np.where(keep, np.abs(manual.reference[name] - t), 0.0)
            errors.manual_float64 = _max(np.where(np.isnan(e64), np.inf, e64) / (np.abs(t) + rule.s))
        text = (
            f"low precision ({label}): manual's error against autograd in float64 (the truth) <= {settings.k:g} x"
            f" the reference's own {label} error, per element ({settings.k:g} max(rho, {FLOOR:g}u) (|t| + s) + u |t|)"
            " and as a 2-norm"
        )
        pair, bad = _pair(
            "manual",
            "autograd",
            em,
            rule.tol,
            undecided,
            errors.norm_ratio,
            text,
            np.maximum(np.abs(m), np.abs(t)),
            m.size,
        )
        errors.element_ratio = _max(np.where(undecided | (em == 0), 0.0, em / np.maximum(rule.tol, 1e-300)))
        pairs.insert(0, pair)
        masks["manual-autograd"] = bad
        if numeric is not None:
            pairs.append(_manual_numeric(name, manual, numeric, rule, undecided, masks, pair if truth_agrees else None))
    result = _conclude(name, shape, grads, err, pairs, present, kinks, kinked, masks, errors)
    if numeric is not None and numeric.projections and name in numeric.projections:
        proj = numeric.projections[name]
        result.projections = {s: project(by[s].values[name], proj.directions) for s in ("manual",) if s in by}
        result.projections["autograd"] = project(truth.values[name], proj.directions)
        result.projections["numeric"] = proj.values
        result.projection_error = proj.error
    return result


def _manual_numeric(
    name: str,
    manual: Gradients,
    numeric: Gradients,
    rule: _Rule,
    undecided: np.ndarray,
    masks: dict[str, np.ndarray],
    against_truth: PairDiff | None,
) -> PairDiff:
    """The manual source against the numeric source: the same tolerance plus 4 x its estimate.

    In projection mode a direction sums every element's low-precision tolerance, so it cannot
    see what one element or a norm sees. Where the numeric source confirms the truth along
    every direction (``against_truth``: the manual source's pair with it), the manual source
    is judged against that confirmed truth, element by element."""
    m = manual.values[name]
    if numeric.projections and name in numeric.projections:
        if against_truth is not None:
            masks["manual-numeric"] = masks["manual-autograd"]
            text = f"{against_truth.rule}; autograd in float64 agrees with numeric along every direction"
            return replace(against_truth, b="numeric", rule=text)
        proj = numeric.projections[name]
        values = {"manual": project(m, proj.directions), "numeric": proj.values}
        (pair,) = judge_projection(name, {"manual": manual}, proj, {"manual": rule.tol}, values)
        return pair
    n = numeric.values[name]
    assert numeric.error is not None
    err = numeric.error[name]
    with np.errstate(invalid="ignore"):
        undecided_num = ~np.isfinite(n) | ~np.isfinite(err) | (err > UNDECIDED * (np.abs(n) + rule.s))
    undecided = undecided | undecided_num
    compared = m.size
    if numeric.checked is not None and name in numeric.checked:
        undecided = undecided | ~numeric.checked[name]
        compared = int(numeric.checked[name].sum())
    safe_err = np.where(np.isfinite(err), err, 0.0)
    tol = rule.tol + SAFETY * safe_err
    diff = np.abs(m - n)
    keep = ~undecided
    nd = _norm(np.where(keep, np.where(np.isnan(diff), np.inf, diff), 0.0))
    norm_ratio = nd / (rule.norm_floor + SAFETY * _norm(np.where(keep, safe_err, 0.0))) if nd else 0.0
    text = f"the low-precision tolerance + {SAFETY:g} x numeric error estimate ({numeric.method})"
    pair, bad = _pair(
        "manual", "numeric", diff, tol, undecided, norm_ratio, text, np.maximum(np.abs(m), np.abs(n)), compared
    )
    masks["manual-numeric"] = bad
    return pair


def _explain(odd: str | None, e: LowPrecisionErrors) -> str:
    if odd == "manual" and e.manual is not None:
        text = (
            f"manual's {e.dtype} error is above {e.k:g} x the reference's: worst element {e.manual:.1e} against"
            f" {e.reference:.1e} (relative to |t| + s), norm {e.manual_norm:.1e} against {e.reference_norm:.1e}"
        )
        if e.formula_right is True:
            text += (
                f"; in float64 it is within {e.manual_float64:.1e} of the truth: the formula is right, its"
                f" {e.dtype} arithmetic loses what the reference keeps (accumulation in {e.dtype}?)"
            )
        elif e.formula_right is False:
            text += f"; in float64 too it is {e.manual_float64:.1e} off the truth: the formula itself is wrong"
        return text
    if odd == "autograd":
        return "autograd in float64 (the truth) disagrees with the other two: the reference is wrong"
    if odd == "numeric":
        return "numeric disagrees with the other two"
    return "the sources disagree and no single one is the odd one out"


def _conclude(
    name: str,
    shape: tuple[int, ...],
    grads: dict[str, np.ndarray],
    err: np.ndarray | None,
    pairs: list[PairDiff],
    present: list[str],
    kinks: list[tuple[int, ...]],
    kinked: list[int],
    masks: dict[str, np.ndarray],
    errors: LowPrecisionErrors,
) -> LowPrecisionInput:
    def result(verdict: str, odd: str | None, reason: str) -> LowPrecisionInput:
        return LowPrecisionInput(
            name, shape, grads, err, pairs, verdict, odd, reason, kinks, masks, {}, low_precision=errors
        )

    disagreeing = {frozenset({p.a, p.b}) for p in pairs if p.disagree}
    if disagreeing:
        if len(present) < 3:
            odd = "manual" if frozenset({"manual", "autograd"}) in disagreeing else None
            why = _explain(odd, errors) if odd else " and ".join(present) + " disagree"
            return result("fail", odd, why)
        odd = attribute(disagreeing, present)
        return result("fail", odd, _explain(odd, errors))
    if kinks:
        where = ", ".join(str(list(k)) for k in kinks[:5])
        more = f" and {len(kinks) - 5} more" if len(kinks) > 5 else ""
        return result(
            "inconclusive",
            None,
            f"kink: the perturbation crosses a point with no derivative at element(s) {where}{more}",
        )
    if kinked:
        where = ", ".join(str(k) for k in kinked)
        return result(
            "inconclusive",
            None,
            f"kink: the perturbation along direction(s) {where} crosses a point with no derivative",
        )
    if not [p for p in pairs if p.undecided < p.compared]:
        return result("inconclusive", None, "the numeric error estimate is too large to decide")
    if errors.manual is None:
        return result("pass", None, f"autograd in float64 and numeric agree (no manual source in {errors.dtype})")
    return result(
        "pass",
        None,
        f"manual's {errors.dtype} error is within {errors.k:g} x the reference's: worst element {errors.manual:.1e}"
        f" against {errors.reference:.1e}, norm {errors.manual_norm:.1e} against {errors.reference_norm:.1e}",
    )
