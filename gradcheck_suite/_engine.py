"""The one engine behind the CLI and the pytest plugin: run cases, judge them, build a Report."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._case import Case, load_cases
from ._compare import InputResult, RefereeAnswer, RefereeFn, gradient_scale, judge_input
from ._device_compare import DeviceComparison, compare_devices
from ._devices import device_names, get_device, source_context
from ._dtypes import round_to
from ._errors import CaseError, UsageError
from ._guard import CaseTimeout, as_case_error, check_plan, deadline, prepare
from ._keyword import compile_keyword
from ._limits import DEFAULT_LIMITS, Limits
from ._lowprecision import judge_low_precision, measure_reference
from ._nondeterminism import judge_spread, repeated
from ._progress import progress_bar
from ._rounding import ProgramBounds, program_bounds, unit_roundoff
from ._settings import CheckSettings, resolve
from ._sources import Gradients
from ._sources.autograd import autograd_gradients
from ._sources.manual import REFUSED, manual_gradients, run_forward, run_programs
from ._sources.numeric import (
    DEFAULT_DIRECTIONS,
    DEFAULT_ELEMENTS,
    DEFAULT_MAX_MEMORY,
    NumericSettings,
    PointRounding,
    Progress,
    numeric_gradients_at,
    planned_evaluations,
    resolve_mode,
)
from ._sources.numeric.budget import BudgetChoice, fit_budget
from ._sources.numeric.runner import collect_notes
from ._threads import small_case_threads
from ._trust import Trust

if TYPE_CHECKING:
    from ._diagnose import Diagnostics

__all__ = [
    "RunOptions",
    "CaseResult",
    "SampleSummary",
    "Report",
    "check_case",
    "run",
    "ensure_device",
    "select",
    "name_matches",
]

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    dtype: str = "float64"
    numeric: str = "auto"
    samples: int | None = None
    max_memory: int = DEFAULT_MAX_MEMORY
    mode: str = "auto"
    elements: int = DEFAULT_ELEMENTS
    directions: int = DEFAULT_DIRECTIONS
    jobs: int | None = None  # processes for a callable's evaluations (None: every core)
    time_budget: float = 0.0  # seconds per case to fit the numeric check into (0: none)
    order: int = 1  # 2: also second order (gradcheck_suite._kinds)
    checks: tuple[str, ...] = ()  # further check kinds: forward, batched, undefined, ...
    # the trust model and the resource limits (docs/trust.md, docs/limits.md)
    allow_callable: tuple[str, ...] = ()
    data_only: bool = False
    limits: Limits = DEFAULT_LIMITS

    # issue 12 (gradcheck_suite._settings): None takes the case file's value, else the default
    k: float | None = None
    repeat: int | None = None
    nondet_tol: float | None = None
    tf32: bool = False
    # a case file's `dtype` wins over `dtype`: the CLI and the plugin set this when no --dtype
    # was given; a library caller's explicit dtype holds
    case_dtype: bool = False

    def trust(self) -> Trust:
        """The allow-list: defaults, pyproject.toml from the current directory up, then ours."""
        return Trust.from_settings(self.allow_callable, self.data_only)


def check_settings(case: Case, options: RunOptions) -> CheckSettings:
    """How ``case`` is checked under ``options``: dtype, k, repeat, nondet_tol, TF32."""
    return resolve(
        case.settings,
        dtype=options.dtype,
        dtype_given=not options.case_dtype,
        k=options.k,
        repeat=options.repeat,
        nondet_tol=options.nondet_tol,
        tf32=options.tf32,
    )


@dataclass
class SampleSummary:
    points: int
    counts: dict[str, int]
    worst: int  # index of the sample point the case result shows
    # per point, in order (point 0 is the case's own): its verdict, the largest difference
    # over tolerance of any pair, and the values of the scalar inputs (where in the domain)
    verdicts: list[str] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    coordinates: list[dict[str, float]] = field(default_factory=list)


@dataclass
class CaseResult:
    case: Case
    device: str
    dtype: str
    verdict: str
    odd_one_out: str | None
    inputs: list[InputResult]
    point: dict[str, np.ndarray]
    sources: dict[str, Gradients]
    expect_failures: list[str] = field(default_factory=list)
    samples: SampleSummary | None = None
    seconds: float = 0.0
    mode: str = "full"  # the numeric check that ran: full, sample or projection
    # which check this is: "" for first-order gradients, else a check kind (gradcheck_suite._kinds)
    kind: str = ""
    notes: list[str] = field(default_factory=list)  # how the sources ran, for the report
    check_label: str = ""  # a check kind's own words for what it compared ("hessian 4x4")
    test_id: str | None = None  # the pytest node id of the test that checked it (the plugin sets it)
    settings: CheckSettings | None = None  # dtype, k, repeat, nondet_tol, TF32 as resolved
    diagnostics: Diagnostics | None = None  # line blame and hints, for a case that fails
    budget: BudgetChoice | None = None  # what --time-budget chose

    @property
    def reason(self) -> str:
        if self.expect_failures:
            return "; ".join(self.expect_failures)
        bad = [i for i in self.inputs if i.verdict != "pass"]
        at = "; ".join(f"{i.name}: {i.reason}" for i in bad) or "all sources agree"
        if self.samples is None:
            return at
        # a sweep's verdict counts every point; the inputs describe the worst one
        c = self.samples.counts
        counts = f"{c['pass']} of {self.samples.points} points pass, {c['fail']} fail, {c['inconclusive']} inconclusive"
        return f"{counts}; at point {self.samples.worst}: {at}" if bad else f"{counts}; {at}"


@dataclass
class Report:
    results: list[CaseResult]
    errors: list[CaseError]
    options: RunOptions
    seconds: float = 0.0
    # --device cpu,cuda: devices named but not available (name -> why), and each case's
    # gradients compared across the devices that ran (gradcheck_suite._devices_table)
    unavailable: dict[str, str] = field(default_factory=dict)
    devices: list[DeviceComparison] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        if any(r.verdict == "fail" for r in self.results) or any(d.verdict == "fail" for d in self.devices):
            return 1
        return 0

    def counts(self) -> dict[str, int]:
        c = {v: 0 for v in VERDICTS}
        for r in self.results:
            c[r.verdict] += 1
        c["error"] = len(self.errors)
        return c

    def point_counts(self) -> dict[str, int] | None:
        """The sweeps' points by verdict, over every case that swept (None: no case did).

        A sweep is one case with one verdict in ``counts``; its points are counted here, so
        the terminal, report.json and report.html say the same two things the same way."""
        swept = [r.samples for r in self.results if r.samples is not None]
        if not swept:
            return None
        c = {v: 0 for v in VERDICTS}
        for s in swept:
            for v in VERDICTS:
                c[v] += s.counts.get(v, 0)
        return {"points": sum(s.points for s in swept), **c}


def ensure_device(device: str) -> None:
    why = get_device(device).missing()
    if why:
        raise UsageError(f"--device {device}: {why}")


def name_matches(name: str, pattern: str | None) -> bool:
    """The -k rule: pytest's ``and``/``or``/``not`` expressions over words, each word a
    case-insensitive substring or, with * ? or [, a glob (:mod:`._keyword`)."""
    if not pattern:
        return True
    return compile_keyword(pattern)(name)


def select(cases: Iterable[Case | CaseError], pattern: str | None) -> list[Case | CaseError]:
    """Keep the cases whose name matches the -k expression ``pattern``."""
    if not pattern:
        return list(cases)
    compile_keyword(pattern)  # a malformed expression is a usage error even with no case to match
    kept: list[Case | CaseError] = []
    for c in cases:
        if isinstance(c, CaseError):
            kept.append(c)  # a file that did not load might hold the case asked for
        elif name_matches(c.name, pattern):
            kept.append(c)
    return kept


def _at_dtype(point: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    # Every source sees the point the check's dtype can represent, so the float64 numeric
    # reference of a float32 check differentiates at exactly the float32 inputs.
    return {k: round_to(v, dtype) for k, v in point.items()}


def _numeric_settings(case: Case, options: RunOptions, progress: Progress | None = None) -> NumericSettings:
    mode = resolve_mode(options.mode, {k: int(np.asarray(v).size) for k, v in case.inputs.items()})
    seed = case.sweep.seed if case.sweep else 0
    return NumericSettings(
        options.numeric,
        get_device(options.device).torch,
        options.max_memory,
        mode=mode,
        elements=options.elements,
        directions=options.directions,
        seed=seed,
        progress=progress,
        dtype=options.dtype,
        jobs=options.jobs,
    )


def _check_forward(case: Case, point: Mapping[str, np.ndarray], where: str = "at the input point") -> None:
    """Every output exists, is finite at ``point`` and has its upstream's shape: a located
    CaseError here beats a shape error from deep inside a source."""
    with np.errstate(all="ignore"):  # a NaN here becomes a CaseError, not a warning
        values = run_forward(case, point)
    for o in case.outputs:
        if o not in values:
            raise case.error(f"the forward produced no output `{o}`", key="forward")
        out = np.asarray(values[o], dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise case.error(f"the output `{o}` is NaN or infinite {where}", key="forward")
        up = case.upstreams.get(o)
        if up is not None and up.shape != out.shape:
            raise case.error(
                f"upstream gradient has shape {up.shape} but output `{o}` has shape {out.shape}", key="upstream"
            )


# The referee recomputes at most this many disputed elements per input and point (a sample
# of a large input's): each costs eight evaluations of the forward at 50 and 70 digits.
REFEREE_ELEMENTS = 32
# A sweep asks the referee about merely suspicious elements (within tolerance, but further from
# the other sources than rounding explains) at most this many times beyond the case's own
# point: a wrong formula shows at many points, and a 1,000-point sweep must not pay for every one.
SUSPICION_BUDGET = 16
# What one question may cost, in scalar operations done in mpmath (a few microseconds each):
# the forward's operations (referee_cost) times eight evaluations per element asked. A merely
# suspicious element is worth about a second (a 64x64 matmul, 266,240 operations an
# evaluation, is not: it took 12 s for a check torch's slow mode does in 2.4); a disputed one,
# where the vote would otherwise blame numeric or no one, about a minute. Beyond that the
# fewer elements, down to none: the vote stands. A doubtful element (further from the others
# than the manual source's own rounding, within their own disagreement) only where it is cheap.
REFEREE_OPS = {"doubtful": 20_000, "suspicious": 250_000, "disputed": 10_000_000}


def _check_deterministic(case: Case, point: Mapping[str, np.ndarray]) -> None:
    """A callable forward gives the same outputs twice at the same point; else every
    difference quotient measures its randomness, not its slope."""
    if case.forward.program is not None:
        return  # programs have no random draws
    with np.errstate(all="ignore"):
        first, second = run_forward(case, point), run_forward(case, point)
    for o in case.outputs:
        a = np.asarray(first[o], dtype=np.float64)
        b = np.asarray(second[o], dtype=np.float64)
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            gap = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
            raise case.error(
                f"nondeterministic forward: two evaluations of `{case.forward.label}` at the same point give"
                f" different `{o}` (largest difference {gap:.3g}); an unseeded random draw (dropout without a"
                " seed or a fixed mask?) makes every gradient check meaningless: seed it, or pass the mask as a"
                " constant",
                key="forward",
            )


# Two implementations of one function differ by their rounding; a different function differs
# by far more. Relative to the output's scale (float64), this leaves room for forwards that
# cancel (a variance as E[x^2] - E[x]^2 loses 1e6 ulps near 1000) and still catches a wrong
# axis or a dropped term.
FORWARD_AGREEMENT = 1e-8


def _check_reference(case: Case, point: Mapping[str, np.ndarray]) -> list[str]:
    """A forward callable and a separate [reference] must compute the same function before
    their gradients can be compared: a mismatch is a failure of its own."""
    ref = case.reference
    if ref is None or case.autograd_forward is not ref:
        return []
    from ._backends import TorchBackend

    with np.errstate(all="ignore"):
        mine = run_forward(case, point)
        be = TorchBackend()
        with torch.no_grad():
            theirs = ref.run({k: be.asarray(v) for k, v in point.items()}, be)
    failures = []
    for o in case.outputs:
        a = np.asarray(mine[o], dtype=np.float64)
        t = theirs[o]
        b = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            failures.append(
                f"the forward `{case.forward.label}` and the reference `{ref.label}` compute different functions:"
                f" output `{o}` has shape {a.shape} and {b.shape}"
            )
            continue
        scale = float(np.max(np.abs(a), initial=0.0))
        diff = np.abs(a - b)
        bad = ~(diff <= FORWARD_AGREEMENT * (np.abs(a) + np.abs(b) + scale))
        if bad.any():
            worst = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf), 0.0))), a.shape)
            failures.append(
                f"the forward `{case.forward.label}` and the reference `{ref.label}` compute different functions:"
                f" output `{o}` differs at {int(bad.sum())} of {a.size} element(s), max difference"
                f" {float(np.nanmax(np.where(bad, diff, 0.0))):.3g} at {list(int(i) for i in worst)}"
                f" ({float(a[worst]):.6g} against {float(b[worst]):.6g})"
            )
    return failures


def _check_point(
    case: Case,
    point: dict[str, np.ndarray],
    options: RunOptions,
    settings: CheckSettings,
    numeric: Gradients,
    where: str,
    bounds: ProgramBounds | None = None,
    budget: list[int] | None = None,
) -> tuple[list[InputResult], dict[str, Gradients]]:
    _check_forward(case, point, where)
    results: list[Gradients] = []
    dtype, device, n, tol = settings.dtype, options.device, settings.repeat, settings.nondet_tol
    # the programs' rounding bounds are the float rule's; the low-precision rule measures instead
    bounds = None if settings.low_precision else bounds
    u = unit_roundoff(dtype) if bounds is not None else 0.0
    with source_context(get_device(device), settings.tf32):
        if case.backward is not None:
            manual = repeated(lambda: manual_gradients(case, point, dtype, device), n, tol)
            if bounds is not None and bounds.manual is not None:
                manual.rounding = {k: u * v for k, v in bounds.manual.items()}
            results.append(manual)
        if case.autograd_forward is not None:  # else checked two ways; case.notes says so
            autograd = repeated(lambda: autograd_gradients(case, point, dtype, device), n, tol)
            if bounds is not None and bounds.autograd is not None:
                autograd.rounding = {k: u * v for k, v in bounds.autograd.items()}
            results.append(autograd)
        if settings.low_precision and case.autograd_forward is not None:
            measure_reference(case, point, results[-1], dtype, device)
    results.append(numeric)
    sources = {r.source: r for r in results}
    if settings.low_precision:
        inputs = [judge_low_precision(name, results, settings) for name in point]
    else:
        scale = gradient_scale(results)
        cost = _referee_cost(case, point)  # one count of the forward's operations for all inputs
        inputs = [judge_input(name, results, dtype, scale, _referee(case, point, name, budget, cost)) for name in point]
    if n > 1:
        inputs = [judge_spread(i, sources, settings.nondet_tol) for i in inputs]
    return inputs, sources


def _referee_cost(case: Case, point: Mapping[str, np.ndarray]) -> Callable[[], int | None]:
    """The forward's scalar operations at ``point`` (referee_cost), counted when first asked
    (None where the program cannot be run so)."""

    @functools.cache
    def cost() -> int | None:
        from ._sources.numeric.referee import referee_cost

        try:
            return max(1, referee_cost(case, point))
        except CaseError:
            return None

    return cost


def _referee(
    case: Case,
    point: Mapping[str, np.ndarray],
    name: str,
    budget: list[int] | None = None,
    cost: Callable[[], int | None] | None = None,
) -> RefereeFn | None:
    """The 50-digit referee for disputed, suspicious or doubtful elements of ``name``; ``budget``
    (shared by a sweep's points) counts down the questions about the last two (None: no
    limit); ``cost`` (shared by the point's inputs) prices each question (REFEREE_OPS)."""
    # the referee's own rule (referee_available), without importing mpmath for every case
    if case.forward.program is None:
        return None
    operations = cost or _referee_cost(case, point)

    def decide(flat: np.ndarray, what: str) -> RefereeAnswer | None:
        if what != "disputed" and budget is not None and budget[0] <= 0:
            return None
        # mpmath loads only when sources disagree: 0.2 s that no passing run should pay
        from ._sources.numeric.referee import referee_backward, referee_gradient

        ops = operations()
        affordable = 0 if ops is None else REFEREE_OPS.get(what, REFEREE_OPS["disputed"]) // (8 * ops)
        if affordable < 1:
            return None
        if what != "disputed" and budget is not None:
            budget[0] -= 1
        chosen = flat[: min(REFEREE_ELEMENTS, affordable)]
        try:
            truth = referee_gradient(case, point, {name: chosen})
        except CaseError:
            return None
        values = truth.values[name].reshape(-1)[chosen]
        errors = truth.error[name].reshape(-1)[chosen]
        kinked = truth.kinks[name].reshape(-1)[chosen]
        # on a kink there is no true gradient to decide with
        errors = np.where(kinked, np.inf, errors)
        answer = RefereeAnswer(values, errors, truth.digits)
        if case.backward is not None and case.backward.program is not None:
            try:
                formula = referee_backward(case, point, truth.digits)
            except CaseError:
                return answer
            answer.formula = formula.values[name].reshape(-1)[chosen]
            answer.formula_error = formula.error[name].reshape(-1)[chosen]
        return answer

    return decide


def _bounds(case: Case, points: list[dict[str, np.ndarray]]) -> list[ProgramBounds | None]:
    """The rounding bounds of the case's programs at every point (None where there are none)."""
    if case.forward.program is None and (case.autograd_forward is None or case.autograd_forward.program is None):
        return [None] * len(points)
    return [program_bounds(case, p) for p in points]


def _numeric_rounding(case: Case, bounds: list[ProgramBounds | None]) -> list[PointRounding] | None:
    """What the numeric source needs of the bounds: phi's rounding in float64 (it always runs
    in float64) and the derivative's, at every point; None unless the forward is a program."""
    if case.forward.program is None or not bounds:
        return None
    u = unit_roundoff("float64")
    out = []
    for b in bounds:
        if b is None or b.phi is None:
            return None
        derivative = None if b.derivative is None else {k: u * v for k, v in b.derivative.items()}
        out.append(PointRounding(u * b.phi, derivative))
    return out


def _sample_where(case: Case, k: int, point: Mapping[str, np.ndarray]) -> str:
    with np.printoptions(precision=4, threshold=6):
        at = ", ".join(f"{n}={np.asarray(v)}" for n, v in point.items())
    domain = "its [sweep] domain" if case.sweep and case.sweep.domain else "the default domain value +- max(|value|, 1)"
    return f"at sample point {k} ({at}), drawn from {domain}: declare a [sweep] domain the function is defined on"


def _verdict(inputs: list[InputResult]) -> tuple[str, str | None]:
    fails = [i for i in inputs if i.verdict == "fail"]
    if fails:
        odd = {i.odd_one_out for i in fails}
        return "fail", odd.pop() if len(odd) == 1 else None
    if any(i.verdict == "inconclusive" for i in inputs):
        return "inconclusive", None
    return "pass", None


def _badness(inputs: list[InputResult]) -> tuple[int, float]:
    rank = {"pass": 0, "inconclusive": 1, "fail": 2}
    level = max(rank[i.verdict] for i in inputs)
    ratio = max((p.ratio for i in inputs for p in i.pairs), default=0.0) if level else 0.0
    return level, ratio


def iter_sample_points(case: Case, n: int) -> Iterator[dict[str, np.ndarray]]:
    """``n`` random points in the case's domain (uniform per element), drawn one at a time.

    An input without a declared domain varies in ``value +- max(|value|, 1)``.
    """
    seed = case.sweep.seed if case.sweep else 0
    domain = dict(case.sweep.domain) if case.sweep else {}
    rng = np.random.default_rng(seed)
    for _ in range(n):
        p = {}
        for name, x in case.inputs.items():
            if name in domain:
                lo, hi = domain[name]
                p[name] = rng.uniform(lo, hi, size=x.shape)
            else:
                width = np.maximum(np.abs(x), 1.0)
                p[name] = x + rng.uniform(-1.0, 1.0, size=x.shape) * width
        yield p


def sample_points(case: Case, n: int) -> list[dict[str, np.ndarray]]:
    return list(iter_sample_points(case, n))


# Points go through the numeric source in batches of at most this many (fewer when the inputs
# are large), so a sweep of any length holds one batch of points, never all of them.
POINT_BATCH = 64


def _batches(case: Case, options: RunOptions, n: int) -> Iterator[list[dict[str, np.ndarray]]]:
    """The case's own point, then ``n`` sample points, at the check's dtype, in batches."""
    elements = sum(int(np.asarray(v).size) for v in case.inputs.values())
    size = max(1, min(POINT_BATCH, options.max_memory // (64 * max(elements, 1))))
    batch = [_at_dtype(case.inputs, options.dtype)]
    for p in iter_sample_points(case, n):
        if len(batch) == size:
            yield batch
            batch = []
        batch.append(_at_dtype(p, options.dtype))
    yield batch


def _offset(progress: Progress, base: int, total: int) -> Progress:
    """A batch's progress as the whole sweep's."""
    return lambda done, _planned: progress(base + done, total)


def check_case(
    case: Case, options: RunOptions, progress: Progress | None = None, *, diagnose: bool = True
) -> CaseResult:
    """Check one case within the limits: its callables imported (if allowed) and its shapes
    checked first, the whole check under ``--timeout``. Anything that goes wrong is a CaseError.
    A failing case also gets its diagnostics unless ``diagnose`` is False (mutation testing,
    which only needs the verdict)."""
    try:
        with deadline(options.limits.timeout, case), small_case_threads(case.inputs):
            return _check_case(prepare(case, options.limits), options, progress, diagnose)
    except (Exception, CaseTimeout) as exc:  # noqa: BLE001 - one located error, never a traceback
        raise as_case_error(case, exc) from None


def _check_case(case: Case, options: RunOptions, progress: Progress | None, diagnose: bool) -> CaseResult:
    start = time.perf_counter()
    ensure_device(options.device)
    check = check_settings(case, options)  # dtype, k, repeat, nondet_tol: the run's over the case's
    options = replace(options, dtype=check.dtype, case_dtype=False)
    case = case.at_dtype(options.dtype)  # float constants, like the inputs, at the check's dtype
    n = options.samples if options.samples is not None else (case.sweep.samples if case.sweep else None)
    counts = {v: 0 for v in ("pass", "fail", "inconclusive")}
    best: tuple[tuple[int, float], int, list[InputResult], dict[str, Gradients], dict[str, np.ndarray]] | None = None
    settings = _numeric_settings(case, options, progress)
    fitted = None  # what --time-budget chose
    if options.time_budget:
        at = _at_dtype(case.inputs, options.dtype)
        spent = time.perf_counter() - start
        settings, fitted = fit_budget(
            case, settings, 1 + (n or 0), at, options.time_budget, spent, options.mode == "auto"
        )
    total = planned_evaluations(case, 1 + (n or 0), settings)
    check_plan(case, n or 0, total, options.limits)
    first = _at_dtype(case.inputs, options.dtype)
    _check_forward(case, first)
    _check_deterministic(case, first)
    forward_failures = _check_reference(case, first)
    per_point = SampleSummary(0, counts, 0)
    notes: list[str] = []
    budget = [SUSPICION_BUDGET]
    # The case's own point comes first, so a sweep that passes shows the point the file names;
    # each batch's perturbations go through the forward together, chunked by memory.
    k, done = 0, 0
    for batch in _batches(case, options, n or 0):
        if progress is not None:
            settings = replace(settings, progress=_offset(progress, done, total))
        bounds = _bounds(case, batch)
        with collect_notes() as said:
            numerics = numeric_gradients_at(case, batch, settings, _numeric_rounding(case, bounds))
        notes += [note for note in said if note not in notes]
        done += planned_evaluations(case, len(batch), settings)
        for point, numeric, bound in zip(batch, numerics, bounds, strict=True):
            where = "at the input point" if k == 0 else _sample_where(case, k, point)
            inputs, sources = _check_point(
                case, point, options, check, numeric, where, bound, None if k == 0 else budget
            )
            verdict, _ = _verdict(inputs)
            counts[verdict] += 1
            per_point.verdicts.append(verdict)
            per_point.ratios.append(max((p.ratio for i in inputs for p in i.pairs), default=0.0))
            per_point.coordinates.append(
                {m: float(np.asarray(v).reshape(-1)[0]) for m, v in point.items() if np.size(v) == 1}
            )
            bad = _badness(inputs)
            if best is None or bad > best[0]:
                best = (bad, k, inputs, sources, point)
            k += 1
    assert best is not None
    _, worst, inputs, sources, worst_point = best
    manual = sources.get("manual")
    notes += [n for n in (manual.notes if manual is not None else []) if n.startswith(REFUSED)]
    if n:
        verdict = "fail" if counts["fail"] else ("inconclusive" if counts["pass"] == 0 else "pass")
        odd = _verdict(inputs)[1] if verdict == "fail" else None
    else:
        verdict, odd = _verdict(inputs)
    expect_failures = forward_failures + check_expectations(case)
    if expect_failures:
        verdict = "fail"
    if forward_failures:
        odd = None  # autograd differentiated another function: no gradient is to blame
    result = CaseResult(
        case=case,
        device=options.device,
        dtype=options.dtype,
        verdict=verdict,
        odd_one_out=odd,
        inputs=inputs,
        point=worst_point,
        sources=sources,
        expect_failures=expect_failures,
        samples=replace(per_point, points=k, worst=worst) if n else None,
        seconds=time.perf_counter() - start,
        mode=settings.mode,
        notes=notes if fitted is None else [fitted.note(), *notes],
        settings=check,
        budget=fitted,
    )
    if diagnose and verdict == "fail":
        from ._diagnose import diagnose as diagnose_result  # only a failure pays for its import

        result.diagnostics = diagnose_result(result)
    result.seconds = time.perf_counter() - start
    return result


def check_expectations(case: Case) -> list[str]:
    """The case's expected values against its programs (float64), or autograd for gradients
    of a case without a backward program."""
    if not case.expect:
        return []
    values = run_programs(case, case.inputs, "float64")
    missing = [k for k in case.expect if k not in values and k not in case.inputs]
    if missing and case.autograd_forward is not None:
        grads = autograd_gradients(case, case.inputs, "float64", "cpu").values
        values = {**values, **{f"d{k}": v for k, v in grads.items()}}
    failures = []
    for name, expected in case.expect.items():
        if name not in values:
            failures.append(f"expected {name}: no source computes it (no backward, no autograd)")
            continue
        problem = expected.mismatch(values[name])
        if problem:
            line = f" (line {expected.line})" if expected.line else ""
            failures.append(f"expected {name}{line}: {problem}")
    return failures


def _unique(items: list[Case | CaseError]) -> list[Case | CaseError]:
    """A second case of the same name becomes an error: reports and baselines key on names."""
    first: dict[str, Case] = {}
    out: list[Case | CaseError] = []
    for item in items:
        if isinstance(item, Case):
            if item.name in first:
                other = first[item.name].file
                item = item.error(f"the case name is also used by {other}: names must be unique", key="name")
            else:
                first[item.name] = item
        out.append(item)
    return out


def available_devices(device: str) -> tuple[list[str], dict[str, str]]:
    """The devices of ``--device cpu,cuda`` that can run, and why the others cannot; a
    UsageError when none can (as ``--device cuda`` alone without a GPU always was)."""
    names = device_names(device)
    unavailable = {d: why for d in names if (why := get_device(d).missing())}
    ready = [d for d in names if d not in unavailable]
    if not ready:
        raise UsageError(f"--device {device}: {unavailable[names[0]]}")
    return ready, unavailable


def _check_on_devices(
    case: Case, options: RunOptions, devices: list[str], progress: Progress | None
) -> tuple[list[CaseResult], list[CaseError]]:
    """The case on each device: its first-order result, then the check kinds asked for."""
    results: list[CaseResult] = []
    errors: list[CaseError] = []
    for device in devices:
        try:
            on_device = replace(options, device=device)
            first = check_case(case, on_device, progress)
            results.append(first)
            results.extend(kinds_of(first.case, on_device, first))  # the case as checked: imported
        except CaseError as exc:
            error = exc
        except BaseException as exc:  # noqa: BLE001 - one broken case must not stop the others
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            error = as_case_error(case, exc)
        else:
            continue
        if len(devices) > 1:
            error.message = f"on {device}: {error.message}"
        errors.append(error)
    return results, errors


def kinds_of(case: Case, options: RunOptions, first: CaseResult) -> list[CaseResult]:
    """The further check kinds (second order, forward mode, ...) the options or the case ask for."""
    if options.order < 2 and not options.checks and case.order < 2 and not case.checks:
        return []  # and the kinds (torch.func, forward AD) are never imported
    if first.settings is not None and first.settings.low_precision:
        raise case.error(
            f"the further checks (second order, forward mode, --checks) run in float64 and float32, not in"
            f" {first.settings.label}: ask for them in a float64 or float32 run",
            key="checks",
        )
    from ._kinds import check_kinds  # here: the kinds build on this module's check_case

    return check_kinds(case, options, first)


def run(paths: list[Path], options: RunOptions, pattern: str | None = None, progress: bool | None = None) -> Report:
    """Load every case under ``paths``, check those matching ``pattern`` on every device of
    ``options.device`` (``"cpu,cuda"``), report them all.

    ``progress``: a bar on stderr for a run that lasts (None: only when stderr is a terminal).
    """
    start = time.perf_counter()
    devices, unavailable = available_devices(options.device)
    results: list[CaseResult] = []
    errors: list[CaseError] = []
    comparisons: list[DeviceComparison] = []
    loaded = _unique(select(load_cases(paths, limits=options.limits, trust=options.trust()), pattern))
    bar = progress_bar(len(loaded), progress)
    for item in loaded:
        bar.next_case(item)
        if isinstance(item, CaseError):
            errors.append(item)
            continue
        done, failed = _check_on_devices(item, options, devices, bar.evaluations if bar.enabled else None)
        results += done
        errors += failed
        firsts = [r for r in done if not r.kind]  # devices are compared on first-order gradients
        if len(firsts) > 1:
            comparisons.append(compare_devices(firsts))
    bar.close()
    return Report(results, errors, options, time.perf_counter() - start, unavailable, comparisons)
