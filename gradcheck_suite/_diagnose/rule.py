"""When two analytic gradients are the same gradient: the check's own manual-vs-autograd rule.

Line blame compares each ``d<name>`` of a backward program with autograd's gradient of that
forward variable, and mutation testing compares a mutant's gradient with the original's: both
are exact formulas evaluated in float64, so they may differ only by rounding. Rather than
keep constants of its own, this module asks :func:`gradcheck_suite._compare.judge_input`
to judge the two as a manual and an autograd source, so a change to that rule (its rounding
bound, its scale) reaches the diagnostics too.

The scale ``S`` judge_input adds to every element's bound stands for the terms a cancelling
sum rounded. Here it is the largest magnitude among the two values and the ``terms`` they were
summed from (a backward statement's terms, the forward edges of the variable), so a gradient
that cancels to nearly zero is judged against the size of what cancelled.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._compare import judge_input
from .._sources import Gradients

__all__ = ["Agreement", "agreement", "largest"]

DTYPE = "float64"


def largest(arrays: Iterable[np.ndarray | None]) -> float:
    """The largest finite magnitude among ``arrays`` (0 when there is none)."""
    big = 0.0
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a, dtype=np.float64)
        finite = np.abs(a[np.isfinite(a)])
        if finite.size:
            big = max(big, float(finite.max()))
    return big


class Agreement:
    """The verdict of one comparison: ``same``, the largest relative difference, and the
    elements that differ beyond rounding."""

    def __init__(self, same: bool, max_rel: float, mask: np.ndarray) -> None:
        self.same = same
        self.max_rel = max_rel
        self.mask = mask

    def __bool__(self) -> bool:
        return self.same


def agreement(got: np.ndarray, want: np.ndarray, terms: Iterable[np.ndarray | None] = ()) -> Agreement:
    """Whether ``got`` is ``want`` up to float64 rounding (shapes must hold the same number of
    elements; ``got`` takes ``want``'s shape). A shape that cannot match is a disagreement."""
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        if got.size != want.size:
            return Agreement(False, float("inf"), np.ones(want.shape, dtype=bool))
        got = got.reshape(want.shape)
    scale = largest([got, want, *terms])
    sources = [Gradients("manual", {"v": got}, DTYPE), Gradients("autograd", {"v": want}, DTYPE)]
    result = judge_input("v", sources, DTYPE, scale)
    pair = result.pairs[0]
    return Agreement(pair.disagree == 0, pair.max_rel, result.masks.get(pair.name, np.zeros(want.shape, dtype=bool)))
