"""The autograd source: torch autograd through the forward program, on a chosen device and dtype."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch

from .._backends import TorchBackend
from .._case import Case
from . import Gradients

__all__ = ["autograd_gradients", "torch_dtype"]


def torch_dtype(name: str) -> torch.dtype:
    return {"float64": torch.float64, "float32": torch.float32}[name]


def autograd_gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str, device: str) -> Gradients:
    start = time.perf_counter()
    grads = _gradients(case, point, dtype, device)
    # A float32 check also runs autograd in float64: the gap is autograd's own rounding.
    reference = _gradients(case, point, "float64", device) if dtype == "float32" else None
    if device != "cpu":
        torch.cuda.synchronize()
    return Gradients(
        "autograd",
        grads,
        dtype,
        device,
        method=f"torch {torch.__version__}",
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype="float64" if reference is not None else "",
    )


def _gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str, device: str) -> dict[str, np.ndarray]:
    be = TorchBackend(torch_dtype(dtype), device)
    leaves = {k: be.asarray(v).requires_grad_(True) for k, v in point.items()}
    values = case.forward.run(leaves, be)
    out = be._t(values[case.output])
    if not out.requires_grad:
        raise case.error(f"output `{case.output}` does not depend on any input", key="forward")
    if case.upstream is not None:
        if tuple(case.upstream.shape) != tuple(out.shape):
            raise case.error(
                f"upstream gradient has shape {case.upstream.shape}"
                f" but output `{case.output}` has shape {tuple(out.shape)}",
                key="upstream",
            )
        upstream = be.asarray(case.upstream)
    else:
        upstream = torch.ones_like(out)
    # Backpropagating the scalar sum(upstream * out) hands `out` exactly `upstream` as its
    # gradient (1 * upstream), as out.backward(upstream) would; but passing a gradient tensor
    # makes torch import sympy for a shape check, 0.4 s of every `gradcheck run`.
    torch.sum(upstream * out).backward()
    grads = {}
    for k, leaf in leaves.items():
        g = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        grads[k] = g.detach().to("cpu", torch.float64).numpy()
    return grads
