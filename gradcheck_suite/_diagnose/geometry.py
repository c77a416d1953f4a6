"""The window geometry of a pooling or convolution case, where its file says it.

Read from the ``[reference]`` call's keywords (``kernel_size``, ``stride``, ``padding``, as
torch's ``max_pool2d``, ``avg_pool2d`` and ``conv2d`` take them) or from a parameter table in
``[constants]`` (cs231n's ``pool_param = {pool_height, pool_width, stride}`` and
``conv_param = {stride, pad}`` with the kernel from a 4-d weight input ``w``). It applies to
the windowed input: the first argument of the forward call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._case import Case

__all__ = ["Windows", "coverage", "windows"]


@dataclass(frozen=True)
class Windows:
    input: str  # the input the windows slide over (its last two axes)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int] = (0, 0)

    @property
    def overlapping(self) -> bool:
        return any(s < k for s, k in zip(self.stride, self.kernel, strict=True))

    def describe(self) -> str:
        k = f"{self.kernel[0]}x{self.kernel[1]}"
        s = str(self.stride[0]) if self.stride[0] == self.stride[1] else f"{self.stride[0]}x{self.stride[1]}"
        return f"{k} windows at stride {s}"


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def _from_kwargs(kwargs: Mapping[str, Any], inputs: Mapping[str, np.ndarray], first: str) -> Windows | None:
    kernel = _pair(kwargs.get("kernel_size"))
    if kernel is None:
        weight = next((v for k, v in inputs.items() if k != first and np.ndim(v) == 4), None)
        if weight is None or "stride" not in kwargs and "padding" not in kwargs:
            return None
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride = _pair(kwargs.get("stride", kernel)) or kernel
    pad = _pair(kwargs.get("padding", 0)) or (0, 0)
    return Windows(first, kernel, stride, pad)


def _from_params(params: Mapping[str, Any], inputs: Mapping[str, np.ndarray], first: str) -> Windows | None:
    if "pool_height" in params and "pool_width" in params:
        kernel = (int(params["pool_height"]), int(params["pool_width"]))
        stride = _pair(params.get("stride", kernel)) or kernel
        return Windows(first, kernel, stride)
    if "stride" in params and "pad" in params:
        return _from_kwargs({"stride": params["stride"], "padding": params["pad"]}, inputs, first)
    return None


def windows(case: Case) -> Windows | None:
    """The case's windows, or None when its file does not say."""
    call = case.forward.call or (case.reference.call if case.reference else None)
    if call is None or not call.args or call.args[0] not in case.inputs:
        return None
    first = call.args[0]
    x = case.inputs[first]
    if np.ndim(x) < 2:
        return None
    if case.reference is not None and case.reference.call is not None:
        found = _from_kwargs(case.reference.call.kwargs, case.inputs, first)
        if found is not None:
            return found
    for value in case.constants.values():
        if isinstance(value, dict):
            found = _from_params(value, case.inputs, first)
            if found is not None:
                return found
    return None


def coverage(w: Windows, shape: tuple[int, ...]) -> np.ndarray:
    """How many windows cover each element of the last two axes of ``shape``."""
    counts = []
    for n, k, s, p in zip(shape[-2:], w.kernel, w.stride, w.pad, strict=True):
        c = np.zeros(n, dtype=int)
        for start in range(-p, n + p - k + 1, s):
            lo, hi = max(start, 0), min(start + k, n)
            if lo < hi:
                c[lo:hi] += 1
        counts.append(c)
    # windows form a grid: an element is in (windows over its row) x (windows over its column)
    return np.outer(counts[0], counts[1])
