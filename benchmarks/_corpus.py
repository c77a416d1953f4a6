"""Issue 10's acceptance figures on the adversarial corpus (benchmarks/corpus), for numerics.py.

Every point goes through the engine's public path, one `check_case` per point (the case's
inputs replaced by the point), so the figures measure what a user gets; the 50-digit referee
(`referee_gradient`, from the forward program alone) supplies the truth.

Per function and dtype:

* fails and inconclusives of the correct gradient, and for each inconclusive point whether a
  true kink (referee_kink_distance: a branch switch where the slope jumps) lies within a
  noise-limited step of it, taken as sqrt(eps64) times the element's scale, about 1.5e-8 of
  it: the step below which a float64 difference of an O(1)-conditioned phi is all rounding;
* the numeric error estimate against the true error |numeric - referee| on every element the
  numeric source makes a claim on (not flagged as a kink), away from the referee's own kinks:
  an element is over when the true error exceeds the estimate by more than the referee's error;
* sensitivity: the manual gradient scaled by (1 + d) (d = 1e-6 in float64, 1e-3 in float32),
  one element scaled by the same (the element with the largest true gradient), and a sign flip
  must fail with manual named, wherever the bug is above the dtype's rounding. A bug of relative
  size d is above rounding at an element when d |g| > 8 max(r, eps |g|) + 8 e, with g the true
  gradient, r the correct manual gradient's actual error there (the rounding the dtype really
  committed on the hand-written formula, against the referee), eps the dtype's and e the
  referee's error; a point counts when some element (the chosen one, for the one-element bug)
  is above rounding. A point below rounding is not counted either way.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcheck_suite import CaseError, RunOptions, check_case, load_case
from gradcheck_suite._case import Case
from gradcheck_suite._engine import CaseResult, sample_points
from gradcheck_suite._program import parse_program
from gradcheck_suite._sources.numeric.referee import (
    RefereeGradient,
    referee_gradient,
    referee_kink_distance,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
BUG = {"float64": 1e-6, "float32": 1e-3}
EPS64 = float(np.finfo(np.float64).eps)
NOISE_STEP = math.sqrt(EPS64)
ABOVE = 8.0  # how far above the dtype's rounding a bug must be to count


@dataclass
class Figures:
    """One function in one dtype."""

    name: str
    dtype: str
    points: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    fail_odd: Counter[str] = field(default_factory=Counter)  # who a fail blamed ("none": no one)
    justified: int = 0  # inconclusive points with a true kink within the noise-limited step
    kinked: bool = False  # the referee found a true kink at or near some point
    elements: int = 0  # elements whose estimate was compared
    over: int = 0
    worst: float = 0.0  # largest true error / estimate
    worst_at: str = ""
    bugs: dict[str, list[int]] = field(default_factory=lambda: {k: [0, 0] for k in ("scaled", "element", "flip")})
    referee_elements: int = 0
    referee_seconds: float = 0.0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def unjustified(self) -> int:
        return self.verdicts["inconclusive"] - self.justified

    def row(self) -> dict[str, Any]:
        return {
            "function": self.name,
            "dtype": self.dtype,
            "points": self.points,
            "fail": self.verdicts["fail"],
            "inconclusive": self.verdicts["inconclusive"],
            "inconclusive_not_near_a_kink": self.unjustified,
            "error": self.verdicts["error"],
            "fail_blamed": dict(self.fail_odd),
            "kinked": self.kinked,
            "estimate_elements": self.elements,
            "estimate_over": self.over,
            "worst_true_over_estimate": self.worst,
            "worst_at": self.worst_at,
            "sensitivity_missed_of_detectable": {k: {"missed": v[1], "detectable": v[0]} for k, v in self.bugs.items()},
            "seconds": self.seconds,
        }


def corpus(pattern: str | None) -> list[Path]:
    from gradcheck_suite._engine import name_matches

    return [p for p in sorted(CORPUS.glob("*.toml")) if name_matches(p.stem, pattern)]


def _rounded(point: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=dtype).astype(np.float64) for k, v in point.items()}


def _at(case: Case, point: dict[str, np.ndarray]) -> Case:
    return dataclasses.replace(case, inputs=point, sweep=None, expect={})


def with_backward_lines(case: Case, lines: Iterable[str], constants: dict[str, Any] | None = None) -> Case:
    """``case`` with statements appended to its backward program (a planted bug)."""
    assert case.backward is not None and case.backward.program is not None
    consts = {**case.constants, **(constants or {})}
    source = "\n".join(s.text for s in case.backward.statements) + "\n" + "\n".join(lines)
    assert case.forward.program is not None
    known = [*case.inputs, *consts, *case.forward.assigned, *(f"d{o}" for o in case.outputs)]
    integers = [k for k, v in consts.items() if isinstance(v, int)] + list(case.forward.program.integers)
    program = parse_program(source, key="backward", known=known, integers=integers)
    backward = dataclasses.replace(case.backward, program=program, constants=consts)
    return dataclasses.replace(case, backward=backward, forward=case.forward.with_constants(consts), constants=consts)


def _check(case: Case, options: RunOptions) -> CaseResult | str:
    try:
        return check_case(case, options)
    except CaseError as exc:
        return str(exc)


def _caught(result: CaseResult | str) -> bool:
    return not isinstance(result, str) and result.verdict == "fail" and result.odd_one_out == "manual"


def measure(path: Path, dtype: str, points: int) -> Figures:
    start = time.perf_counter()
    case = load_case(path)
    fig = Figures(case.name, dtype)
    d = BUG[dtype]
    options = RunOptions(dtype=dtype)
    scaled = with_backward_lines(case, [f"d{k} = d{k} * (1 + {d!r})" for k in case.inputs])
    flipped = with_backward_lines(case, [f"d{k} = -d{k}" for k in case.inputs])
    referee_case = case.at_dtype(dtype)  # float constants rounded as the check rounds them
    for raw in [dict(case.inputs), *sample_points(case, points)]:
        point = _rounded(raw, dtype)
        fig.points += 1
        result = _check(_at(case, point), options)
        if isinstance(result, str):
            fig.verdicts["error"] += 1
            fig.errors.append(result)
            continue
        fig.verdicts[result.verdict] += 1
        if result.verdict == "fail":
            fig.fail_odd[result.odd_one_out or "none"] += 1
        t = time.perf_counter()
        truth = referee_gradient(referee_case, point)
        fig.referee_seconds += time.perf_counter() - t
        fig.referee_elements += sum(int(v.size) for v in point.values())
        fig.kinked |= any(bool(k.any()) for k in truth.kinks.values())
        if result.verdict == "inconclusive":
            _judge_inconclusive(fig, referee_case, point, result, truth)
        _estimates(fig, result, truth, fig.points - 1)
        _sensitivity(fig, case, point, result, truth, d, options, scaled, flipped)
    fig.seconds = time.perf_counter() - start
    return fig


def _judge_inconclusive(fig: Figures, case: Case, point: dict[str, np.ndarray], result: CaseResult, truth: Any) -> None:
    """Is a true kink within the noise-limited step of an element the check left undecided?"""
    for inp in result.inputs:
        if inp.verdict != "inconclusive":
            continue
        x = np.asarray(point[inp.name], dtype=np.float64).reshape(-1)
        scale = float(np.max(np.abs(x), initial=0.0)) or 1.0
        # the elements reported as kinks; where the estimate was too coarse instead, all of them
        flagged = [int(np.ravel_multi_index(k, inp.shape)) if inp.shape else 0 for k in inp.kinks]
        for j in flagged or range(x.size):
            if truth.kinks[inp.name].reshape(-1)[j]:
                fig.justified += 1
                return
            radius = NOISE_STEP * max(abs(float(x[j])), scale)
            if referee_kink_distance(case, point, inp.name, j, radius) is not None:
                fig.justified += 1
                fig.kinked = True
                return


def _estimates(fig: Figures, result: CaseResult, truth: RefereeGradient, k: int) -> None:
    numeric = result.sources["numeric"]
    assert numeric.error is not None and numeric.kinks is not None
    for name, values in numeric.values.items():
        est = numeric.error[name].reshape(-1)
        claim = np.isfinite(values.reshape(-1)) & np.isfinite(est) & ~numeric.kinks[name].reshape(-1)
        claim &= ~truth.kinks[name].reshape(-1)
        true = truth.true_error(name, values).reshape(-1)
        ref = truth.error[name].reshape(-1)
        for j in np.flatnonzero(claim):
            fig.elements += 1
            if true[j] > est[j] + ref[j]:
                fig.over += 1
            ratio = true[j] / est[j] if est[j] > 0 else (math.inf if true[j] > ref[j] else 0.0)
            if ratio > fig.worst:
                fig.worst = float(ratio)
                fig.worst_at = f"point {k}, {name}[{j}]: true {true[j]:.3g}, estimate {est[j]:.3g}"


def _rounding(result: CaseResult, truth: RefereeGradient, name: str) -> np.ndarray:
    """The rounding the dtype actually committed at each element on the correct hand-written
    formula: the correct manual gradient's error against the referee. (Not autograd's: torch's
    formula may be worse or broken, as its float32 division backward is on lorentzian_tiny, and
    the bug is then still there for the numeric source to see.)"""
    err = truth.true_error(name, result.sources["manual"].values[name]).reshape(-1)
    return np.where(np.isfinite(err), err, math.inf)


def _above(d: float, dtype: str, g: float, r: float, e: float) -> bool:
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return d * abs(g) > ABOVE * max(r, eps * abs(g)) + ABOVE * e


def _sensitivity(
    fig: Figures,
    case: Case,
    point: dict[str, np.ndarray],
    result: CaseResult,
    truth: RefereeGradient,
    d: float,
    options: RunOptions,
    scaled: Case,
    flipped: Case,
) -> None:
    best: tuple[float, str, int] | None = None
    detectable = {"scaled": False, "flip": False}
    above_at: dict[tuple[str, int], bool] = {}
    for name in case.inputs:
        g = truth.values[name].reshape(-1)
        e = truth.error[name].reshape(-1)
        r = _rounding(result, truth, name)
        smooth = ~truth.kinks[name].reshape(-1)
        for j in np.flatnonzero(smooth):
            above_at[(name, int(j))] = _above(d, fig.dtype, g[j], r[j], e[j])
            detectable["scaled"] |= above_at[(name, int(j))]
            detectable["flip"] |= _above(2.0, fig.dtype, g[j], r[j], e[j])
            if best is None or abs(g[j]) > best[0]:
                best = (abs(g[j]), name, int(j))
    runs: dict[str, Case] = {"scaled": scaled, "flip": flipped}
    if best is not None and above_at[(best[1], best[2])]:
        mask = np.zeros(np.shape(point[best[1]]))
        mask.reshape(-1)[best[2]] = d
        runs["element"] = with_backward_lines(case, [f"d{best[1]} = d{best[1]} * (1 + bugmask)"], {"bugmask": mask})
        detectable["element"] = True
    for kind, bugged in runs.items():
        if not detectable.get(kind):
            continue
        fig.bugs[kind][0] += 1
        if not _caught(_check(_at(bugged, point), options)):
            fig.bugs[kind][1] += 1
