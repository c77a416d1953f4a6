"""The numeric Jacobian-vector products of a case's forward, shared by the check kinds.

Richardson differences of the outputs along each direction, in float64, every perturbed forward
of every direction batched under vmap where the forward runs there (one perturbation at a time
where not). With every basis direction (small inputs) this is the whole Jacobian, which also
gives the numeric vector-Jacobian product for any upstream gradient: the batched and undefined
kinds take theirs from it instead of running the numeric source once per upstream.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .._sources import Gradients
from .._sources.numeric.differences import extrapolate
from .._sources.numeric.runner import Fallback, collect_notes, looped, vmap_or_loop
from .._sources.numeric.steps import EPS, base_step, pow2, step_multipliers
from ._base import Context, Direction, directions, eps_scale
from ._torch import TorchCase

__all__ = ["JACOBIAN_ELEMENTS", "numeric_jvps", "numeric_vjps", "output_shapes"]

# Up to this many input elements the VJPs come from a whole numeric Jacobian (one batch of
# 8 perturbed forwards per element) rather than from the numeric source once per upstream
# (as many forwards per upstream): cheaper from two upstreams on.
JACOBIAN_ELEMENTS = 256


def output_shapes(ctx: Context) -> list[tuple[int, ...]]:
    key = "output-shapes"
    if key not in ctx.cache:
        tc = TorchCase(ctx.case, "float64", ctx.options.device)
        with torch.no_grad():
            outs = tc.outputs(ctx.case.forward, tc.tensors(ctx.point, False))
        ctx.cache[key] = [tuple(o.shape) for o in outs]
    shapes: list[tuple[int, ...]] = ctx.cache[key]
    return shapes


def _fallback(ctx: Context) -> Fallback:
    """One per case: once vmap has failed on its forward (here, or in the first-order numeric
    source, whose note says so), the loop runs at once."""
    fallback = ctx.cache.get("fallback")
    if not isinstance(fallback, Fallback):
        fallback = Fallback(f"`{ctx.case.forward.label}`")
        first = ctx.first
        if first is not None and any("does not run under torch.func.vmap" in n for n in first.notes):
            fallback.reason = "as at first order"
        ctx.cache["fallback"] = fallback
    return fallback


def numeric_jvps(
    ctx: Context, dirs: Sequence[Direction], shapes: Mapping[str, tuple[int, ...]], notes: list[str]
) -> Gradients:
    """Derivatives of every output along each direction: values (D, *output shape) per output.

    The directions of a case are always the same (basis, or random from its seed), so the
    forward-mode kind and the VJPs share one computation."""
    # a case's directions are a function of its size: the basis, or DIRECTIONS drawn from its seed
    key = ("jvps", len(dirs), sum(int(np.count_nonzero(v)) for v in dirs[0].v.values()) if dirs else 0)
    cached = ctx.cache.get(key)
    if isinstance(cached, Gradients):
        return cached
    g = _jvps(ctx, dirs, shapes, notes)
    ctx.cache[key] = g
    return g


def richardson_steps(kinks: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """The base step t, its multipliers, and the signed steps (+t*m, then -t*m) of a ladder."""
    mults = np.array(step_multipliers("richardson", kinks))
    t = float(pow2(np.array(base_step("richardson"))))
    return t, mults, np.concatenate([t * mults, -t * mults])


def stepped_rows(
    tc: TorchCase, point: Mapping[str, np.ndarray], dirs: Sequence[Direction], steps: np.ndarray
) -> list[torch.Tensor]:
    """Per input, the batch of points to evaluate: the center, then every direction's steps."""
    base = {n: tc.be.asarray(np.asarray(point[n])) for n in tc.names}
    rows = {n: [base[n]] for n in tc.names}
    for d in dirs:
        for st in steps:
            for n in tc.names:
                rows[n].append(base[n] + float(st * d.factor) * tc.be.asarray(d.v[n]))
    return [torch.stack(rows[n]) for n in tc.names]


def richardson_along(
    evaluated: np.ndarray, dirs: Sequence[Direction], t: float, mults: np.ndarray, kinks: bool
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Directional derivatives (values, errors, kink flags per direction) from the flat values
    at the rows :func:`stepped_rows` made."""
    center, F = evaluated[0], evaluated[1:].reshape(len(dirs), 2 * len(mults), -1)
    scale = 16 * (np.abs(center) + eps_scale({"center": center}))
    q = len(mults)
    values, errors, kinked = [], [], []
    for k, d in enumerate(dirs):
        fp, fm = F[k, :q].T, F[k, q:].T
        plus = np.broadcast_to(t * mults, fp.shape)
        dd, err, kink = extrapolate(
            fp, fm, plus, plus, "richardson", scale[:, None], center[:, None] if kinks else None
        )
        values.append(dd / d.factor)
        errors.append(err / d.factor)
        kinked.append(kink)
    return values, errors, kinked


def _jvps(
    ctx: Context, dirs: Sequence[Direction], shapes: Mapping[str, tuple[int, ...]], notes: list[str]
) -> Gradients:
    start = time.perf_counter()
    case = ctx.case
    tc = TorchCase(case, "float64", ctx.options.device)
    names = tc.names
    kinks = not case.forward.analytic
    t, mults, steps = richardson_steps(kinks)

    def one(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = tc.outputs(case.forward, dict(zip(names, xs, strict=True)))
        return (torch.cat([o.reshape(-1) for o in outs]),)

    batch = stepped_rows(tc, ctx.point, dirs, steps)
    in_dims = tuple(0 for _ in names)
    f = vmap_or_loop(one, in_dims, _fallback(ctx)) if case.forward.vmap else looped(one, in_dims)
    with torch.no_grad(), collect_notes() as said:
        (F,) = f(*batch)
    notes += said
    values, errors, kinked = richardson_along(F.detach().cpu().numpy(), dirs, t, mults, kinks)

    def split(rows_: list[np.ndarray]) -> dict[str, np.ndarray]:
        out, at = {}, 0
        for o in case.outputs:
            s = shapes[o][1:]
            size = int(np.prod(s))
            out[o] = np.stack([r[at : at + size].reshape(s) for r in rows_])
            at += size
        return out

    return Gradients(
        "numeric",
        split(values),
        "float64",
        ctx.options.device,
        error=split(errors),
        kinks={k: v > 0 for k, v in split([k.astype(float) for k in kinked]).items()},
        method="richardson differences of the outputs",
        seconds=time.perf_counter() - start,
    )


def numeric_vjps(ctx: Context, upstreams: Sequence[Sequence[np.ndarray]], notes: list[str]) -> Gradients | None:
    """The numeric gradient for each list of upstreams (one array per output), from the whole
    numeric Jacobian: values (U, *input shape) per input. None when the inputs are too many
    for a whole Jacobian (then the numeric source runs once per upstream).

    The error of a sum of products with the upstream is at most the same sum over the
    Jacobian's errors; the products and sums in float64 add rounding of 4 eps of the terms."""
    dirs, whole = directions(ctx.point, ctx.case.sweep.seed if ctx.case.sweep else 0, JACOBIAN_ELEMENTS)
    if not whole:
        return None
    start = time.perf_counter()
    shapes = {o: (len(dirs), *s) for o, s in zip(ctx.case.outputs, output_shapes(ctx), strict=True)}
    jac = numeric_jvps(ctx, dirs, shapes, notes)
    assert jac.error is not None and jac.kinks is not None
    D = len(dirs)
    values = np.zeros((len(upstreams), D))
    errors = np.zeros((len(upstreams), D))
    kinks = np.zeros((len(upstreams), D), dtype=bool)
    for b, ups in enumerate(upstreams):
        for o, u in zip(ctx.case.outputs, ups, strict=True):
            J = jac.values[o].reshape(D, -1)
            E = jac.error[o].reshape(D, -1)
            w = np.asarray(u, dtype=np.float64).reshape(-1)
            values[b] += J @ w
            errors[b] += E @ np.abs(w) + 4 * EPS * (np.abs(J) @ np.abs(w))
            kinks[b] |= (jac.kinks[o].reshape(D, -1) & (w != 0)).any(axis=1)
    out_v, out_e, out_k = {}, {}, {}
    at = 0
    for name, x in ctx.point.items():
        size = int(np.asarray(x).size)
        shape = (len(upstreams), *np.shape(x))
        out_v[name] = values[:, at : at + size].reshape(shape)
        out_e[name] = errors[:, at : at + size].reshape(shape)
        out_k[name] = kinks[:, at : at + size].reshape(shape)
        at += size
    return Gradients(
        "numeric",
        out_v,
        "float64",
        ctx.options.device,
        error=out_e,
        kinks=out_k,
        method="the numeric Jacobian (richardson differences of the outputs) times each upstream",
        seconds=time.perf_counter() - start + jac.seconds,
    )
