"""Planted bugs: custom autograd.Functions (and a module) that are wrong in one way torch's
gradcheck flags check for, each with its right version.

Used by tests/test_planted.py (each bug fails naming its check and manual as the odd one out,
each right version passes) and by benchmarks/torch_parity.py (the same suite through
``torch.autograd.gradcheck``/``gradgradcheck`` with the matching flags on).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["BUGS", "Planted"]

Ctx = Any  # torch's FunctionCtx: attributes are set freely


# -- forward mode: a wrong jvp ---------------------------------------------------------------


def _xexp(x: torch.Tensor) -> torch.Tensor:
    return x * torch.exp(x)


class XExp(torch.autograd.Function):
    """x exp(x), with a backward and a jvp."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * torch.exp(x)

    @staticmethod
    def setup_context(ctx: Ctx, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g * (1 + x) * torch.exp(x)

    @staticmethod
    def jvp(ctx: Ctx, t: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return t * (1 + x) * torch.exp(x)


class XExpWrongJvp(XExp):
    @staticmethod
    def jvp(ctx: Ctx, t: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return t * x * torch.exp(x)  # forgets the product rule's first term


# -- second order: a backward that detaches a term -------------------------------------------


def xyy_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x * y * y


class XYY(torch.autograd.Function):
    """x y^2 (classic style: forward(ctx, ...))."""

    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y)
        return x * y * y

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.saved_tensors
        return g * y * y, 2 * g * x * y


class XYYDetached(XYY):
    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.saved_tensors
        ydet = y.detach()  # right values, but autograd no longer sees dx depend on y
        return g * ydet * ydet, 2 * g * x * y


# -- batched: a backward that breaks under vmap ------------------------------------------------


def _cube(x: torch.Tensor) -> torch.Tensor:
    return x**3


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


class CubeIntoBuffer(Cube):
    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        out = torch.empty_like(x)  # a buffer shaped like one gradient: a batch of them does not fit
        out.copy_(3 * x * x * g)
        return out


class CubeSlightlyOff(Cube):
    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3.00003 * x * x * g  # a constant rounded to the wrong digits: 1e-5 relative


# -- dtypes: float32 gradients for float64 inputs ----------------------------------------------


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x)


class Softplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.nn.functional.softplus(x)

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)


class SoftplusFloat32(Softplus):
    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (g * torch.sigmoid(x)).float()  # a kernel that computes in float32


# -- undefined: a multi-output backward that mishandles a None upstream gradient ----------------


def _sincos(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sin(x), torch.cos(x)


class SinCos(torch.autograd.Function):
    """(sin x, cos x); undefined upstream gradients arrive as None."""

    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return torch.sin(x), torch.cos(x)

    @staticmethod
    def backward(ctx: Ctx, gs: torch.Tensor | None, gc: torch.Tensor | None) -> torch.Tensor | None:
        (x,) = ctx.saved_tensors
        grad = None
        if gs is not None:
            grad = gs * torch.cos(x)
        if gc is not None:
            grad = -gc * torch.sin(x) if grad is None else grad - gc * torch.sin(x)
        return grad


class SinCosNoneAsOnes(SinCos):
    @staticmethod
    def backward(ctx: Ctx, gs: torch.Tensor | None, gc: torch.Tensor | None) -> torch.Tensor | None:
        (x,) = ctx.saved_tensors
        gs = torch.ones_like(x) if gs is None else gs  # None means zero, not one
        gc = torch.ones_like(x) if gc is None else gc
        return gs * torch.cos(x) - gc * torch.sin(x)


# -- non-contiguous: a backward that reads memory as if it were contiguous ---------------------


def _scaled_tanh(x: torch.Tensor) -> torch.Tensor:
    return 2 * torch.tanh(x)


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, size = [], 1
    for n in reversed(shape):
        strides.append(size)
        size *= n
    return tuple(reversed(strides))


class ScaledTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)  # not tanh(x): computed here, autograd would not see it depend on x
        return 2 * torch.tanh(x)

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        y = torch.tanh(x)
        return 2 * g * (1 - y * y)


class ScaledTanhRawMemory(ScaledTanh):
    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        y = torch.tanh(x)
        # as a kernel handed data pointers would: the strides are ignored
        g = g.as_strided(g.shape, _contiguous_strides(g.shape))
        return 2 * g * (1 - y * y)


# -- a module whose custom layer has a wrong weight gradient -----------------------------------


class LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return x @ w.t() + b

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        return g @ w, g.t() @ x, g.sum(0)


class LinearFunctionMeanWeight(LinearFunction):
    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        return g @ w, g.t() @ x / x.shape[0], g.sum(0)  # averaged over the batch, not summed


class MyLinear(nn.Module):
    """A linear layer on a custom Function (``function`` picks the right or the planted one)."""

    def __init__(self, n_in: int, n_out: int, function: type[torch.autograd.Function] = LinearFunction) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, dtype=torch.float64) / n_in**0.5)
        self.bias = nn.Parameter(torch.randn(n_out, dtype=torch.float64))
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.function.apply(x, self.weight, self.bias)
        return out


def mlp(function: type[torch.autograd.Function] = LinearFunction, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(MyLinear(3, 4, function), nn.Tanh(), MyLinear(4, 2, function))


def reference_mlp(seed: int = 0) -> nn.Module:
    """The same parameter names (0.weight, 0.bias, 2.weight, 2.bias) on nn.Linear."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def mlp_with_bug() -> nn.Module:
    return mlp(LinearFunctionMeanWeight)


# -- nondeterminism: a race in the backward beyond the declared tolerance ---------------------

_ROWS, _IDX = 4, torch.arange(48) % 4  # 48 upstream rows gathered from a table of 4
# The order the "threads" arrive in: Python's generator, not torch's, which vmap refuses (the
# batched check runs these backwards under vmap, as torch's check_batched_grad does).
_ARRIVAL = random.Random(0)


def _gather(table: torch.Tensor) -> torch.Tensor:
    return table[_IDX]


class AtomicGather(torch.autograd.Function):
    """table[idx], whose backward adds the upstream rows in a new order on every call, as a CUDA
    kernel's atomics do: the float64 sums differ run to run in their last bits only."""

    @staticmethod
    def forward(ctx: Ctx, table: torch.Tensor) -> torch.Tensor:
        return table[_IDX]

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        order = torch.tensor(_ARRIVAL.sample(range(len(_IDX)), len(_IDX)), device=g.device)
        idx = _IDX.to(g.device)
        return torch.zeros(_ROWS, g.shape[1], dtype=g.dtype, device=g.device).index_add(0, idx[order], g[order])


class RacyGather(AtomicGather):
    """A race: one upstream row, a different one each call, is lost."""

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(len(_IDX), dtype=torch.bool, device=g.device)
        keep[_ARRIVAL.randrange(len(_IDX))] = False
        idx = _IDX.to(g.device)
        return torch.zeros(_ROWS, g.shape[1], dtype=g.dtype, device=g.device).index_add(0, idx[keep], g[keep])


# -- the suite ---------------------------------------------------------------------------------


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@dataclass
class Planted:
    """One bug: the wrong and the right Function (or module factory), its inputs and reference,
    the check kind that must name it (besides first order where that fails too), and the
    torch gradcheck flags that correspond."""

    name: str
    wrong: Any
    right: Any
    inputs: dict[str, torch.Tensor]
    reference: Callable[..., Any]
    check: str  # "order1" for a first-order bug, else a check kind
    torch_flags: dict[str, bool] = field(default_factory=dict)
    module: bool = False
    also_first_order: bool = False  # the first-order check fails as well
    options: dict[str, Any] = field(default_factory=dict)  # check()'s, e.g. repeat and nondet_tol


BUGS: list[Planted] = [
    Planted("wrong_jvp", XExpWrongJvp, XExp, {"x": _x(3, 2, seed=1)}, _xexp, "forward", {"check_forward_ad": True}),
    Planted(
        "detached_term",
        XYYDetached,
        XYY,
        {"x": _x(3, seed=2), "y": _x(3, seed=3)},
        xyy_reference,
        "order2",
        {"gradgradcheck": True},
    ),
    Planted(
        "breaks_under_vmap",
        CubeIntoBuffer,
        Cube,
        {"x": _x(2, 3, seed=4)},
        _cube,
        "batched",
        {"check_batched_grad": True},
    ),
    Planted("off_by_1e-5", CubeSlightlyOff, Cube, {"x": _x(2, 3, seed=9)}, _cube, "order1", {}),
    Planted(
        "float32_gradient",
        SoftplusFloat32,
        Softplus,
        {"x": _x(4, seed=5)},
        _softplus,
        "dtypes",
        {"check_grad_dtypes": True},
        also_first_order=True,
    ),
    Planted(
        "none_upstream",
        SinCosNoneAsOnes,
        SinCos,
        {"x": _x(3, seed=6)},
        _sincos,
        "undefined",
        {"check_undefined_grad": True},
    ),
    Planted(
        "noncontiguous_only",
        ScaledTanhRawMemory,
        ScaledTanh,
        {"x": _x(3, 4, seed=7)},
        _scaled_tanh,
        "noncontiguous",
        {"gradgradcheck": True, "gen_non_contig_grad_outputs": True},
    ),
    Planted(
        "module_weight_gradient",
        mlp_with_bug,
        mlp,
        {"x": _x(5, 3, seed=8)},
        reference_mlp,
        "order1",
        {},
        module=True,
    ),
    Planted(
        "nondeterministic",
        RacyGather,
        AtomicGather,
        {"table": _x(_ROWS, 3, seed=10)},
        _gather,
        "order1",
        {"nondet_tol": 1e-12},
        options={"repeat": 3, "nondet_tol": 1e-12},
    ),
]


def factory_of_a_dict() -> dict[str, int]:
    """A [module] factory that returns no module (an error case of the loader)."""
    return {}
