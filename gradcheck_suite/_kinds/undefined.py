"""Undefined output gradients (``check_undefined_grad``).

When an output takes no part in the loss, autograd hands the backward an undefined gradient
for it: ``None`` to an autograd.Function that called ``ctx.set_materialize_grads(False)``,
zeros to the others. The backward must treat it as zero. For a multi-output function each
output in turn is left undefined while the others carry their upstream gradients; a single
output is left undefined alone, and then every gradient must be zero. Three ways:

* **manual**: the forward's own backward, reached through autograd with the output's
  gradient undefined (``torch._C._functions.UndefinedGrad``, as torch's gradcheck does).
* **autograd**: the autograd source with that output's upstream gradient zero.
* **numeric**: the numeric source with that output's upstream gradient zero.

The rows are the variants, in output order.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .._sources import Gradients
from ._base import Context, Outcome, failed, stack
from ._jacobian import output_shapes
from ._torch import TorchCase, first_line, to_numpy
from .batched import autograd_with_upstreams, numeric_with_upstreams

__all__ = ["UNDEFINED", "applies", "run"]

UNDEFINED = "undefined"


def _undefined_grad() -> type | None:
    # Private, but what torch's own gradcheck uses; without it a multi-output function still
    # gets an undefined gradient by leaving its output out of the backward's roots.
    functions = getattr(torch._C, "_functions", None)
    return getattr(functions, "UndefinedGrad", None)


def applies(tc: TorchCase) -> str | None:
    if tc.manual != "own":
        return "no backward that autograd hands undefined gradients: an autograd.Function's or a module's"
    if len(tc.case.outputs) == 1 and _undefined_grad() is None:
        return "this torch has no UndefinedGrad to leave a single output's gradient undefined"
    return None


def _variants(outputs: tuple[str, ...]) -> list[set[int]]:
    return [{0}] if len(outputs) == 1 else [{k} for k in range(len(outputs))]


def _manual(ctx: Context, variants: list[set[int]], ups: list[np.ndarray], outcome: Outcome) -> Gradients:
    tc = TorchCase(ctx.case, ctx.options.dtype, ctx.options.device)
    shapes = {n: (len(variants), *np.shape(v)) for n, v in ctx.point.items()}
    undefined = _undefined_grad()
    start = time.perf_counter()
    per = []
    for variant in variants:
        env = tc.tensors(ctx.point)
        try:
            outs = tc.outputs(ctx.case.forward, env)
            roots, grads_out = [], []
            for k, (o, u) in enumerate(zip(outs, ups, strict=True)):
                if not o.requires_grad:
                    continue
                if k in variant:
                    if undefined is None:
                        continue  # left out of the roots: its gradient is undefined
                    o = undefined()(o)
                roots.append(o)
                grads_out.append(tc.be.asarray(u))
            leaves = list(env.values())
            grads = torch.autograd.grad(roots, leaves, grads_out, allow_unused=True) if roots else [None] * len(leaves)
        except Exception as exc:  # noqa: BLE001 - a backward that cannot take an undefined gradient is the finding
            names = ", ".join(f"`{ctx.case.outputs[k]}`" for k in sorted(variant))
            why = f"raised {first_line(exc)} with the gradient of {names} undefined"
            return failed("manual", shapes, ctx.options.dtype, why, outcome)
        pairs = zip(env, grads, strict=True)
        per.append({n: to_numpy(g) if g is not None else np.zeros(np.shape(ctx.point[n])) for n, g in pairs})
    label = ctx.case.backward.label if ctx.case.backward else ""
    return Gradients(
        "manual",
        stack(per),
        ctx.options.dtype,
        ctx.options.device,
        method=f"{label} with undefined output gradients",
        seconds=time.perf_counter() - start,
    )


def run(ctx: Context) -> Outcome:
    shapes = output_shapes(ctx)
    case = ctx.case
    ups: list[np.ndarray] = []
    for o, s in zip(case.outputs, shapes, strict=True):
        u = case.upstreams.get(o)
        ups.append(np.ones(s) if u is None else u)
    variants = _variants(case.outputs)
    rows = [[np.zeros_like(u) if k in v else u for k, u in enumerate(ups)] for v in variants]
    names = ", ".join(f"`{case.outputs[min(v)]}`" for v in variants)
    outcome = Outcome([], list(case.inputs), check=f"undefined x{len(variants)}")
    outcome.notes.append(f"rows: the gradient of {names} undefined, in turn")
    outcome.sources.append(_manual(ctx, variants, ups, outcome))
    g = autograd_with_upstreams(ctx, rows, "zero upstream gradient for the undefined output")
    if g is not None:
        outcome.sources.append(g)
    outcome.sources.append(numeric_with_upstreams(ctx, rows, outcome))
    return outcome
