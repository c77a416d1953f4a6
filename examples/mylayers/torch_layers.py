"""A custom torch.autograd.Function, and torch references for the numpy layers."""

from __future__ import annotations

from typing import Any

import torch


class Swish(torch.autograd.Function):
    """swish(x) = x * sigmoid(x), with a hand-written backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        return grad * (s + x * s * (1 - s))


def affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """What autograd differentiates for mylayers.numpy_layers.affine_forward."""
    return x.reshape(x.shape[0], -1) @ w + b
