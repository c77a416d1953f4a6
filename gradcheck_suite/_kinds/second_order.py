"""Second order: Hessian-vector products three ways (``order = 2``), and forward-over-reverse.

For a direction ``v`` (every basis direction for small inputs, which gives the whole Hessian,
else a few random ones), the derivative of the gradient along ``v``, ``H v``, per input:

* **manual**: autograd's double backward through the hand-written backward (what
  ``gradgradcheck`` tests: is the backward itself differentiable, and right). A backward
  that detaches a term is right at first order and wrong here.
* **autograd**: double backward of what the autograd source differentiates (the reference).
* **numeric**: Richardson differences, in float64, of the first-order gradient along ``v``:
  the autograd source's gradient where there is one (independent of the hand-written
  backward), else the hand-written one (then this is gradgradcheck's comparison). The first-order
  check already judged that gradient; its error estimate carries over as for any difference.

``fwd-over-rev`` computes the manual and autograd products by forward-mode AD through the
reverse-mode gradient instead (``check_fwd_over_rev``); the numeric source is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.autograd import forward_ad as fwAD
from torch.func import vmap

from .._backends import NumpyBackend
from .._case_callables import bind_constants
from .._sources import Gradients
from .._sources.manual import run_programs
from ._base import Context, Direction, Outcome, directions, failed, stack
from ._jacobian import richardson_along, richardson_steps, stepped_rows
from ._torch import TorchCase, Unavailable, defines_jvp, first_line, missing_jvp, to_numpy

__all__ = ["FORWARD_OVER_REVERSE", "ORDER2", "applies", "applies_forward_over_reverse", "run"]

ORDER2 = "order2"
FORWARD_OVER_REVERSE = "fwd-over-rev"

Gradient = Callable[..., list[torch.Tensor]]


def _manual_reason(tc: TorchCase) -> str | None:
    """Why autograd cannot differentiate the hand-written backward, or None when it can."""
    kind = tc.manual
    if kind is None:
        return "the case has no hand-written backward"
    if kind == "numpy":
        return "the backward is numpy code, which autograd cannot differentiate"
    forward = tc.case.forward
    if kind in ("program", "torch") and forward.program is None and forward.call is not None:
        if forward.call.array != "torch":
            return "the forward is numpy code, which autograd cannot differentiate"
    return None


def applies(case_tc: TorchCase) -> str | None:
    """None when at least two sources can take part, the hand-written backward among them
    where the case has one (else the kind would check torch alone)."""
    manual = _manual_reason(case_tc)
    if case_tc.case.backward2 is not None:
        manual = None  # the hand-written second order is a program
    if case_tc.case.backward is not None and manual is not None:
        return manual
    have = int(manual is None) + int(case_tc.case.autograd_forward is not None)
    # numeric differences a gradient: the autograd one, else the hand-written one on torch
    numeric = case_tc.case.autograd_forward is not None or _manual_reason(case_tc) is None
    if have + int(numeric) < 2:
        return "second order needs a backward autograd can follow or a torch forward (or reference)"
    return None


def applies_forward_over_reverse(case_tc: TorchCase) -> str | None:
    if not defines_jvp(case_tc):
        return f"`{case_tc.case.forward.label}` defines no jvp for forward mode to go through"
    return applies(case_tc)


def _products(
    gradient: Gradient, tc: TorchCase, point: dict[str, np.ndarray], dirs: Sequence[Direction], forward_mode: bool
) -> tuple[dict[str, np.ndarray], list[str]]:
    """H v for every direction, by reverse-over-reverse or forward-over-reverse AD."""
    names = tc.names
    notes: list[str] = []
    per: list[dict[str, np.ndarray]] = []
    if not forward_mode:
        env = tc.tensors(point)
        grads = gradient(env, None, create_graph=True)
        leaves = list(env.values())
        batched = _batched_products(grads, leaves, names, tc, point, dirs)
        if batched is not None:
            return batched, notes
        for d in dirs:
            vs = [tc.be.asarray(d.v[n]) for n in names]
            terms = [torch.sum(g * v) for g, v in zip(grads, vs, strict=True) if g.requires_grad]
            if not terms:
                notes.append("its gradient has no autograd graph: its derivative is zero to autograd")
                per.append({n: np.zeros(np.shape(point[n])) for n in names})
                continue
            hv = torch.autograd.grad(torch.stack(terms).sum(), leaves, retain_graph=True, allow_unused=True)
            pairs = zip(names, hv, strict=True)
            per.append({n: to_numpy(h) if h is not None else np.zeros(np.shape(point[n])) for n, h in pairs})
        return stack(per), notes
    for d in dirs:
        with fwAD.dual_level():
            env = {
                n: fwAD.make_dual(x, tc.be.asarray(d.v[n]))
                for n, x in tc.tensors(point).items()  # leaves that require grad, made dual
            }
            grads = gradient(env, None, create_graph=True)
            row = {}
            for n, g in zip(names, grads, strict=True):
                tangent = fwAD.unpack_dual(g).tangent
                row[n] = to_numpy(tangent) if tangent is not None else np.zeros(np.shape(point[n]))
        per.append(row)
    return stack(per), notes


def _batched_products(
    grads: Sequence[torch.Tensor],
    leaves: Sequence[torch.Tensor],
    names: Sequence[str],
    tc: TorchCase,
    point: dict[str, np.ndarray],
    dirs: Sequence[Direction],
) -> dict[str, np.ndarray] | None:
    """Every direction's product in one double backward, vmapped over the directions
    (``is_grads_batched``); None where vmap cannot run that backward (the loop then does)."""
    keep = [k for k, g in enumerate(grads) if g.requires_grad]
    if not keep:
        return None
    V = [tc.be.asarray(np.stack([d.v[names[k]] for d in dirs])) for k in keep]
    try:
        hv = torch.autograd.grad(
            [grads[k] for k in keep], list(leaves), V, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
    except Exception:  # noqa: BLE001 - a backward vmap cannot batch: one direction at a time
        return None
    D = len(dirs)
    return {
        n: to_numpy(h) if h is not None else np.zeros((D, *np.shape(point[n]))) for n, h in zip(names, hv, strict=True)
    }


def _numeric(ctx: Context, dirs: Sequence[Direction], notes: list[str]) -> Gradients:
    """Richardson differences of a float64 first-order gradient along each direction."""
    key = ("second-order-numeric", len(dirs))
    cached = ctx.cache.get(key)
    if isinstance(cached, Gradients):
        return cached
    start = time.perf_counter()
    tc = TorchCase(ctx.case, "float64", ctx.options.device)
    names = tc.names
    use_autograd = ctx.case.autograd_forward is not None
    shapes = [np.shape(ctx.point[n]) for n in names]
    kinks = not ctx.case.forward.analytic
    t, mults, steps = richardson_steps(kinks)
    G = _gradients(tc, use_autograd, stepped_rows(tc, ctx.point, dirs, steps), notes)
    values, errors, kinked = richardson_along(G, dirs, t, mults, kinks)

    def split(parts: list[np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        at = 0
        for n, sh in zip(names, shapes, strict=True):
            size = int(np.prod(sh))
            out[n] = np.stack([r[at : at + size].reshape(sh) for r in parts])
            at += size
        return out

    which = "autograd's" if use_autograd else "the hand-written"
    g = Gradients(
        "numeric",
        split(values),
        "float64",
        ctx.options.device,
        error=split(errors),
        kinks={k: v > 0 for k, v in split([k.astype(float) for k in kinked]).items()},
        method=f"richardson differences of {which} gradient",
        seconds=time.perf_counter() - start,
    )
    ctx.cache[key] = g
    return g


def _gradients(tc: TorchCase, use_autograd: bool, batch: list[torch.Tensor], notes: list[str]) -> np.ndarray:
    """The first-order gradient (all inputs, flattened) at each row of ``batch``: one vmapped
    call where the function allows it (torch.func.grad of the reference, or a backward program),
    else one row at a time through torch.autograd."""
    names = tc.names
    case = tc.case

    def flat(grads: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([g.reshape(-1) for g in grads])

    def batched(*xs: torch.Tensor) -> torch.Tensor:
        if use_autograd:
            forward = case.autograd_forward
            assert forward is not None

            def phi(*ys: torch.Tensor) -> torch.Tensor:
                outs = tc.outputs(forward, dict(zip(names, ys, strict=True)))
                ups = tc.upstreams(outs)
                return torch.stack([torch.sum(u * o) for o, u in zip(outs, ups, strict=True)]).sum()

            return flat(torch.func.grad(phi, argnums=tuple(range(len(xs))))(*xs))
        return flat(tc.manual_gradient(dict(zip(names, xs, strict=True))))

    def one(*xs: torch.Tensor) -> torch.Tensor:
        env = {n: x.detach().requires_grad_(True) for n, x in zip(names, xs, strict=True)}
        with torch.enable_grad():
            grads = tc.autograd_gradient(env) if use_autograd else tc.manual_gradient(env)
        return flat(grads).detach()

    if tc.manual != "own" or use_autograd:
        try:
            return vmap(batched)(*batch).detach().cpu().numpy()
        except Exception as exc:  # noqa: BLE001 - anything vmap cannot run: the loop below can
            notes.append(
                f"numeric: the gradient does not run under vmap ({first_line(exc)}): evaluated one step at a time"
            )
    rows = len(batch[0])
    return torch.stack([one(*(b[r] for b in batch)) for r in range(rows)]).cpu().numpy()


def _analytic(
    ctx: Context, source: str, dirs: Sequence[Direction], forward_mode: bool, outcome: Outcome
) -> Gradients | None:
    tc = TorchCase(ctx.case, ctx.options.dtype, ctx.options.device)
    if source == "manual" and ctx.case.backward2 is not None and not forward_mode:
        return _second_order_program(ctx, dirs)
    if source == "manual":
        reason = _manual_reason(tc)
        if reason is not None:
            outcome.notes.append(f"manual: not checked ({reason})")
            return None
        gradient: Gradient = tc.manual_gradient
        label = f"through {ctx.case.backward.label if ctx.case.backward else ''}"
    else:
        if ctx.case.autograd_forward is None:
            return None
        gradient = tc.autograd_gradient
        label = f"of {ctx.case.autograd_forward.label}"
    how = "forward-over-reverse AD" if forward_mode else "double backward"
    start = time.perf_counter()
    shapes = {n: (len(dirs), *np.shape(ctx.point[n])) for n in tc.names}
    try:
        values, notes = _products(gradient, tc, ctx.point, dirs, forward_mode)
        reference = None
        if ctx.options.dtype == "float32":  # the gap to float64 is this source's own rounding
            hi = TorchCase(ctx.case, "float64", ctx.options.device)
            g_hi: Gradient = hi.manual_gradient if source == "manual" else hi.autograd_gradient
            reference, _ = _products(g_hi, hi, ctx.point, dirs, forward_mode)
    except Unavailable as exc:
        outcome.notes.append(f"{source}: not checked ({exc})")
        return None
    except Exception as exc:  # noqa: BLE001 - the user's backward failing under AD is the finding
        if forward_mode and missing_jvp(exc):
            outcome.notes.append(f"{source}: not checked (a custom Function on its way defines no jvp)")
            return None
        return failed(source, shapes, ctx.options.dtype, f"raised {first_line(exc)} in its {how}", outcome)
    outcome.notes += [f"{source}: {n}" for n in notes]
    return Gradients(
        source,
        values,
        ctx.options.dtype,
        ctx.options.device,
        method=f"{how} {label}",
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype="float64" if reference is not None else "",
    )


def _second_order_program(ctx: Context, dirs: Sequence[Direction]) -> Gradients:
    """The case's [backward2] program, on numpy in the check's dtype, once per direction."""
    start = time.perf_counter()
    program = ctx.case.backward2
    assert program is not None

    def products(dtype: str) -> dict[str, np.ndarray]:
        be = NumpyBackend(dtype)
        values = run_programs(ctx.case, ctx.point, dtype)
        per = []
        for d in dirs:
            env = {**bind_constants(ctx.case.constants, be), **values}
            env.update({f"v{n}": be.asarray(v) for n, v in d.v.items()})
            out = program.run(env, be)
            per.append(
                {n: np.asarray(out[f"hv{n}"], dtype=np.float64) * np.ones(np.shape(x)) for n, x in ctx.point.items()}
            )
        return stack(per)

    hi = "float64" if ctx.options.dtype == "float32" else None
    return Gradients(
        "manual",
        products(ctx.options.dtype),
        ctx.options.dtype,
        "cpu",
        method="the [backward2] program",
        seconds=time.perf_counter() - start,
        reference=products(hi) if hi else None,
        reference_dtype=hi or "",
    )


def run(ctx: Context, forward_mode: bool = False) -> Outcome:
    dirs, whole = directions(ctx.point, ctx.case.sweep.seed if ctx.case.sweep else 0)
    n = sum(int(np.asarray(v).size) for v in ctx.point.values())
    check = f"hessian {n}x{n}" if whole else f"hvp x{len(dirs)}"
    outcome = Outcome([], list(ctx.case.inputs), check=check)
    for source in ("manual", "autograd"):
        g = _analytic(ctx, source, dirs, forward_mode, outcome)
        if g is not None:
            outcome.sources.append(g)
    outcome.sources.append(_numeric(ctx, dirs, outcome.notes))
    return outcome
