"""The numeric source: finite differences (or the complex step) of the forward program alone.

Every method reports an estimate of its own absolute error per element, so a verdict can
be judged against evidence instead of a fixed tolerance. All perturbations of one input are
evaluated in batches through ``torch.func.vmap``, in chunks that keep memory within a
budget, always in float64 (complex128 for the complex step) whatever the check's dtype.

Steps are powers of two so that ``x + h`` and ``x - h`` are exact for ordinary ``x``; the
step actually taken is recomputed as ``(x + h) - x`` regardless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import vmap

from .._backends import NON_ANALYTIC, TorchBackend
from .._case import Case
from . import Gradients

__all__ = ["METHODS", "NumericSettings", "numeric_gradients", "resolve_method"]

METHODS = ("auto", "central", "richardson", "complex-step")
EPS = float(np.finfo(np.float64).eps)
DEFAULT_MAX_MEMORY = 1 << 30  # bytes for one batch of perturbed evaluations


@dataclass(frozen=True)
class NumericSettings:
    method: str = "auto"
    device: str = "cpu"
    max_memory: int = DEFAULT_MAX_MEMORY


def resolve_method(method: str, analytic: bool) -> str:
    """``auto`` takes the most accurate method that applies to the program."""
    if method == "auto":
        return "complex-step" if analytic else "richardson"
    return method


def _pow2(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(x)))


# Relative base steps: the optimum for each method's truncation order in float64
# (eps^(1/3) for second order; eps^(1/7) for the sixth order the Richardson table reaches).
_BASE_STEP = {"central": EPS ** (1 / 3), "richardson": EPS ** (1 / 7)}
_MULTIPLIERS = {
    "central": (1.0, 2.0),
    "richardson": (1.0, 0.5, 0.25),
}


class _Objective:
    """phi(inputs) = sum(upstream * output): the scalar whose gradient every source reports."""

    def __init__(self, case: Case, point: Mapping[str, np.ndarray], device: str, complex_: bool) -> None:
        dtype = torch.complex128 if complex_ else torch.float64
        self.case = case
        self.be = TorchBackend(dtype, device)
        self.base = {k: self.be.asarray(v) for k, v in point.items()}
        # one upstream per output (None: ones); phi sums upstream * output over all of them
        self.upstreams = {o: None if u is None else self.be.asarray(u) for o, u in case.upstreams.items()}

    def _terms(self, values: Mapping[str, object]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [(self.be._t(values[o]), up) for o, up in self.upstreams.items()]

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = self.case.forward.run(inputs, self.be)
        terms = [torch.sum(out if up is None else up * out) for out, up in self._terms(values)]
        phi = terms[0]
        for t in terms[1:]:
            phi = phi + t
        return phi

    def magnitude(self) -> tuple[float, int]:
        """sum |upstream * output| (the scale of rounding in phi) and bytes one evaluation holds."""
        values = self.case.forward.run(self.base, self.be)
        terms = self._terms(values)
        scale = sum(float(torch.sum(torch.abs(out if up is None else up * out)).real) for out, up in terms)
        held = sum(v.numel() * v.element_size() for v in values.values() if isinstance(v, torch.Tensor))
        return scale, int(held)

    def batched(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        base = self.base

        def one(delta: torch.Tensor) -> torch.Tensor:
            return self({**base, name: base[name] + delta})

        if not self.case.forward.vmap:
            # a callable (numpy code, a custom Function) may not run under vmap: one at a time
            return lambda deltas: torch.stack([one(d) for d in deltas])
        return vmap(one)


def _evaluate(
    obj: _Objective, name: str, offsets: np.ndarray, imaginary: bool, chunk: int
) -> np.ndarray:
    """phi at x + offsets[j, k] * e_j for every element j and offset k: shape (n, q)."""
    x = obj.base[name]
    n, q = offsets.shape
    f = obj.batched(name)
    result = np.empty((n, q), dtype=np.complex128 if imaginary else np.float64)
    off = torch.as_tensor(offsets, dtype=torch.float64, device=x.device)
    per_element = max(1, chunk // q)
    for start in range(0, n, per_element):
        stop = min(n, start + per_element)
        m = stop - start
        deltas = torch.zeros((m, q, n), dtype=x.dtype, device=x.device)
        idx = torch.arange(start, stop, device=x.device)
        vals = off[start:stop].to(x.dtype)
        if imaginary:
            vals = vals * 1j
        deltas[torch.arange(m, device=x.device), :, idx] = vals
        out = f(deltas.reshape(m * q, *x.shape))
        result[start:stop] = out.reshape(m, q).detach().cpu().numpy()
    return result


def numeric_gradients(case: Case, point: Mapping[str, np.ndarray], settings: NumericSettings) -> Gradients:
    start = time.perf_counter()
    analytic = case.forward.analytic
    method = resolve_method(settings.method, analytic)
    if method == "complex-step" and not analytic:
        raise case.error(
            "the complex step needs an analytic forward program; this one calls "
            + ", ".join(sorted(case.forward.functions & NON_ANALYTIC)),
            key="forward",
        )
    obj = _Objective(case, point, settings.device, complex_=method == "complex-step")
    phi_scale, held = obj.magnitude()
    bytes_per_eval = max(held, 1) * 3  # vmap keeps inputs, intermediates and their batched copies
    chunk = max(1, settings.max_memory // bytes_per_eval)
    values: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    kinks: dict[str, np.ndarray] = {}
    f0: float | None = None
    for name, x in point.items():
        xf = x.reshape(-1).astype(np.float64)
        if method == "complex-step":
            d, e = _complex_step(obj, name, xf, chunk, phi_scale)
            kink = np.zeros(xf.shape, dtype=bool)
        else:
            detect = not analytic
            if detect and f0 is None:
                f0 = float(obj(obj.base).real)
            d, e, kink = _differences(obj, name, xf, method, chunk, phi_scale, f0 if detect else None)
        values[name] = d.reshape(x.shape)
        errors[name] = e.reshape(x.shape)
        kinks[name] = kink.reshape(x.shape)
    if method == "complex-step":
        # A derivative that cancels to near zero still carries the rounding of the terms it
        # cancelled; the case's largest derivative stands in for them, as in _compare's rule.
        scale = max((float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0)) for v in values.values()), default=0.0)
        errors = {k: e + 16 * EPS * scale for k, e in errors.items()}
    if settings.device != "cpu":
        torch.cuda.synchronize()
    return Gradients(
        "numeric",
        values,
        "float64",
        settings.device,
        error=errors,
        kinks=kinks,
        method=method,
        seconds=time.perf_counter() - start,
    )


def _complex_step(
    obj: _Objective, name: str, x: np.ndarray, chunk: int, phi_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    # Im phi(x + ih) / h has no subtraction, so h can be tiny: its truncation error
    # h^2 |phi'''| / 6 is far below rounding. A power of two keeps the division exact.
    h = 2.0**-60
    fx = _evaluate(obj, name, np.full((x.size, 1), h), imaginary=True, chunk=chunk)
    d = fx[:, 0].imag / h
    # What is left is the rounding of the imaginary part, relative to the size of the terms
    # that make it up; phi_scale / |x| stands in for those terms where d itself cancels.
    terms = np.abs(d) + phi_scale / np.maximum(np.abs(x), 1.0)
    return d, 16 * EPS * terms


def _differences(
    obj: _Objective, name: str, x: np.ndarray, method: str, chunk: int, phi_scale: float, f0: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mults = _MULTIPLIERS["richardson" if f0 is not None else method]
    h = _pow2(_BASE_STEP[method] * np.maximum(np.abs(x), 1.0))
    plus = np.stack([(x + m * h) - x for m in mults], axis=1)
    minus = np.stack([x - (x - m * h) for m in mults], axis=1)
    offsets = np.concatenate([plus, -minus], axis=1)
    f = _evaluate(obj, name, offsets, imaginary=False, chunk=chunk)
    q = len(mults)
    fp, fm = f[:, :q], f[:, q:]
    D = (fp - fm) / (plus + minus)  # central differences at each step
    noise = 4 * EPS * phi_scale / np.minimum(plus, minus)  # rounding in phi, per step
    if method == "central":
        # D(s) = phi' + c s^2 + ..., so the difference of two steps measures c.
        # Twice that: the step's h^4 term can make the two-step difference understate it
        # (benchmarks/numerics.py saw true errors up to 1.3x the plain estimate).
        d = D[:, 0]
        err = 2 * np.abs(D[:, 1] - D[:, 0]) / abs(mults[1] ** 2 - 1) + 2 * noise[:, 0]
    else:
        r1a = (4 * D[:, 1] - D[:, 0]) / 3
        r1b = (4 * D[:, 2] - D[:, 1]) / 3
        d = (16 * r1b - r1a) / 15
        # |d - r1b| bounds r1b's fourth-order error, a generous bound on d's sixth-order one;
        # extrapolation multiplies the noise of the smallest step by at most 16/15 * 5/3.
        err = np.abs(d - r1b) + 2 * noise[:, 2]
    kink = np.zeros(x.shape, dtype=bool)
    if f0 is not None:
        # Second differences J(s) = (f(x+s) - 2 f(x) + f(x-s)) / s scale with s where phi is
        # smooth (J(h) = 2 J(h/2)); a kink within reach of the step breaks that proportion.
        J = (fp + fm - 2 * f0) / plus
        score = np.maximum(np.abs(J[:, 0] - 2 * J[:, 1]), np.abs(J[:, 1] - 2 * J[:, 2]))
        floor = 64 * EPS * phi_scale / plus[:, 2] + 1e-7 * (np.abs(d) + np.max(np.abs(d), initial=0.0))
        kink = score > floor
    bad = ~np.isfinite(d)
    err = np.where(bad, math.inf, err)
    return d, err, kink
