"""What every check kind shares: its context, its outcome, directions, and differences.

A check kind produces :class:`Gradients` for each source it can run, keyed by the labels it
compares (an input's name, or an output's for forward mode), with a leading axis for the
directions, upstreams or variants it tried. The first-order rules of ``_compare`` judge
them; ``flags`` adds what values cannot show (a source that raised, a gradient of the wrong
dtype), each naming its source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._case import Case
from .._engine import CaseResult, RunOptions, check_case
from .._sources import Gradients
from .._sources.numeric.differences import extrapolate
from .._sources.numeric.steps import EPS, base_step, pow2, step_multipliers

__all__ = [
    "WHOLE_ELEMENTS",
    "DIRECTIONS",
    "Context",
    "Direction",
    "Outcome",
    "directions",
    "failed",
    "richardson",
    "stack",
]

# Up to this many input elements in all, second order and forward mode take every basis
# direction (the whole Hessian, the whole Jacobian); above it, DIRECTIONS random ones.
WHOLE_ELEMENTS = 8
DIRECTIONS = 4


@dataclass
class Context:
    case: Case
    options: RunOptions
    point: dict[str, np.ndarray]  # at the check's dtype, in float64
    first: CaseResult | None = None
    cache: dict[Any, Any] = field(default_factory=dict)  # what two kinds of one case share

    def first_order(self) -> CaseResult:
        """The first-order result at this point (its autograd and numeric sources serve the
        kinds whose right answer is the first-order gradient)."""
        if self.first is None:
            # at the case's own point: no sweep
            case = self.case
            if case.sweep is not None and case.sweep.samples:
                case = replace(case, sweep=replace(case.sweep, samples=0))
            self.first = check_case(case, self.options)
        return self.first


@dataclass
class Outcome:
    sources: list[Gradients]
    labels: list[str]
    flags: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (source, why it fails)
    notes: list[str] = field(default_factory=list)
    check: str = ""  # what the check column shows: "hessian 4x4", "jvp x4", ...


@dataclass
class Direction:
    """An input-space direction ``v`` (one array per input). Numeric differences step along
    ``factor * v`` and divide by ``factor`` (a power of two, so exactly)."""

    v: dict[str, np.ndarray]
    factor: float = 1.0


def directions(point: Mapping[str, np.ndarray], seed: int, whole: int = WHOLE_ELEMENTS) -> tuple[list[Direction], bool]:
    """Every basis direction when the inputs hold at most ``whole`` elements (True), else
    DIRECTIONS random ones: Rademacher signs times a power of two near each element's
    magnitude, as projections take."""
    sizes = {k: int(np.asarray(v).size) for k, v in point.items()}
    total = sum(sizes.values())
    out: list[Direction] = []
    if total <= whole:
        for name, x in point.items():
            for j in range(sizes[name]):
                v = {k: np.zeros(np.shape(p)) for k, p in point.items()}
                v[name].reshape(-1)[j] = 1.0
                out.append(Direction(v, float(pow2(np.maximum(np.abs(np.asarray(x).reshape(-1)[j]), 1.0)))))
        return out, True
    rng = np.random.default_rng(seed)
    for _ in range(DIRECTIONS):
        v = {}
        for name, x in point.items():
            signs = rng.choice(np.array([-1.0, 1.0]), size=np.shape(x))
            v[name] = signs * pow2(np.maximum(np.abs(np.asarray(x, dtype=np.float64)), 1.0))
        out.append(Direction(v))
    return out, False


def richardson(
    evaluate: Callable[[np.ndarray], np.ndarray],
    center: np.ndarray,
    scale: np.ndarray,
    kinks: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The derivative at t = 0 of a vector function F(t) (``evaluate(steps)`` returns one row
    per step), by the numeric source's Richardson table, with its error estimate and kink test.

    ``center`` is F(0) (for the kink test); ``scale`` bounds the size of F's terms, for the
    rounding part of the estimate.
    """
    mults = np.array(step_multipliers("richardson", kinks))
    t = float(pow2(np.array(base_step("richardson"))))
    steps = np.concatenate([t * mults, -t * mults])
    F = np.asarray(evaluate(steps), dtype=np.float64)  # (2q, m)
    q = len(mults)
    fp, fm = F[:q].T, F[q:].T
    plus = np.broadcast_to(t * mults, fp.shape)
    return extrapolate(fp, fm, plus, plus, "richardson", scale[:, None], center[:, None] if kinks else None)


def stack(per: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """{label: array} for each direction (or upstream, or variant) -> {label: (D, *shape)}."""
    return {k: np.stack([np.asarray(p[k], dtype=np.float64) for p in per]) for k in per[0]}


def failed(source: str, shapes: Mapping[str, tuple[int, ...]], dtype: str, why: str, outcome: Outcome) -> Gradients:
    """A source that could not produce values: NaN everywhere, and a flag on every label."""
    for label in shapes:
        outcome.flags.setdefault(label, (source, why))
    return Gradients(source, {k: np.full(s, np.nan) for k, s in shapes.items()}, dtype, method=why)


def eps_scale(values: Mapping[str, np.ndarray]) -> float:
    finite = [np.abs(v[np.isfinite(v)]) for v in values.values()]
    return max((float(f.max()) for f in finite if f.size), default=0.0) + float(EPS)
