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
from torch.autograd import forward_ad as fwAD

from .._case_callables import Forward
from .._sources import Gradients
from ._base import Context, Direction, Outcome, directions, failed, stack
from ._jacobian import numeric_jvps, output_shapes
from ._torch import TorchCase, defines_jvp, first_line, missing_jvp, to_numpy

__all__ = ["FORWARD", "applies", "run"]

FORWARD = "forward"


def applies(tc: TorchCase) -> str | None:
    """Where the case has hand-written derivatives, forward mode checks its jvp (without one
    it would only check torch on the reference); else it checks autograd's forward mode."""
    own = tc.case.forward.call is not None and tc.case.forward.call.brings_backward
    if own and not defines_jvp(tc):
        return f"`{tc.case.forward.label}` defines no jvp"
    if not own and tc.case.backward is not None:
        return "a hand-written backward has no forward mode to check"
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


def run(ctx: Context) -> Outcome:
    dirs, whole = directions(ctx.point, ctx.case.sweep.seed if ctx.case.sweep else 0)
    shapes = {o: (len(dirs), *s) for o, s in zip(ctx.case.outputs, output_shapes(ctx), strict=True)}
    n = sum(int(np.asarray(v).size) for v in ctx.point.values())
    m = sum(int(np.prod(s[1:])) for s in shapes.values())
    outcome = Outcome([], list(ctx.case.outputs), check=f"jacobian {m}x{n}" if whole else f"jvp x{len(dirs)}")
    for source in ("manual", "autograd"):
        g = _analytic(ctx, source, dirs, shapes, outcome)
        if g is not None:
            outcome.sources.append(g)
    outcome.sources.append(numeric_jvps(ctx, dirs, shapes, outcome.notes))
    return outcome
