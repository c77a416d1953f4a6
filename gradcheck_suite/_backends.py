"""The array libraries a program can run on: numpy (the hand-written source) and torch.

Every whitelisted function of the program language has one entry per backend here; the
whitelist itself is the key set of ``FUNCTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["FUNCTIONS", "NON_ANALYTIC", "Backend", "NumpyBackend", "TorchBackend"]

# name -> number of positional arguments it takes (min, max)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "exp": (1, 1),
    "log": (1, 1),
    "sqrt": (1, 1),
    "tanh": (1, 1),
    "sigmoid": (1, 1),
    "abs": (1, 1),
    "maximum": (2, 2),
    "minimum": (2, 2),
    "sum": (1, 1),
    "mean": (1, 1),
    "dot": (2, 2),
}

# Functions with points where no derivative exists: their programs can have kinks, and the
# complex step does not apply to them.
NON_ANALYTIC = frozenset({"abs", "maximum", "minimum"})


@dataclass
class Backend:
    name: str
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def asarray(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def matmul(self, a: Any, b: Any) -> Any:
        return a @ b

    def transpose(self, a: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def ones_like(self, a: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class NumpyBackend(Backend):
    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = np.dtype(dtype)
        sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
        super().__init__(
            name=f"numpy/{dtype}",
            functions={
                "exp": np.exp,
                "log": np.log,
                "sqrt": np.sqrt,
                "tanh": np.tanh,
                "sigmoid": sig,
                "abs": np.abs,
                "maximum": np.maximum,
                "minimum": np.minimum,
                "sum": np.sum,
                "mean": np.mean,
                "dot": np.dot,
            },
        )

    def asarray(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=self.dtype)

    def transpose(self, a: Any) -> Any:
        return np.asarray(a).T

    def ones_like(self, a: Any) -> Any:
        return np.ones_like(np.asarray(a, dtype=self.dtype))


class TorchBackend(Backend):
    def __init__(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> None:
        self.dtype = dtype
        self.device = torch.device(device)
        t = self._t

        def dot(a: Any, b: Any) -> Any:
            a, b = t(a), t(b)
            if a.ndim == 1 and b.ndim == 1:
                return torch.dot(a, b)
            return torch.matmul(a, b)

        super().__init__(
            name=f"torch/{dtype}/{self.device}",
            functions={
                "exp": lambda a: torch.exp(t(a)),
                "log": lambda a: torch.log(t(a)),
                "sqrt": lambda a: torch.sqrt(t(a)),
                "tanh": lambda a: torch.tanh(t(a)),
                "sigmoid": lambda a: torch.sigmoid(t(a)),
                "abs": lambda a: torch.abs(t(a)),
                "maximum": lambda a, b: torch.maximum(t(a), t(b)),
                "minimum": lambda a, b: torch.minimum(t(a), t(b)),
                "sum": lambda a: torch.sum(t(a)),
                "mean": lambda a: torch.mean(t(a)),
                "dot": dot,
            },
        )

    def _t(self, a: Any) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            return a
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def asarray(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=self.dtype, device=self.device)

    def transpose(self, a: Any) -> Any:
        a = self._t(a)
        # x.T is deprecated for ndim != 2; reversing the dimensions is what numpy's .T does.
        return a.permute(*range(a.ndim - 1, -1, -1)) if a.ndim != 2 else a.transpose(0, 1)

    def ones_like(self, a: Any) -> Any:
        return torch.ones_like(self._t(a))
