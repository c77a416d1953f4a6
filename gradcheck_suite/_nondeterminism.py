"""Run-to-run nondeterminism of the analytic sources: ``--repeat N``, ``nondet_tol``.

A backward built on atomics (``index_add_``, scatter-add on CUDA) sums in whatever order the
threads arrive: two runs on the same input may differ. ``--repeat N`` (``repeat = N`` in a case
file, ``check(..., repeat=N)``) runs the manual and autograd sources N times at every point;
the spread of a source is the largest difference of any run from the first, per element.

Judging, as ``torch.autograd.gradcheck``'s ``nondet_tol``: the spread must stay within the
declared absolute tolerance (default 0: runs must agree exactly). Beyond it the source fails
by itself, the odd one out, whatever the other sources say. A source seen to vary within it
is known to no better than the declared tolerance: ``nondet_tol`` joins its tolerance in every
comparison (its ``allowance``; the spread of a few runs would understate how far any one run
may lie from the others' centre). A source whose runs agree exactly gets no allowance. The
spread is reported as a pair of the source with itself (``manual-manual``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from ._compare import InputResult, PairDiff
from ._sources import Gradients

__all__ = ["judge_spread", "repeated"]


def repeated(run: Callable[[], Gradients], n: int, nondet_tol: float = 0.0) -> Gradients:
    """``run()`` ``n`` times; the first result, carrying the spread of all of them and the
    allowance its comparisons make for it."""
    first = run()
    if n <= 1:
        return first
    spread = {k: np.zeros(np.shape(v)) for k, v in first.values.items()}
    seconds = first.seconds
    for _ in range(n - 1):
        again = run()
        seconds += again.seconds
        for k, v in again.values.items():
            a = first.values[k]
            d = np.abs(v - a)
            # NaN in both runs at one place reproduces; NaN in one run only is a difference
            d = np.where(np.isnan(v) & np.isnan(a), 0.0, d)
            spread[k] = np.maximum(spread[k], np.where(np.isnan(d), np.inf, d))
    first.spread, first.runs, first.seconds = spread, n, seconds
    first.allowance = {k: np.full(np.shape(v), nondet_tol if np.any(v > 0) else 0.0) for k, v in spread.items()}
    return first


def judge_spread(result: InputResult, sources: Mapping[str, Gradients], nondet_tol: float) -> InputResult:
    """``result`` with a self-pair per repeated source; a spread beyond ``nondet_tol`` fails it."""
    pairs = list(result.pairs)
    masks = dict(result.masks)
    unstable: list[str] = []
    notes: list[str] = []
    for s in ("manual", "autograd"):
        g = sources.get(s)
        if g is None or g.spread is None or result.name not in g.spread:
            continue
        spread = g.spread[result.name]
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(spread)), spread.shape)) if spread.size else ()
        largest = float(spread[worst]) if spread.size else 0.0
        bad = spread > nondet_tol
        values = np.abs(g.values[result.name])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(spread == 0, 0.0, spread / values)
        ratio = largest / nondet_tol if nondet_tol > 0 else (float("inf") if largest > 0 else 0.0)
        pairs.append(
            PairDiff(
                a=s,
                b=s,
                max_abs=largest,
                max_rel=float(np.nanmax(rel)) if rel.size else 0.0,
                worst=worst,
                ratio=ratio,
                disagree=int(bad.sum()),
                undecided=0,
                rule=f"{s} against itself over {g.runs} runs: the run-to-run spread must stay within nondet_tol"
                f" {nondet_tol:g} (absolute)",
                compared=int(spread.size),
            )
        )
        masks[f"{s}-{s}"] = bad
        if bad.any():
            unstable.append(s)
            notes.append(
                f"{s} is nondeterministic: {g.runs} runs differ by up to {largest:.2e} at element {list(worst)}"
                f" (nondet_tol {nondet_tol:g})"
            )
    if not unstable:
        return replace(result, pairs=pairs, masks=masks)
    odd: str | None = unstable[0] if len(unstable) == 1 else None
    if result.verdict == "fail" and result.odd_one_out != odd:
        odd = None  # another failure that does not name the same source
    reason = "; ".join(notes)
    if result.verdict == "fail":
        reason = f"{reason}; {result.reason}"
    return replace(result, pairs=pairs, masks=masks, verdict="fail", odd_one_out=odd, reason=reason)
