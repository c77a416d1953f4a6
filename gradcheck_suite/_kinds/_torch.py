"""A case's forward and analytic gradients as torch functions, for the check kinds.

The first-order sources convert to numpy at once; the check kinds need the gradient as a
differentiable torch function of the inputs (second order), under forward AD (forward mode),
under vmap (batched) or fed unusual upstream gradients. ``TorchCase`` gives each:

* ``outputs(forward, env)``: a forward (the case's, or its reference) on torch tensors;
* ``manual_gradient(env, ups)``: the hand-written backward as a torch computation: a backward
  program or torch callable run on torch, or autograd through the forward's own backward (an
  autograd.Function's, a module's custom layers');
* ``autograd_gradient(env, ups)``: autograd through what the autograd source differentiates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._backends import TorchBackend
from .._case import Case
from .._case_callables import Forward, bind_constants
from .._sources.autograd import torch_dtype

__all__ = [
    "TorchCase",
    "Unavailable",
    "call_raw",
    "defines_jvp",
    "first_line",
    "missing_jvp",
    "to_numpy",
    "zeros_for_none",
]


class Unavailable(Exception):
    """A source cannot take part in a check kind (the message says why, for the notes)."""


def defines_jvp(tc: TorchCase) -> bool:
    """Whether forward-mode AD can go through the forward: not for an autograd.Function that
    leaves ``jvp`` undefined, nor for a module built on such Functions."""
    call = tc.case.forward.call
    if call is None or not call.forward_ad:
        return call is None
    if not call.is_function:
        return True
    return getattr(call.fn, "jvp", None) is not getattr(torch.autograd.Function, "jvp", None)


def missing_jvp(exc: BaseException) -> bool:
    """Whether forward-mode AD failed because a custom Function defines no jvp (not a bug)."""
    cause = exc.__cause__ or exc
    return isinstance(cause, NotImplementedError) and "jvp" in str(cause)


def first_line(exc: BaseException) -> str:
    exc = exc.__cause__ or exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def zeros_for_none(grads: Sequence[torch.Tensor | None], leaves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]


class TorchCase:
    """One case's forward and gradients on torch, in one dtype and on one device."""

    def __init__(self, case: Case, dtype: str, device: str) -> None:
        self.case = case
        self.dtype = dtype
        self.device = device
        self.be = TorchBackend(torch_dtype(dtype), device)

    @property
    def names(self) -> list[str]:
        return list(self.case.inputs)

    def tensors(self, point: Mapping[str, np.ndarray], requires_grad: bool = True) -> dict[str, torch.Tensor]:
        return {k: self.be.asarray(np.asarray(v)).requires_grad_(requires_grad) for k, v in point.items()}

    def upstreams(self, outs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The case's upstream gradient of each output, or ones."""
        ups = []
        for o, out in zip(self.case.outputs, outs, strict=True):
            u = self.case.upstreams.get(o)
            ups.append(torch.ones_like(out) if u is None else self.be.asarray(u))
        return ups

    def outputs(self, forward: Forward, env: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        values = forward.run(dict(env), self.be)
        outs = []
        for o in self.case.outputs:
            if o not in values:
                raise self.case.error(f"`{forward.label}` produced no output `{o}`", key="forward")
            outs.append(self.be._t(values[o]))
        return outs

    # -- the manual source -------------------------------------------------------------------

    @property
    def manual(self) -> str | None:
        """How the hand-written backward runs on torch: "own" (autograd through the forward's
        own backward), "program", "torch" (a torch callable), or None (no backward)."""
        b = self.case.backward
        if b is None:
            return None
        if b.program is not None:
            return "program"
        if b.call is None:
            return "own"
        return "torch" if b.call.array == "torch" else "numpy"

    def manual_gradient(
        self, env: Mapping[str, torch.Tensor], ups: Sequence[torch.Tensor] | None = None, create_graph: bool = False
    ) -> list[torch.Tensor]:
        """The hand-written backward's gradient of every input, as torch tensors."""
        backward = self.case.backward
        kind = self.manual
        if backward is None or kind is None:
            raise Unavailable("the case has no hand-written backward")
        if kind == "own":
            outs = self.outputs(self.case.forward, env)
            return self.grad(outs, env, ups, create_graph)
        if kind == "numpy":
            raise Unavailable(f"the backward `{backward.label}` is numpy code, which torch cannot follow")
        values = self.case.forward.run(dict(env), self.be)
        outs = [self.be._t(values[o]) for o in self.case.outputs]
        ups = list(ups) if ups is not None else self.upstreams(outs)
        douts = {f"d{o}": u for o, u in zip(self.case.outputs, ups, strict=True)}
        result = backward.run({**values, **douts}, self.be)
        grads = []
        for n, x in env.items():
            g = result[f"d{n}"]
            grads.append(self.be._t(g) if not isinstance(g, torch.Tensor) else g)
            if tuple(grads[-1].shape) != tuple(x.shape):
                raise self.case.error(
                    f"backward `{backward.label}` returned d{n} of shape {tuple(grads[-1].shape)}"
                    f" but input `{n}` has shape {tuple(x.shape)}",
                    key="backward",
                )
        return grads

    # -- the autograd source -----------------------------------------------------------------

    def autograd_gradient(
        self, env: Mapping[str, torch.Tensor], ups: Sequence[torch.Tensor] | None = None, create_graph: bool = False
    ) -> list[torch.Tensor]:
        forward = self.case.autograd_forward
        if forward is None:
            raise Unavailable("the case has no torch forward or reference for autograd")
        return self.grad(self.outputs(forward, env), env, ups, create_graph)

    def grad(
        self,
        outs: Sequence[torch.Tensor],
        env: Mapping[str, torch.Tensor],
        ups: Sequence[torch.Tensor] | None,
        create_graph: bool,
    ) -> list[torch.Tensor]:
        ups = list(ups) if ups is not None else self.upstreams(outs)
        pairs = [(o, u) for o, u in zip(outs, ups, strict=True) if o.requires_grad]
        leaves = list(env.values())
        if not pairs:
            return [torch.zeros_like(x) for x in leaves]
        grads = torch.autograd.grad(
            [p[0] for p in pairs], leaves, [p[1] for p in pairs], create_graph=create_graph, allow_unused=True
        )
        return zeros_for_none(grads, leaves)


def call_raw(forward: Forward, named: Mapping[str, Any], be: TorchBackend) -> Any:
    """The forward's callable on exactly these tensors (no defensive copies: a copy would
    make a non-contiguous input contiguous)."""
    call = forward.call
    assert call is not None
    env = {**bind_constants(forward.constants, be), **named}
    args = [env[n] for n in call.args]
    if call.keywords:
        return call.invoke([], dict(zip(call.args, args, strict=True)))
    return call.invoke(args)
