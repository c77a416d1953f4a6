"""Batched gradients: the hand-written backward under vmap (``check_batched_grad``).

The backward runs once under vmap over ``UPSTREAMS`` random upstream gradients (what
``torch.autograd.grad(..., is_grads_batched=True)`` and ``torch.func.vmap`` of a backward do),
and each row is compared with the same upstream's gradient by the other sources, one upstream
at a time:

* **manual**: the hand-written backward, batched by vmap (an autograd.Function's, a module's
  custom layers', or a torch backward callable's). A backward that raises under vmap, or
  computes something else there, is the odd one out.
* **autograd**: the autograd source, one upstream at a time.
* **numeric**: the numeric source, one upstream at a time.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from torch.func import vmap

from .._sources import Gradients
from .._sources.numeric import NumericSettings, numeric_gradients_at, resolve_mode
from ._base import Context, Outcome, failed, stack
from ._jacobian import numeric_vjps, output_shapes
from ._torch import TorchCase, first_line, to_numpy, zeros_for_none

__all__ = ["BATCHED", "UPSTREAMS", "applies", "numeric_with_upstreams", "run"]

BATCHED = "batched"
UPSTREAMS = 2


def applies(tc: TorchCase) -> str | None:
    if tc.manual in ("own", "torch"):
        return None
    return "no backward for vmap to batch: an autograd.Function's, a module's or a torch callable"


def numeric_with_upstreams(ctx: Context, upstreams: list[list[np.ndarray]], outcome: Outcome) -> Gradients:
    """The numeric gradient for each list of upstreams (one array per output), stacked: from
    the whole numeric Jacobian for small inputs, else the numeric source once per list."""
    from_jacobian = numeric_vjps(ctx, upstreams, outcome.notes)
    if from_jacobian is not None:
        return from_jacobian
    start = time.perf_counter()
    case, o = ctx.case, ctx.options
    sizes = {k: int(np.asarray(v).size) for k, v in ctx.point.items()}
    mode = resolve_mode(o.mode, sizes)
    if mode == "projection":  # rows of directional derivatives do not stack: sample elements instead
        mode = "sample"
        outcome.notes.append(f"numeric: {o.elements} sampled elements per input (projections do not stack)")
    seed = case.sweep.seed if case.sweep else 0
    settings = NumericSettings(
        o.numeric, o.device, o.max_memory, mode=mode, elements=o.elements, directions=o.directions, seed=seed
    )
    runs: list[Gradients] = []
    for ups in upstreams:
        each = dict(zip(case.outputs, ups, strict=True))
        if all(not np.any(u) for u in ups):  # nothing flows back: the gradient is exactly zero
            zeros = {k: np.zeros(np.shape(v)) for k, v in ctx.point.items()}
            runs.append(Gradients("numeric", zeros, "float64", o.device, error=dict(zeros), kinks={}))
            continue
        shifted = replace(case, upstreams=each, upstream=each[case.outputs[0]])
        runs.append(numeric_gradients_at(shifted, [ctx.point], settings)[0])
    values = stack([r.values for r in runs])
    error = stack([r.error or {k: np.zeros(np.shape(v)) for k, v in ctx.point.items()} for r in runs])
    kinks = {
        k: np.stack([(r.kinks or {}).get(k, np.zeros(np.shape(ctx.point[k]), bool)) for r in runs]) for k in ctx.point
    }
    checked = None
    if mode == "sample":
        checked = {
            k: np.stack([(r.checked or {}).get(k, np.ones(np.shape(ctx.point[k]), bool)) for r in runs])
            for k in ctx.point
        }
    method = next((r.method for r in runs if r.method), "")
    return Gradients(
        "numeric",
        values,
        "float64",
        o.device,
        error=error,
        kinks=kinks,
        method=method,
        seconds=time.perf_counter() - start,
        mode=mode,
        checked=checked,
    )


def _draw(ctx: Context, shapes: list[tuple[int, ...]]) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(ctx.case.sweep.seed if ctx.case.sweep else 0)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(UPSTREAMS)]


def _manual(ctx: Context, ups: list[list[np.ndarray]], outcome: Outcome) -> Gradients:
    tc = TorchCase(ctx.case, ctx.options.dtype, ctx.options.device)
    shapes = {n: (len(ups), *np.shape(v)) for n, v in ctx.point.items()}
    start = time.perf_counter()
    env = tc.tensors(ctx.point)
    batched = [tc.be.asarray(np.stack([u[k] for u in ups])) for k in range(len(ctx.case.outputs))]
    try:
        if tc.manual == "own":
            outs = tc.outputs(ctx.case.forward, env)
            pairs = [(o, u) for o, u in zip(outs, batched, strict=True) if o.requires_grad]
            leaves = list(env.values())
            grads = torch.autograd.grad(
                [p[0] for p in pairs], leaves, [p[1] for p in pairs], is_grads_batched=True, allow_unused=True
            )
            expanded = [x.unsqueeze(0).expand(len(ups), *x.shape) for x in leaves]
            result = zeros_for_none(grads, expanded)
        else:

            def backward(*us: torch.Tensor) -> tuple[torch.Tensor, ...]:
                return tuple(tc.manual_gradient(env, list(us)))

            result = list(vmap(backward)(*batched))
    except Exception as exc:  # noqa: BLE001 - a backward that breaks under vmap is the finding
        return failed("manual", shapes, ctx.options.dtype, f"raised {first_line(exc)} under vmap", outcome)
    values = {n: to_numpy(g) for n, g in zip(env, result, strict=True)}
    return Gradients(
        "manual",
        values,
        ctx.options.dtype,
        ctx.options.device,
        method=f"{ctx.case.backward.label if ctx.case.backward else ''} under vmap over {len(ups)} upstreams",
        seconds=time.perf_counter() - start,
    )


def autograd_with_upstreams(ctx: Context, upstreams: list[list[np.ndarray]], method: str) -> Gradients | None:
    """Autograd's gradients for each row of upstream gradients, one backward per row."""
    if ctx.case.autograd_forward is None:
        return None
    start = time.perf_counter()
    tc = TorchCase(ctx.case, ctx.options.dtype, ctx.options.device)
    per = []
    for u in upstreams:
        env = tc.tensors(ctx.point)
        grads = tc.autograd_gradient(env, [tc.be.asarray(x) for x in u])
        per.append({n: to_numpy(g) for n, g in zip(env, grads, strict=True)})
    return Gradients(
        "autograd",
        stack(per),
        ctx.options.dtype,
        ctx.options.device,
        method=method,
        seconds=time.perf_counter() - start,
    )


def run(ctx: Context) -> Outcome:
    ups = _draw(ctx, output_shapes(ctx))
    outcome = Outcome([], list(ctx.case.inputs), check=f"batched x{len(ups)}")
    outcome.sources.append(_manual(ctx, ups, outcome))
    g = autograd_with_upstreams(ctx, ups, "one upstream at a time")
    if g is not None:
        outcome.sources.append(g)
    outcome.sources.append(numeric_with_upstreams(ctx, ups, outcome))
    return outcome
