"""``--time-budget SECONDS``: fit one case's numeric check into a number of seconds.

The cost of one evaluation of phi is measured, not guessed: ``PROBE_ROWS`` perturbations of
the case's largest input go through the same evaluator the check will use (vmapped chunks for
a program; batched, single or parallel calls for a callable), and their time is divided by
their number. The plan then takes, in this order, the first that fits ``SHARE`` of the budget
left (the rest is for the elements the first pass hands to the ladders, the other sources and
the comparison), at every point of the case (1 + --samples):

1. **full**: every element;
2. **sample** of K elements per input, when K still covers at least ``SAMPLE_SHARE`` of the
   largest input: element by element answers on most of it;
3. **projection** with as many random directions as fit, up to ``MAX_DIRECTIONS`` and at
   least one: a single wrong element moves every directional derivative, so even one
   direction sees it, where a small sample would most likely miss it.

Only ``--mode auto`` is changed; an explicit ``--mode`` is kept, and the choice says whether
it fits. The choice is a note on the case and ``budget`` in report.json.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..._case import Case
from .calls import CallEvaluator, default_jobs
from .runner import Objective, Runner
from .source import NumericSettings, planned_evaluations, through_calls
from .steps import initial_steps, resolve_method

__all__ = [
    "MAX_DIRECTIONS",
    "PROBE_ROWS",
    "SAMPLE_SHARE",
    "SHARE",
    "BudgetChoice",
    "fit_budget",
    "seconds_per_evaluation",
]

SHARE = 0.5
SAMPLE_SHARE = 0.5
MAX_DIRECTIONS = 64
PROBE_ROWS = 16


@dataclass(frozen=True)
class BudgetChoice:
    """What ``--time-budget`` chose for one case, and from what."""

    budget: float  # seconds
    evaluation: float  # seconds of one evaluation of phi, measured
    points: int
    mode: str
    elements: int | None  # sample mode: elements per input
    directions: int | None  # projection mode: directions per input
    planned: int  # evaluations of phi planned at every point together
    fits: bool  # the plan fits SHARE of the budget
    chosen: bool  # False: --mode was given, the budget only measured it

    @property
    def what(self) -> str:
        if self.mode == "sample":
            return f"sample of {self.elements} elements per input"
        if self.mode == "projection":
            return f"projection on {self.directions} direction(s) per input"
        return "full"

    def note(self) -> str:
        verb = "chose" if self.chosen else "kept --mode"
        fit = "fits" if self.fits else "does not fit"
        where = f" at {self.points} points" if self.points > 1 else ""
        return (
            f"--time-budget {self.budget:g} s {verb} {self.what}: one evaluation of phi takes"
            f" {self.evaluation * 1e3:.3g} ms, {self.planned} planned{where} (about"
            f" {self.planned * self.evaluation:.2g} s) {fit} in half the budget"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.budget,
            "evaluation_seconds": self.evaluation,
            "points": self.points,
            "mode": self.mode,
            "elements": self.elements,
            "directions": self.directions,
            "planned_evaluations": self.planned,
            "fits": self.fits,
            "chosen": self.chosen,
        }


def seconds_per_evaluation(case: Case, point: Mapping[str, np.ndarray], settings: NumericSettings) -> float:
    """Time PROBE_ROWS evaluations of phi at ``point`` through the check's own evaluator."""
    method = resolve_method(settings.method, case.forward.analytic)
    if method == "exact":
        method = "richardson"  # the referee's cost is not phi's; this is a lower bound of it
    name = max(point, key=lambda k: int(np.size(point[k])))
    X = np.asarray(point[name], dtype=np.float64).reshape(1, -1)
    n = X.shape[1]
    rows = PROBE_ROWS
    element = np.arange(rows) % n
    step = initial_steps(X, np.arange(n), "complex-step" if method == "complex-step" else "first").reshape(-1)
    offset = step[element] * np.where(np.arange(rows) % 2, -1.0, 1.0)
    obj = Objective(case, [point], settings.device, complex_=method == "complex-step")
    if through_calls(case, method, settings):
        runner = Runner(obj, 0, settings.max_memory, None, 0)
        runner.calls = CallEvaluator(case, [point], settings.jobs or default_jobs(), lambda n: None, lambda t: None)
    else:
        _, _, forward_bytes = obj.probe()
        runner = Runner(obj, forward_bytes, settings.max_memory, None, 0)
    try:
        runner.run(None, np.zeros(1, dtype=int), np.zeros(1))  # first calls pay for warming up
        start = time.perf_counter()
        runner.run(name, np.zeros(rows, dtype=int), offset, element=element)
        return (time.perf_counter() - start) / rows
    finally:
        runner.close()


def _largest(fits: Any, low: int, high: int) -> int | None:
    """The largest k in [low, high] with fits(k) (fits falls as k grows), None when none."""
    if high < low or not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def fit_budget(
    case: Case,
    settings: NumericSettings,
    points: int,
    point: Mapping[str, np.ndarray],
    budget: float,
    spent: float,
    choose: bool,
) -> tuple[NumericSettings, BudgetChoice]:
    """The settings that fit ``budget`` seconds (``spent`` of it gone), and what was chosen.

    ``choose``: --mode was auto, so the mode may change; else the settings stay."""
    cost = seconds_per_evaluation(case, point, settings)
    allowance = SHARE * budget - spent - cost * PROBE_ROWS

    def planned(s: NumericSettings) -> int:
        return planned_evaluations(case, points, s)

    def fits(s: NumericSettings) -> bool:
        return planned(s) * cost <= allowance

    def choice(s: NumericSettings, chosen: bool) -> tuple[NumericSettings, BudgetChoice]:
        elements = s.elements if s.mode == "sample" else None
        directions = s.directions if s.mode == "projection" else None
        made = BudgetChoice(budget, cost, points, s.mode, elements, directions, planned(s), fits(s), chosen)
        return s, made

    if not choose:
        return choice(settings, False)
    full = replace(settings, mode="full")
    if fits(full):
        return choice(full, True)
    largest = max(int(np.size(v)) for v in case.inputs.values())
    need = max(1, int(np.ceil(SAMPLE_SHARE * largest)))
    k = _largest(lambda e: fits(replace(settings, mode="sample", elements=e)), need, largest - 1)
    if k is not None:
        return choice(replace(settings, mode="sample", elements=k), True)
    d = _largest(lambda d: fits(replace(settings, mode="projection", directions=d)), 1, MAX_DIRECTIONS)
    return choice(replace(settings, mode="projection", directions=d or 1), True)
