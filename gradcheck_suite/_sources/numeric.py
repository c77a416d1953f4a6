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

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import vmap
from torch.overrides import TorchFunctionMode

from .._backends import NON_ANALYTIC, TorchBackend
from .._case import Case
from . import Gradients, Projection

__all__ = [
    "AUTO_FULL_ELEMENTS",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_ELEMENTS",
    "DEFAULT_MAX_MEMORY",
    "METHODS",
    "MODES",
    "NumericSettings",
    "evaluation_cost",
    "numeric_gradients",
    "numeric_gradients_at",
    "resolve_method",
    "resolve_mode",
]

METHODS = ("auto", "central", "richardson", "complex-step")
MODES = ("auto", "full", "sample", "projection")
EPS = float(np.finfo(np.float64).eps)
DEFAULT_MAX_MEMORY = 1 << 30  # bytes for one batch of perturbed evaluations
DEFAULT_ELEMENTS = 16
DEFAULT_DIRECTIONS = 4
# `--mode auto` checks every element while the inputs of a case hold at most this many
# elements together, and projects above. A full check costs one forward pass per element
# (six with Richardson); at 2^14 elements a 128x128 matmul-sized program still takes
# seconds on two cores, and beyond it the cost grows with the square of the size.
AUTO_FULL_ELEMENTS = 1 << 14

# A chunk never holds more than this, whatever the budget: past it batching amortises no more
# per-call overhead, and the chunk's tensors spill the caches (64x64 complex matmuls, 8192
# evaluations on two cores: 0.22 s in chunks of 16 MiB per tensor, 0.6 s in chunks of 64 MiB).
CHUNK_BYTES = 128 << 20

Progress = Callable[[int, int], None]  # (evaluations done, evaluations planned)


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


def resolve_method(method: str, analytic: bool) -> str:
    """``auto`` takes the most accurate method that applies to the program."""
    if method == "auto":
        return "complex-step" if analytic else "richardson"
    return method


def resolve_mode(mode: str, sizes: Mapping[str, int]) -> str:
    """``auto`` is ``full`` up to AUTO_FULL_ELEMENTS input elements in all, else ``projection``."""
    if mode == "auto":
        return "full" if sum(sizes.values()) <= AUTO_FULL_ELEMENTS else "projection"
    return mode


def _pow2(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(x)))


# Relative base steps: the optimum for each method's truncation order in float64
# (eps^(1/3) for second order; eps^(1/7) for the sixth order the Richardson table reaches).
_BASE_STEP = {"central": EPS ** (1 / 3), "richardson": EPS ** (1 / 7)}
_MULTIPLIERS = {
    "central": (1.0, 2.0),
    "richardson": (1.0, 0.5, 0.25),
}
# Where the program has kinks, every difference method steps at h, h/2, h/4 and h/8: the
# first three serve Richardson (and the first two central differences), all four the kink test.
_KINK_MULTIPLIERS = (1.0, 0.5, 0.25, 0.125)


def _steps(method: str, detect: bool) -> tuple[float, ...]:
    return _KINK_MULTIPLIERS if detect else _MULTIPLIERS[method]
# Im phi(x + ih) / h has no subtraction, so h can be tiny: its truncation error
# h^2 |phi'''| / 6 is far below rounding. A power of two keeps the division exact.
_COMPLEX_STEP = 2.0**-60


class _Counter(TorchFunctionMode):
    """Adds up the bytes of every tensor each torch call takes and returns.

    Inputs count too: under vmap an operation may materialise a batched copy of an operand
    that only one side of it varies (matmul expands the unbatched one for bmm), so the sum
    of operands and results bounds what one evaluation can hold at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in (*args, *(out if isinstance(out, (tuple, list)) else (out,))):
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


class _Objective:
    """phi(inputs) = sum over outputs of sum(upstream * output): the scalar whose gradient
    every source reports.

    Holds the inputs at every point as tensors of shape (points, *shape).
    """

    def __init__(self, case: Case, points: Sequence[Mapping[str, np.ndarray]], device: str, complex_: bool) -> None:
        self.complex = complex_
        self.case = case
        self.be = TorchBackend(torch.complex128 if complex_ else torch.float64, device)
        self.names = list(points[0])
        self.base = {
            k: self.be.asarray(np.stack([np.asarray(p[k], dtype=np.float64) for p in points])) for k in self.names
        }
        self.points = len(points)
        # one upstream per output (None: ones)
        self.upstreams = {o: None if u is None else self.be.asarray(u) for o, u in case.upstreams.items()}

    def __call__(self, inputs: Mapping[str, torch.Tensor], magnitudes: bool = True) -> tuple[torch.Tensor, ...]:
        """phi, and (``magnitudes``) the absolute sums of the real and imaginary parts of its terms."""
        values = self.case.forward.run(inputs, self.be)
        outs = [self.be._t(values[o]) for o in self.upstreams]
        terms = [out if up is None else up * out for out, up in zip(outs, self.upstreams.values(), strict=True)]
        phi = torch.sum(terms[0])
        for t in terms[1:]:
            phi = phi + torch.sum(t)
        if not magnitudes:  # most evaluations need phi alone: skip two passes over the output
            return (phi,)
        def total(parts: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.stack([torch.sum(torch.abs(t)) for t in parts]).sum()

        if self.complex:
            return phi, total([t.real for t in terms]), total([t.imag for t in terms])
        size = total(terms)
        return phi, size, torch.zeros((), dtype=phi.dtype, device=phi.device)

    def probe(self) -> tuple[float, float, int]:
        """phi and its scale at the first point, and the bytes one evaluation touches.

        The probe runs in float64 even for the complex step: at the unperturbed point the
        imaginary parts are zero, and a complex evaluation holds the same tensors at twice
        the bytes, for up to four times the work (a 1024 matmul: 16 ms real, 60 ms complex).
        """
        real = _Objective.__new__(_Objective)
        real.complex, real.case = False, self.case
        real.be = TorchBackend(torch.float64, self.be.device)
        real.upstreams = {o: None if u is None else u.real.contiguous() for o, u in self.upstreams.items()}
        inputs = {k: v[0].real.contiguous() for k, v in self.base.items()}
        with _Counter() as counter:
            phi, scale, _ = real(inputs)
        return float(phi), float(scale), counter.bytes * (2 if self.complex else 1)

    def input_bytes(self, name: str) -> int:
        v = self.base[name]
        return int(v[0].numel() * v.element_size())


def evaluation_cost(obj: _Objective, name: str | None, forward_bytes: int, direction: bool = False) -> int:
    """Bytes one evaluation in a vmapped chunk holds: the forward's tensors (operands and
    results of every call), the perturbed copy of ``name`` (twice for a direction, whose
    scaled copy is a temporary), and the gathered other inputs when points differ."""
    cost = forward_bytes + 64
    if name is not None:
        cost += obj.input_bytes(name) * (2 if direction else 1)
    if obj.points > 1:
        cost += sum(obj.input_bytes(k) for k in obj.names if k != name)
    return cost


class _Runner:
    """Evaluates phi over rows of perturbations in chunks within the memory budget."""

    def __init__(self, obj: _Objective, forward_bytes: int, budget: int, progress: Progress | None, planned: int):
        self.obj = obj
        self.forward_bytes = forward_bytes
        self.budget = budget
        self.progress = progress
        self.planned = planned
        self.done = 0
        self.largest_chunk = 0

    def chunk(self, name: str | None, direction: bool = False) -> int:
        cost = evaluation_cost(self.obj, name, self.forward_bytes, direction)
        return max(1, min(self.budget, CHUNK_BYTES) // cost)

    def _tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.planned)

    def run(
        self,
        name: str | None,
        point: np.ndarray,
        offset: np.ndarray,
        element: np.ndarray | None = None,
        direction: np.ndarray | None = None,
        directions: torch.Tensor | None = None,
        magnitudes: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """phi at base[point[r]] + offset[r] * (e_element[r] or directions[direction[r]]) for each row r.

        ``offset`` is real; the complex step passes it as the imaginary part. Returns phi and
        the absolute sums of the real and imaginary parts of its terms (``magnitudes``; else
        zeros), one per row.
        """
        obj = self.obj
        rows = len(point)
        out = [np.empty(rows, dtype=np.complex128 if obj.complex else np.float64), np.zeros(rows), np.zeros(rows)]
        size = self.chunk(name, directions is not None)
        self.largest_chunk = max(self.largest_chunk, min(size, rows))
        others = [k for k in obj.names if k != name]
        batched_others = obj.points > 1
        scale = 1j if obj.complex else 1.0

        def one(x: torch.Tensor | None, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
            env = dict(zip(others, rest, strict=True)) if batched_others else {k: obj.base[k][0] for k in others}
            if name is not None and x is not None:
                env[name] = x
            return obj(env, magnitudes)

        in_dims = (0 if name is not None else None, *([0] * len(others) if batched_others else []))
        f = vmap(one, in_dims=in_dims) if obj.case.forward.vmap else _looped(one, in_dims)
        for start in range(0, rows, size):
            stop = min(rows, start + size)
            p = torch.as_tensor(point[start:stop], device=obj.be.device)
            x = None
            if name is not None:
                x = obj.base[name][p]  # a fresh (chunk, *shape) copy: the only big allocation made here
                flat = x.view(stop - start, -1)
                off = torch.as_tensor(offset[start:stop], device=obj.be.device) * scale
                if element is not None:
                    # one element per row: an index_put on the copy, no dense (rows, n) delta
                    flat[torch.arange(stop - start), torch.as_tensor(element[start:stop])] += off
                else:
                    assert direction is not None and directions is not None
                    for r in range(stop - start):
                        flat[r].add_(directions[int(direction[start + r])].view(-1) * off[r])
            rest = [obj.base[k][p] for k in others] if batched_others else []
            if name is None and not batched_others:
                # nothing varies between rows: one evaluation serves them all
                vals = [v.expand(stop - start) for v in obj({k: obj.base[k][0] for k in others}, magnitudes)]
            else:
                vals = list(f(x, *rest))
            for dst, v in zip(out, vals, strict=False):  # phi alone fills only the first
                v = v.detach().cpu()
                dst[start:stop] = v.numpy() if dst.dtype == np.complex128 else v.real.numpy()
            # drop this chunk's copies before the next chunk allocates its own
            del x, rest, vals
            self._tick(stop - start)
        return out[0], out[1], out[2]


def _looped(one: Callable[..., tuple[torch.Tensor, ...]], in_dims: tuple[int | None, ...]) -> Callable[..., Any]:
    """vmap's contract, one row at a time: callables (numpy code, custom Functions) may not
    run under vmap."""

    def f(*args: Any) -> tuple[torch.Tensor, ...]:
        rows = next(len(a) for a, d in zip(args, in_dims, strict=True) if d == 0)
        results = [one(*(a[r] if d == 0 else a for a, d in zip(args, in_dims, strict=True))) for r in range(rows)]
        return tuple(torch.stack(parts) for parts in zip(*results, strict=True))

    return f


def numeric_gradients(case: Case, point: Mapping[str, np.ndarray], settings: NumericSettings) -> Gradients:
    return numeric_gradients_at(case, [point], settings)[0]


def _check_method(case: Case, method: str) -> None:
    if method == "complex-step" and not case.forward.analytic:
        kinked = sorted(case.forward.functions & NON_ANALYTIC)
        why = f"this one calls {', '.join(kinked)}" if kinked else "this one is a Python callable"
        raise case.error(
            f"the complex step needs an analytic forward program; {why} (--numeric auto picks"
            " Richardson for it)",
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
    """How many evaluations of phi a numeric call will make (for progress)."""
    method = resolve_method(settings.method, case.forward.analytic)
    mode = resolve_mode(settings.mode, {k: int(np.asarray(v).size) for k, v in case.inputs.items()})
    per = (
        1 if method == "complex-step" else 2 * len(_steps(method, not case.forward.analytic))
    )
    if mode == "projection":
        return points * (1 + len(case.inputs) * (settings.directions * per + (1 if method == "complex-step" else 0)))
    return points * (1 + per * sum(len(v) for v in _selected(case, mode, settings).values()))


def numeric_gradients_at(
    case: Case, points: Sequence[Mapping[str, np.ndarray]], settings: NumericSettings
) -> list[Gradients]:
    """The numeric source at every point of ``points``, every evaluation batched across points."""
    start = time.perf_counter()
    analytic = case.forward.analytic
    method = resolve_method(settings.method, analytic)
    _check_method(case, method)
    sizes = {k: int(np.asarray(v).size) for k, v in points[0].items()}
    mode = resolve_mode(settings.mode, sizes)
    obj = _Objective(case, points, settings.device, complex_=method == "complex-step")
    phi0, scale0, forward_bytes = obj.probe()
    runner = _Runner(
        obj, forward_bytes, settings.max_memory, settings.progress, planned_evaluations(case, len(points), settings)
    )
    P = len(points)
    if P == 1:
        f0, phi_scale = np.array([phi0]), np.array([scale0])
        runner._tick(1)
    else:
        fz, phi_scale, _ = runner.run(None, np.arange(P), np.zeros(P), magnitudes=True)
        f0 = fz.real
    detect = method != "complex-step" and not analytic
    out = [
        Gradients("numeric", {}, "float64", settings.device, error={}, kinks={}, method=method, mode=mode)
        for _ in range(P)
    ]
    chosen = _selected(case, mode, settings) if mode != "projection" else {}
    rng = np.random.default_rng(settings.seed)
    for name in obj.names:
        shape = np.asarray(points[0][name]).shape
        X = np.stack([np.asarray(p[name], dtype=np.float64).reshape(-1) for p in points])  # (P, n)
        if mode == "projection":
            K = settings.directions
            signs = rng.choice(np.array([-1.0, 1.0]), size=(K, X.shape[1]))
            if method == "complex-step":
                proj = _project_complex(runner, name, X, signs)
            else:
                proj = _project_differences(runner, name, X, signs, method, phi_scale, f0 if detect else None)
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
            d, e = _complex_step(runner, name, X, idx, phi_scale)
            kink = np.zeros(d.shape, dtype=bool)
        else:
            d, e, kink = _differences(runner, name, X, idx, method, phi_scale, f0 if detect else None)
        for p, g in enumerate(out):
            values = np.full(X.shape[1], np.nan)
            errors = np.full(X.shape[1], np.nan)
            kinks = np.zeros(X.shape[1], dtype=bool)
            values[idx], errors[idx], kinks[idx] = d[p], e[p], kink[p]
            g.values[name] = values.reshape(shape)
            assert g.error is not None and g.kinks is not None
            g.error[name] = errors.reshape(shape)
            g.kinks[name] = kinks.reshape(shape)
            if mode == "sample":
                mask = np.zeros(X.shape[1], dtype=bool)
                mask[idx] = True
                g.checked = g.checked or {}
                g.checked[name] = mask.reshape(shape)
    if method == "complex-step" and mode != "projection":
        # A derivative that cancels to near zero still carries the rounding of the terms it
        # cancelled; the case's largest derivative at the point stands in for them, as in
        # _compare's rule (benchmarks/numerics.py found the estimate 2.2x short without it).
        for g in out:
            finite = [np.abs(v[np.isfinite(v)]) for v in g.values.values()]
            scale = max((float(f.max()) for f in finite if f.size), default=0.0)
            assert g.error is not None
            g.error = {k: e + 16 * EPS * scale for k, e in g.error.items()}
    if settings.device != "cpu":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / P
    for g in out:
        g.seconds = seconds
        g.notes.append(f"{runner.done} evaluations of phi in chunks of at most {runner.largest_chunk}")
    return out


def _rows(P: int, idx: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Point and element of each row, ordered point-major, then element, then offset."""
    point = np.repeat(np.arange(P), len(idx) * q)
    element = np.tile(np.repeat(idx, q), P)
    return point, element


def _complex_step(
    runner: _Runner, name: str, X: np.ndarray, idx: np.ndarray, phi_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h = _COMPLEX_STEP
    P = X.shape[0]
    point, element = _rows(P, idx, 1)
    fx, _, _ = runner.run(name, point, np.full(len(point), h), element=element)
    d = fx.reshape(P, len(idx)).imag / h
    # What is left is the rounding of the imaginary part, relative to the size of the terms
    # that make it up; phi_scale / |x| stands in for those terms where d itself cancels.
    # (numeric_gradients_at adds the case's gradient scale once every input is done.)
    terms = np.abs(d) + phi_scale[:, None] / np.maximum(np.abs(X[:, idx]), 1.0)
    return d, 16 * EPS * terms


def _differences(
    runner: _Runner,
    name: str,
    X: np.ndarray,
    idx: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mults = _steps(method, f0 is not None)
    x = X[:, idx]  # (P, m)
    h = _pow2(_BASE_STEP[method] * np.maximum(np.abs(x), 1.0))
    plus = np.stack([(x + m * h) - x for m in mults], axis=2)  # (P, m, q)
    minus = np.stack([x - (x - m * h) for m in mults], axis=2)
    offsets = np.concatenate([plus, -minus], axis=2)
    q = len(mults)
    point, element = _rows(X.shape[0], idx, 2 * q)
    f, _, _ = runner.run(name, point, offsets.reshape(-1), element=element)
    f = f.reshape(offsets.shape)
    fp, fm = f[..., :q], f[..., q:]
    scale = phi_scale[:, None, None]
    return _extrapolate(fp, fm, plus, minus, method, scale, None if f0 is None else f0[:, None, None])


def _extrapolate(
    fp: np.ndarray,
    fm: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Derivative, error estimate and kink flag from phi at +-steps (last axis: the steps)."""
    mults = _steps(method, f0 is not None)
    D = (fp - fm) / (plus + minus)  # central differences at each step
    noise = 4 * EPS * phi_scale / np.minimum(plus, minus)  # rounding in phi, per step
    if method == "central":
        # D(s) = phi' + c s^2 + ..., so the difference of two steps measures c. Twice that:
        # the h^4 term can make the two-step difference understate it (benchmarks/numerics.py
        # saw true errors up to 1.3x the plain estimate).
        d = D[..., 0]
        err = 2 * np.abs(D[..., 1] - D[..., 0]) / abs(mults[1] ** 2 - 1) + 2 * noise[..., 0]
    else:
        r1a = (4 * D[..., 1] - D[..., 0]) / 3
        r1b = (4 * D[..., 2] - D[..., 1]) / 3
        d = (16 * r1b - r1a) / 15
        # |d - r1b| bounds r1b's fourth-order error, a generous bound on d's sixth-order one;
        # extrapolation multiplies the noise of the smallest step by at most 16/15 * 5/3.
        err = np.abs(d - r1b) + 2 * noise[..., 2]
    kink = np.zeros(d.shape, dtype=bool)
    if f0 is not None:
        # Second differences J(s) = (f(x+s) - 2 f(x) + f(x-s)) / s. Where phi is smooth they
        # follow J(s) = a s + b s^3 + O(s^5), so any three consecutive steps s, s/2, s/4 satisfy
        # J(s) - 10 J(s/2) + 16 J(s/4) = O(s^5): relative to the J's, about 1e-10 for smooth
        # functions at these steps. For a kink at any distance in (0, h], the larger of the two
        # residuals, each over its own J's largest value, is at least 1 (lowest at d = 4h/9;
        # one residual alone can vanish, near d = 9h/19), so a threshold of 0.1 separates them.
        J = (fp + fm - 2 * f0) / plus
        r = [np.abs(J[..., k] - 10 * J[..., k + 1] + 16 * J[..., k + 2]) for k in (0, 1)]
        m = [np.max(np.abs(J[..., k : k + 3]), axis=-1) for k in (0, 1)]
        biggest = np.max(np.abs(np.where(np.isfinite(d), d, 0.0)), axis=-1, keepdims=True, initial=0.0)
        # rounding: each J(s) carries 4 eps phi / s, so the residual on h/2 .. h/8 about
        # 680 eps phi / h; 4x that, and a kink worth reporting moves the slope by 1e-7 at least
        floor = np.maximum(2800 * EPS * phi_scale[..., 0] / plus[..., 0], 1e-7 * (np.abs(d) + biggest))
        kink = ((r[0] > 0.1 * m[0]) | (r[1] > 0.1 * m[1])) & (np.maximum(r[0], r[1]) > floor)
    err = np.where(~np.isfinite(d), math.inf, err)
    return d, err, kink


def _directions(X: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(P, K, n): Rademacher signs times a power of two near each element's magnitude, so a
    step along the direction is relative to every element (as the per-element steps are)."""
    return signs[None, :, :] * _pow2(np.maximum(np.abs(X), 1.0))[:, None, :]


def _project_complex(
    runner: _Runner, name: str, X: np.ndarray, signs: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    P, n = X.shape
    K = signs.shape[0]
    W = _directions(X, signs)
    h = _COMPLEX_STEP
    results = []
    for p in range(P):
        # One more evaluation along 3 w_0: in exact arithmetic it is three times the first,
        # and 3h is no power of two, so every rounding differs: their gap samples the
        # rounding error that no a-priori bound sees (cancellation inside the program).
        dirs = torch.as_tensor(np.concatenate([W[p], 3 * W[p][:1]]), device=runner.obj.be.device)
        rows = K + 1
        fx, _, imag_terms = runner.run(
            name, np.full(rows, p), np.full(rows, h), direction=np.arange(rows), directions=dirs, magnitudes=True
        )
        d = fx.imag / h
        defect = abs(d[K] / 3 - d[0])
        # The rounding of the imaginary part is relative to the terms summed into it: the
        # program's output terms (measured, imag_terms) and the result itself.
        err = 16 * EPS * (np.abs(d[:K]) + imag_terms[:K] / h) + 2 * defect
        results.append((d[:K], err, np.zeros(K, dtype=bool), W[p]))
    return results


def _project_differences(
    runner: _Runner,
    name: str,
    X: np.ndarray,
    signs: np.ndarray,
    method: str,
    phi_scale: np.ndarray,
    f0: np.ndarray | None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    P, n = X.shape
    K = signs.shape[0]
    W = _directions(X, signs)
    mults = np.array(_steps(method, f0 is not None))
    # w already carries each element's magnitude, so the step along it is the base step.
    t = float(_pow2(np.array(_BASE_STEP[method])))
    steps = np.concatenate([t * mults, -t * mults])
    q = len(mults)
    results = []
    for p in range(P):
        dirs = torch.as_tensor(W[p], device=runner.obj.be.device)
        direction = np.repeat(np.arange(K), 2 * q)
        f, _, _ = runner.run(name, np.full(len(direction), p), np.tile(steps, K), direction=direction, directions=dirs)
        f = f.reshape(K, 2 * q)
        plus = np.broadcast_to(t * mults, (K, q))
        d, e, k = _extrapolate(
            f[:, :q],
            f[:, q:],
            plus,
            plus,
            method,
            np.full((K, 1), phi_scale[p]),
            None if f0 is None else np.full((K, 1), f0[p]),
        )
        results.append((d, e, k, W[p]))
    return results
