"""`gradcheck show` for a forward or backward that is a Python callable: the call as the case
makes it, each argument and each result summarised (shape, dtype, range), where a program
would show its lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._case import Case

__all__ = ["backward_call", "forward_call", "summary"]


def summary(value: Any) -> str:
    """An array as its shape, dtype and range; a scalar whole; a cache as what it holds."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.ndim > 0:
        shape = "x".join(map(str, value.shape))
        if value.dtype.kind in "fiu" and value.size:
            finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
            if finite.size:
                lo, hi, mean = float(finite.min()), float(finite.max()), float(finite.mean())
                return f"[{shape}] {value.dtype} min {lo:.4g} max {hi:.4g} mean {mean:.4g}"
        return f"[{shape}] {value.dtype}"
    if isinstance(value, (np.ndarray, np.generic)):
        return repr(value.item())
    if isinstance(value, (tuple, list)):
        kinds = ", ".join(_kind(v) for v in value)
        return f"{type(value).__name__} of {len(value)}: ({kinds})"
    return repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)) and np.ndim(value) > 0:
        return f"[{'x'.join(map(str, np.shape(value)))}]"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _call_text(target: str, args: list[str], kwargs: Mapping[str, Any]) -> str:
    parts = [*args, *(f"{k}={v!r}" for k, v in kwargs.items())]
    return f"{target}({', '.join(parts)})"


def forward_call(case: Case, values: Mapping[str, Any]) -> list[str]:
    """The forward's call, its arguments and its results."""
    call = case.forward.call
    assert call is not None
    results = [*case.outputs, *(["cache"] if call.returns == "cache" else [])]
    target = f"{call.target}.apply" if call.is_function else call.target
    lines = [f"  {', '.join(results)} = {_call_text(target, list(call.args), call.kwargs)}"]
    lines += [f"      {n} = {summary(values[n])}" for n in call.args if n in values]
    lines += [f"   -> {n} = {summary(values[n])}" for n in results if n in values]
    return lines


def backward_call(case: Case, values: Mapping[str, Any]) -> list[str]:
    """The backward's call as Backward.run makes it, its arguments and the gradients."""
    backward = case.backward
    assert backward is not None
    douts = [f"d{o}" for o in case.outputs]
    grads = [f"d{n}" for n in case.inputs]
    forward = case.forward.call
    if backward.call is None:
        assert forward is not None
        lines = [f"  {', '.join(grads)} = {forward.target}.backward(ctx, {', '.join(douts)})  (through autograd)"]
        names = douts
    else:
        call = backward.call
        # the calling convention of _case_callables.Backward.run
        if forward is not None and forward.returns == "cache":
            names = [*douts, "cache"]
        elif call.args:
            names = list(call.args)
        else:
            names = [*douts, *(forward.args if forward else (*case.inputs, *case.constants))]
        lines = [f"  {', '.join(grads)} = {_call_text(call.target, names, call.kwargs)}"]
    lines += [f"      {n} = {summary(values[n])}" for n in names if n in values]
    lines += [f"   -> {n} = {summary(values[n])}" for n in grads if n in values]
    return lines
