"""The numeric source: finite differences (or the complex step) of the forward program alone.

Every method reports an estimate of its own absolute error per element, so a verdict can
be judged against evidence instead of a fixed tolerance. Every evaluation of phi is batched:
the perturbed copies of an input (for every element, offset, direction and sample point) go
through the forward program as one ``torch.func.vmap`` call per chunk, and chunks are sized
from a measured per-evaluation memory cost so that one chunk stays within ``max_memory``.
Evaluation is always in float64 (complex128 for the complex step) whatever the check's dtype.

Three check modes decide which perturbations are made:

* ``full``: every element of every input (one evaluation per element for the complex step,
  six for Richardson, four for central differences);
* ``sample``: ``elements`` random elements per input (as cs231n's ``grad_check_sparse``);
* ``projection``: ``directions`` directional derivatives per input along random directions
  ``w`` (Rademacher signs times a power of two per element), to be compared with the
  analytic gradient projected on ``w``. A wrong element k moves the projection by its error
  times ``|w_k| >= 1`` in every direction, so one direction already sees it; more directions
  only guard against several wrong elements cancelling (probability 2^-K for two).

Steps are powers of two so that ``x + h`` and ``x - h`` are exact for ordinary ``x``; the
step actually taken is recomputed as ``(x + h) - x`` regardless.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..._backends import NON_ANALYTIC
from ..._case import Case
from ..._defaults import AUTO_FULL_ELEMENTS, DEFAULT_DIRECTIONS, DEFAULT_ELEMENTS, DEFAULT_MAX_MEMORY, MODES
from .. import Gradients, Projection
from .calls import CallEvaluator, default_jobs
from .differences import RUNGS
from .elements import PointRounding, complex_elements, difference_elements
from .noise import ECNOISE_POINTS, SIGMAS, SPACINGS, measure_noise, term_floor
from .projection import project_complex, project_differences
from .runner import Objective, Progress, Runner, note
from .steps import resolve_method

__all__ = [
    "AUTO_FULL_ELEMENTS",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_ELEMENTS",
    "DEFAULT_MAX_MEMORY",
    "MODES",
    "NumericSettings",
    "PointRounding",
    "numeric_gradients",
    "numeric_gradients_at",
    "planned_evaluations",
    "resolve_mode",
]


@dataclass(frozen=True)
class NumericSettings:
    method: str = "auto"
    device: str = "cpu"
    max_memory: int = DEFAULT_MAX_MEMORY
    mode: str = "full"
    elements: int = DEFAULT_ELEMENTS
    directions: int = DEFAULT_DIRECTIONS
    seed: int = 0
    progress: Progress | None = None
    jobs: int | None = None  # processes for a callable's evaluations (None: every core)
    # the check's dtype: what accuracy is good enough for the first pass of --numeric auto
    dtype: str = "float64"


def resolve_mode(mode: str, sizes: Mapping[str, int]) -> str:
    """``auto`` is ``full`` up to AUTO_FULL_ELEMENTS input elements in all, else ``projection``."""
    if mode == "auto":
        return "full" if sum(sizes.values()) <= AUTO_FULL_ELEMENTS else "projection"
    return mode


def numeric_gradients(case: Case, point: Mapping[str, np.ndarray], settings: NumericSettings) -> Gradients:
    return numeric_gradients_at(case, [point], settings)[0]


def _check_method(case: Case, method: str) -> None:
    if method == "exact" and case.forward.program is None:
        raise case.error(
            f"--numeric exact needs a forward program (the referee evaluates it at 50 digits); this one is the"
            f" callable `{case.forward.label}`",
            key="forward",
        )
    if method == "complex-step" and not case.forward.analytic:
        kinked = sorted(case.forward.functions & NON_ANALYTIC)
        why = f"this one calls {', '.join(kinked)}" if kinked else "this one is a Python callable"
        raise case.error(
            f"the complex step needs an analytic forward program; {why} (--numeric auto picks Richardson for it)",
            key="forward",
        )


def _selected(case: Case, mode: str, settings: NumericSettings) -> dict[str, np.ndarray]:
    """The flat indices each input checks in full and sample mode."""
    rng = np.random.default_rng(settings.seed)
    chosen = {}
    for name, x in case.inputs.items():
        n = int(np.asarray(x).size)
        if mode == "sample" and settings.elements < n:
            chosen[name] = np.sort(rng.choice(n, settings.elements, replace=False))
        else:
            chosen[name] = np.arange(n)
    return chosen


def planned_evaluations(case: Case, points: int, settings: NumericSettings) -> int:
    """About how many evaluations of phi a numeric call makes (for progress): the first ladder
    of every element; the few that descend further add to it as they go."""
    method = resolve_method(settings.method, case.forward.analytic)
    mode = resolve_mode(settings.mode, {k: int(np.asarray(v).size) for k, v in case.inputs.items()})
    kinks = not case.forward.analytic
    if method == "complex-step":
        per = 1 if case.forward.program is not None else 2
    elif settings.method == "auto":
        per = 4  # the first pass (.first_pass); the ladders of the elements it leaves add as they go
    else:
        per = 2 * (RUNGS if kinks or method == "richardson" else 2)
    lines = 2 * ECNOISE_POINTS * len(SPACINGS)
    noise = 0 if case.forward.program is not None or method == "complex-step" else lines
    if mode == "projection":
        return points * (1 + len(case.inputs) * (settings.directions * per + 1 + noise))
    selected = _selected(case, mode, settings)
    return points * (1 + per * sum(len(v) for v in selected.values()) + noise * len(selected))


def numeric_gradients_at(
    case: Case,
    points: Sequence[Mapping[str, np.ndarray]],
    settings: NumericSettings,
    rounding: Sequence[PointRounding] | None = None,
) -> list[Gradients]:
    """The numeric source at every point of ``points``, every evaluation batched across points.

    ``rounding`` (one per point, where the forward is a program) bounds the rounding of phi
    and of the complex step's derivatives; without it the noise of phi is measured."""
    start = time.perf_counter()
    analytic = case.forward.analytic
    method = resolve_method(settings.method, analytic)
    _check_method(case, method)
    sizes = {k: int(np.asarray(v).size) for k, v in points[0].items()}
    mode = resolve_mode(settings.mode, sizes)
    if method == "exact":
        return _exact(case, points, settings, mode)
    obj = Objective(case, points, settings.device, complex_=method == "complex-step")
    planned = planned_evaluations(case, len(points), settings)
    if through_calls(case, method, settings):
        runner = Runner(obj, 0, settings.max_memory, settings.progress, planned)
        runner.calls = CallEvaluator(case, points, settings.jobs or default_jobs(), runner._tick, note)
    else:
        phi0, scale0, forward_bytes = obj.probe()
        runner = Runner(obj, forward_bytes, settings.max_memory, settings.progress, planned)
    try:
        if len(points) == 1 and runner.calls is None:
            f0, phi_scale = np.array([phi0]), np.array([scale0])
            runner._tick(1)
        else:
            fz, phi_scale, _ = runner.run(None, np.arange(len(points)), np.zeros(len(points)), magnitudes=True)
            f0 = fz.real
        out = _gradients(case, points, settings, rounding, runner, method, mode, f0, phi_scale)
    finally:
        runner.close()
    if settings.device != "cpu":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / len(points)
    for g in out:
        g.seconds = seconds
    return out


def through_calls(case: Case, method: str, settings: NumericSettings) -> bool:
    """Whether phi goes through :class:`.calls.CallEvaluator`: a callable that does not run
    under vmap, differenced in float64 on the CPU."""
    return (
        case.forward.call is not None
        and not case.forward.vmap
        and method != "complex-step"
        and settings.device == "cpu"
    )


def _gradients(
    case: Case,
    points: Sequence[Mapping[str, np.ndarray]],
    settings: NumericSettings,
    rounding: Sequence[PointRounding] | None,
    runner: Runner,
    method: str,
    mode: str,
    f0: np.ndarray,
    phi_scale: np.ndarray,
) -> list[Gradients]:
    obj = runner.obj
    analytic = case.forward.analytic
    P = len(points)
    kinks = method != "complex-step" and not analytic
    out = [
        Gradients("numeric", {}, "float64", settings.device, error={}, kinks={}, method=method, mode=mode)
        for _ in range(P)
    ]
    X_of = {name: np.stack([np.asarray(p[name], dtype=np.float64).reshape(-1) for p in points]) for name in obj.names}
    noise = np.zeros(P)
    if method != "complex-step":
        noise = _noise(runner, X_of, f0, phi_scale, rounding, settings.seed)
    chosen = _selected(case, mode, settings) if mode != "projection" else {}
    # --numeric auto tries the cheap two-step first pass before any ladder (.first_pass)
    first_pass = settings.dtype if settings.method == "auto" else None
    rng = np.random.default_rng(settings.seed)
    for name in obj.names:
        shape = np.asarray(points[0][name]).shape
        X = X_of[name]
        bounds = None
        if rounding is not None and all(r.derivative is not None for r in rounding):
            bounds = [np.asarray(r.derivative[name], dtype=np.float64).reshape(-1) for r in rounding]  # type: ignore[index]
        if mode == "projection":
            K = settings.directions
            signs = rng.choice(np.array([-1.0, 1.0]), size=(K, X.shape[1]))
            if method == "complex-step":
                proj = project_complex(runner, name, X, signs, bounds)
            else:
                proj = project_differences(
                    runner, name, X, signs, method, f0, noise, kinks, rounding is None, first_pass
                )
            for p, g in enumerate(out):
                d, e, k, w = proj[p]
                g.projections = g.projections or {}
                g.projections[name] = Projection(w.reshape(K, *shape), d, e, k)
                g.values[name] = np.full(shape, np.nan)
                assert g.error is not None and g.kinks is not None
                g.error[name] = np.full(shape, np.nan)
                g.kinks[name] = np.zeros(shape, dtype=bool)
                g.checked = g.checked or {}
                g.checked[name] = np.zeros(shape, dtype=bool)
            continue
        idx = chosen[name]
        if method == "complex-step":
            d, e = complex_elements(runner, name, X, idx, phi_scale, bounds)
            kink = np.zeros(d.shape, dtype=bool)
        else:
            d, e, kink = difference_elements(
                runner, name, X, idx, method, f0, noise, kinks, rounding is None, first_pass
            )
        for p, g in enumerate(out):
            values = np.full(X.shape[1], np.nan)
            errors = np.full(X.shape[1], np.nan)
            kinked = np.zeros(X.shape[1], dtype=bool)
            values[idx], errors[idx], kinked[idx] = d[p], e[p], kink[p]
            g.values[name] = values.reshape(shape)
            assert g.error is not None and g.kinks is not None
            g.error[name] = errors.reshape(shape)
            g.kinks[name] = kinked.reshape(shape)
            if mode == "sample":
                mask = np.zeros(X.shape[1], dtype=bool)
                mask[idx] = True
                g.checked = g.checked or {}
                g.checked[name] = mask.reshape(shape)
    for p, g in enumerate(out):
        g.notes.append(f"{runner.done} evaluations of phi in chunks of at most {runner.largest_chunk}")
        if method != "complex-step":
            how = "bounded from the program's terms" if rounding is not None else "measured"
            g.notes.append(f"rounding noise of phi ({how}): {noise[p]:.2e}")
    return out


def _exact(
    case: Case, points: Sequence[Mapping[str, np.ndarray]], settings: NumericSettings, mode: str
) -> list[Gradients]:
    """``--numeric exact``: the referee's gradient at every chosen element (sample mode: the
    sampled ones; projection mode has no elements, so every one is computed)."""
    from .referee import referee_gradient  # mpmath loads only for this method

    chosen = _selected(case, "sample" if mode == "sample" else "full", settings)
    out = []
    for point in points:
        start = time.perf_counter()
        truth = referee_gradient(case, point, chosen)
        g = Gradients(
            "numeric",
            truth.values,
            "float64",
            settings.device,
            error=truth.error,
            kinks=truth.kinks,
            method=f"exact ({truth.digits}-digit referee)",
            mode="sample" if mode == "sample" else "full",
            seconds=time.perf_counter() - start,
        )
        if mode == "sample":
            g.checked = {k: np.isfinite(v) for k, v in truth.values.items()}
        out.append(g)
        if settings.progress is not None:
            settings.progress(len(out), len(points))
    return out


def _noise(
    runner: Runner,
    X_of: Mapping[str, np.ndarray],
    f0: np.ndarray,
    phi_scale: np.ndarray,
    rounding: Sequence[PointRounding] | None,
    seed: int,
) -> np.ndarray:
    """A bound on the rounding error of one evaluation of phi at each point."""
    floor = np.array([term_floor(float(s)) for s in phi_scale])
    if rounding is not None:
        # the first-order bound leaves out second-order terms: twice it covers them
        return np.maximum(2 * np.array([r.phi for r in rounding]), floor)
    measured = np.zeros(len(f0))
    for k, (name, X) in enumerate(X_of.items()):
        measured = np.maximum(measured, measure_noise(runner, name, X, f0, seed + k))
    return np.maximum(SIGMAS / 2 * measured, floor)
