"""Forward mode: Jacobian-vector products three ways (``check_forward_ad``).

For a direction ``v`` (every basis direction for small inputs, which gives the whole
Jacobian, else a few random ones), the derivative of every output along ``v``:

* **manual**: forward-mode AD through the forward's own rule, an autograd.Function's ``jvp``
  (or a module's custom layers'). A Function without ``jvp`` is checked two ways, and says so.
* **autograd**: forward-mode AD (``torch.autograd.forward_ad``, what ``torch.func.jvp`` uses)
  through what the autograd source differentiates (the reference).
* **numeric**: Richardson differences of the outputs along ``v``, in float64, the perturbed
  forwards batched under vmap where the forward runs there.

The values are keyed by output, one row per direction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.autograd import forward_ad as fwAD

from .._case_callables import Forward
from .._sources import Gradients
from .._sources.numeric.differences import extrapolate
from .._sources.numeric.runner import Fallback, collect_notes, looped, vmap_or_loop
from .._sources.numeric.steps import base_step, pow2, step_multipliers
from ._base import Context, Direction, Outcome, directions, eps_scale, failed, stack
from ._torch import TorchCase, first_line, missing_jvp, to_numpy

__all__ = ["FORWARD", "applies", "run"]

FORWARD = "forward"


def applies(tc: TorchCase) -> str | None:
    own = tc.case.forward.call is not None and tc.case.forward.call.brings_backward
    if not own and tc.case.autograd_forward is None:
        return "forward mode needs a Function's jvp or a torch forward (or reference)"
    return None


def _jvps(forward: Forward, tc: TorchCase, point: dict[str, np.ndarray], dirs: Sequence[Direction]) -> dict:
    per = []
    for d in dirs:
        with fwAD.dual_level():
            env = {n: fwAD.make_dual(x, tc.be.asarray(d.v[n])) for n, x in tc.tensors(point, False).items()}
            outs = tc.outputs(forward, env)
            row = {}
            for o, out in zip(tc.case.outputs, outs, strict=True):
                tangent = fwAD.unpack_dual(out).tangent
                row[o] = to_numpy(tangent) if tangent is not None else np.zeros(tuple(out.shape))
        per.append(row)
    return stack(per)


def _analytic(ctx: Context, source: str, dirs: Sequence[Direction], shapes: dict, outcome: Outcome) -> Gradients | None:
    case = ctx.case
    if source == "manual":
        if case.forward.call is None or not case.forward.call.brings_backward:
            return None
        forward: Forward = case.forward
        label = f"through {forward.label}'s jvp"
    else:
        if case.autograd_forward is None:
            return None
        forward = case.autograd_forward
        label = f"of {forward.label}"
    tc = TorchCase(case, ctx.options.dtype, ctx.options.device)
    start = time.perf_counter()
    try:
        values = _jvps(forward, tc, ctx.point, dirs)
        reference = None
        if ctx.options.dtype == "float32":
            reference = _jvps(forward, TorchCase(case, "float64", ctx.options.device), ctx.point, dirs)
    except Exception as exc:  # noqa: BLE001 - the user's jvp failing is the finding
        if source == "manual" and missing_jvp(exc):
            outcome.notes.append(f"manual: not checked (`{forward.label}` defines no jvp)")
            return None
        return failed(source, shapes, ctx.options.dtype, f"raised {first_line(exc)} in forward-mode AD", outcome)
    return Gradients(
        source,
        values,
        ctx.options.dtype,
        ctx.options.device,
        method=f"forward-mode AD {label}",
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype="float64" if reference is not None else "",
    )


def _numeric(ctx: Context, dirs: Sequence[Direction], shapes: dict, outcome: Outcome) -> Gradients:
    start = time.perf_counter()
    case = ctx.case
    tc = TorchCase(case, "float64", ctx.options.device)
    names = tc.names
    kinks = not case.forward.analytic
    mults = np.array(step_multipliers("richardson", kinks))
    t = float(pow2(np.array(base_step("richardson"))))
    steps = np.concatenate([t * mults, -t * mults])
    base = {n: tc.be.asarray(np.asarray(ctx.point[n])) for n in names}

    def one(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = tc.outputs(case.forward, dict(zip(names, xs, strict=True)))
        return (torch.cat([o.reshape(-1) for o in outs]),)

    # rows: the center, then every direction's steps
    rows = {n: [base[n]] for n in names}
    for d in dirs:
        for s in steps:
            for n in names:
                rows[n].append(base[n] + float(s * d.factor) * tc.be.asarray(d.v[n]))
    batch = [torch.stack(rows[n]) for n in names]
    in_dims = tuple(0 for _ in names)
    f = vmap_or_loop(one, in_dims, Fallback(f"`{case.forward.label}`")) if case.forward.vmap else looped(one, in_dims)
    with torch.no_grad(), collect_notes() as notes:
        (F,) = f(*batch)
    outcome.notes += notes
    F = F.detach().cpu().numpy()
    center, F = F[0], F[1:].reshape(len(dirs), len(steps), -1)
    scale = 16 * (np.abs(center) + eps_scale({"f": center}))
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


def run(ctx: Context) -> Outcome:
    dirs, whole = directions(ctx.point, ctx.case.sweep.seed if ctx.case.sweep else 0)
    tc = TorchCase(ctx.case, "float64", ctx.options.device)
    with torch.no_grad():
        outs = tc.outputs(ctx.case.forward, tc.tensors(ctx.point, False))
    shapes = {o: (len(dirs), *tuple(out.shape)) for o, out in zip(ctx.case.outputs, outs, strict=True)}
    n = sum(int(np.asarray(v).size) for v in ctx.point.values())
    m = sum(int(np.prod(s[1:])) for s in shapes.values())
    outcome = Outcome([], list(ctx.case.outputs), check=f"jacobian {m}x{n}" if whole else f"jvp x{len(dirs)}")
    for source in ("manual", "autograd"):
        g = _analytic(ctx, source, dirs, shapes, outcome)
        if g is not None:
            outcome.sources.append(g)
    outcome.sources.append(_numeric(ctx, dirs, shapes, outcome))
    return outcome
