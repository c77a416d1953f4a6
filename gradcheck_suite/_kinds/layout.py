"""Gradient dtype and device (``check_grad_dtypes``), and non-contiguous inputs and upstream
gradients (``gen_non_contig_grad_outputs``).

Both run the hand-written backward in an unusual way and compare what it returns with the
first-order gradient, which autograd and the numeric source already computed (their values
do not depend on memory layout or on how the backward returns its dtype):

* ``dtypes``: the backward's raw results, before autograd's engine sees them. The engine
  casts a float32 gradient of a float64 input back to float64 without a word (and moves it
  to the input's device), so ``torch.autograd.grad`` never shows the mismatch: the values
  have lost half their digits all the same. An autograd.Function's backward is reached
  through its graph node (``grad_fn.apply``), a backward callable directly.
* ``noncontiguous``: every input of one or more dimensions, and every upstream gradient, as a
  strided view (every other element of a buffer), as torch's ``make_tensor(noncontiguous=True)``
  builds them: a backward (or a kernel) that reads memory as if it were contiguous is wrong
  only here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._case_callables import _split
from .._sources import Gradients
from ._base import Context, Outcome, failed
from ._torch import TorchCase, call_raw, first_line, to_numpy, zeros_for_none

__all__ = ["DTYPES", "NONCONTIGUOUS", "applies_dtypes", "applies_noncontiguous", "run_dtypes", "run_noncontiguous"]

DTYPES = "dtypes"
NONCONTIGUOUS = "noncontiguous"


def _keyword_backward(tc: TorchCase) -> bool:
    b = tc.case.backward
    return tc.manual == "torch" and b is not None and b.call is not None and b.call.keywords


def applies_dtypes(tc: TorchCase) -> str | None:
    call = tc.case.forward.call
    if (call is not None and call.is_function) or _keyword_backward(tc):
        return None
    return "no raw torch gradient to look at: an autograd.Function's or a torch backward callable's"


def applies_noncontiguous(tc: TorchCase) -> str | None:
    if tc.manual == "own" or _keyword_backward(tc):
        return None
    return "no torch backward to give strided tensors: an autograd.Function's, a module's or a torch callable"


def _outputs(tc: TorchCase, result: Any) -> list[torch.Tensor]:
    call = tc.case.forward.call
    assert call is not None
    parts = _split(result, list(tc.case.outputs), call, "outputs")
    return [p for p in parts.values()]


def _raw_gradients(
    tc: TorchCase, env: Mapping[str, torch.Tensor], ups: Sequence[torch.Tensor] | None = None
) -> list[torch.Tensor | None]:
    """The hand-written backward's results as it returned them (no cast, no copy)."""
    case = tc.case
    names = list(env)
    if _keyword_backward(tc):
        b = case.backward
        assert b is not None and b.call is not None
        outs = tc.outputs(case.forward, env) if ups is None else []
        ups = list(ups) if ups is not None else tc.upstreams(outs)
        result = b.call.invoke(list(ups), dict(env))
        by_name = _split(result, [f"d{n}" for n in names], b.call, "gradients")
        return [by_name[f"d{n}"] for n in names]
    outs = _outputs(tc, call_raw(case.forward, env, tc.be))
    ups = list(ups) if ups is not None else tc.upstreams(outs)
    call = case.forward.call
    assert call is not None
    node = next((o.grad_fn for o in outs if o.grad_fn is not None), None)
    if call.is_function and isinstance(node, torch.autograd.function.BackwardCFunction):
        applied = node.apply(*ups)
        raw = applied if isinstance(applied, tuple) else (applied,)
        by_arg = dict(zip(call.args, raw, strict=False))
        return [by_arg.get(n) for n in names]
    pairs = [(o, u) for o, u in zip(outs, ups, strict=True) if o.requires_grad]
    grads = torch.autograd.grad([p[0] for p in pairs], list(env.values()), [p[1] for p in pairs], allow_unused=True)
    return list(grads)


def _reuse(ctx: Context, outcome: Outcome) -> None:
    first = ctx.first_order()
    outcome.sources += [g for s, g in first.sources.items() if s != "manual"]


def run_dtypes(ctx: Context) -> Outcome:
    outcome = Outcome([], list(ctx.case.inputs), check="dtype, device")
    tc = TorchCase(ctx.case, ctx.options.dtype, ctx.options.device)
    shapes = {n: np.shape(v) for n, v in ctx.point.items()}
    start = time.perf_counter()
    env = tc.tensors(ctx.point)
    try:
        raw = _raw_gradients(tc, env)
    except Exception as exc:  # noqa: BLE001 - the user's backward
        outcome.sources.append(failed("manual", shapes, ctx.options.dtype, f"raised {first_line(exc)}", outcome))
        _reuse(ctx, outcome)
        return outcome
    values = {}
    for (n, x), g in zip(env.items(), raw, strict=True):
        if g is None:
            values[n] = np.zeros(shapes[n])
            continue
        if g.dtype != x.dtype:
            have, want = (str(t).replace("torch.", "") for t in (g.dtype, x.dtype))
            why = f"returned a {have} gradient for the {want} input `{n}`"
            outcome.flags[n] = ("manual", why + " (autograd casts it back without a word; the digits are gone)")
        elif g.device != x.device:
            outcome.flags[n] = ("manual", f"returned a gradient on {g.device} for the input `{n}` on {x.device}")
        values[n] = to_numpy(g)
    outcome.sources.append(
        Gradients(
            "manual",
            values,
            ctx.options.dtype,
            ctx.options.device,
            method="the backward's raw results",
            seconds=time.perf_counter() - start,
        )
    )
    _reuse(ctx, outcome)
    return outcome


def strided(t: torch.Tensor) -> torch.Tensor:
    """The same values as a non-contiguous view: every other element of a buffer twice the size."""
    if t.ndim == 0:
        return t.detach().clone()
    base = torch.zeros(*t.shape, 2, dtype=t.dtype, device=t.device)
    view = base[..., 0]
    view.copy_(t.detach())
    return view


def run_noncontiguous(ctx: Context) -> Outcome:
    outcome = Outcome([], list(ctx.case.inputs), check="non-contiguous")
    tc = TorchCase(ctx.case, ctx.options.dtype, ctx.options.device)
    shapes = {n: np.shape(v) for n, v in ctx.point.items()}
    start = time.perf_counter()
    env = {n: strided(x).requires_grad_(True) for n, x in tc.tensors(ctx.point, False).items()}
    scalars = [n for n, x in env.items() if x.ndim == 0]
    if scalars:
        outcome.notes.append(f"0-d input(s) {', '.join(scalars)} cannot be non-contiguous")
    try:
        with torch.no_grad():
            outs = tc.outputs(ctx.case.forward, tc.tensors(ctx.point, False))
        ups = [strided(u) for u in tc.upstreams(outs)]
        raw = _raw_gradients(tc, env, ups)
    except Exception as exc:  # noqa: BLE001 - the user's backward
        why = f"raised {first_line(exc)} with non-contiguous inputs"
        outcome.sources.append(failed("manual", shapes, ctx.options.dtype, why, outcome))
        _reuse(ctx, outcome)
        return outcome
    grads = zeros_for_none(raw, list(env.values()))
    outcome.sources.append(
        Gradients(
            "manual",
            {n: to_numpy(g) for n, g in zip(env, grads, strict=True)},
            ctx.options.dtype,
            ctx.options.device,
            method="non-contiguous inputs and upstream gradients",
            seconds=time.perf_counter() - start,
        )
    )
    _reuse(ctx, outcome)
    return outcome
