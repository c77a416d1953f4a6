"""The autograd source: torch autograd through the forward (or the case's torch reference),
on a chosen device and dtype."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch

from .._backends import TorchBackend
from .._case import Case
from .._devices import get_device
from .._dtypes import torch_dtype
from . import Gradients

__all__ = ["autograd_gradients", "custom_functions", "torch_dtype"]


def autograd_gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str, device: str) -> Gradients:
    start = time.perf_counter()
    grads, functions = _gradients(case, point, dtype, device)
    # A float32 check also runs autograd in float64: the gap is autograd's own rounding. In
    # bfloat16 and float16 the float64 run is the truth the low-precision rule measures both
    # the manual source's and the reference's errors against.
    reference = _gradients(case, point, "float64", device)[0] if dtype != "float64" else None
    get_device(device).synchronize()
    forward = case.autograd_forward
    through = "" if forward is None or forward is case.forward else f" through reference {forward.label}"
    return Gradients(
        "autograd",
        grads,
        dtype,
        device,
        method=f"torch {torch.__version__}{through}",
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype="float64" if reference is not None else "",
        depends_on=functions,
    )


def custom_functions(outs: list[torch.Tensor]) -> list[str]:
    """The user-defined ``autograd.Function`` backwards the graph of ``outs`` runs: their code is
    hand-written, so autograd through them is not independent of a hand-written source."""
    names: list[str] = []
    seen: set[int] = set()
    stack = [o.grad_fn for o in outs]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        cls = getattr(node, "_forward_cls", None)
        if cls is not None and not cls.__module__.startswith("torch."):
            name = f"{cls.__qualname__}.backward"
            if name not in names:
                names.append(name)
        stack.extend(n for n, _ in node.next_functions)
    return names


def _gradients(
    case: Case, point: Mapping[str, np.ndarray], dtype: str, device: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    forward = case.autograd_forward
    if forward is None:
        raise case.error("autograd needs a torch forward or a [reference]", key="reference")
    be = TorchBackend(torch_dtype(dtype), get_device(device).torch)
    leaves = {k: be.asarray(v).requires_grad_(True) for k, v in point.items()}
    values = forward.run(leaves, be)
    outs: list[torch.Tensor] = []
    ups: list[torch.Tensor] = []
    for o in case.outputs:
        if o not in values:
            raise case.error(f"`{forward.label}` produced no output `{o}`", key="forward")
        out = be._t(values[o])
        up = case.upstreams.get(o)
        if up is not None and tuple(up.shape) != tuple(out.shape):
            raise case.error(
                f"upstream gradient has shape {up.shape} but output `{o}` has shape {tuple(out.shape)}",
                key="upstream",
            )
        if out.requires_grad:
            outs.append(out)
            ups.append(be.asarray(up) if up is not None else torch.ones_like(out))
    if not outs:
        raise case.error(f"output `{case.output}` does not depend on any input", key="forward")
    # Backpropagating the scalar sum(upstream * out) hands each `out` exactly `upstream` as its
    # gradient (1 * upstream), as torch.autograd.backward(outs, ups) would; but passing gradient
    # tensors makes torch import sympy for a shape check, 0.4 s of every `gradcheck run`.
    functions = custom_functions(outs)
    torch.stack([torch.sum(u * o) for o, u in zip(outs, ups, strict=True)]).sum().backward()
    grads = {}
    for k, leaf in leaves.items():
        g = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        grads[k] = g.detach().to("cpu", torch.float64).numpy()
    return grads, functions
