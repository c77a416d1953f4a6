"""Static shapes: a case's programs run once on torch "meta" tensors before anything real runs.

A meta tensor has a shape and a dtype but no storage, so this pass computes the shape of every
intermediate (``x @ x.T``, ``one_hot(y, 10 ** 9)``, ``arange(n)``) without allocating it, and
refuses a case whose arrays would be larger than ``--max-elements``, or whose values at one
point would together hold more than HELD times that, with the statement's file and line. Programs only:
a Python callable's shapes are unknown until it runs (the timeout bounds it instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ._backends import TorchBackend
from ._case import Case
from ._errors import CaseError, LimitError
from ._limits import Limits

__all__ = ["HELD", "check_shapes"]

# The values the programs keep at one point (every statement's result stays in scope) may
# together hold this many times --max-elements: 1 GiB of float64 at the default.
HELD = 8


class _SizeGuard(TorchFunctionMode):
    """Refuses every torch result (a whole statement's or an operand's inside it) that holds
    more than ``max_elements`` elements."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.limits.max_elements:
                raise LimitError(
                    f"an intermediate of shape {list(t.shape)} holds {t.numel()} elements,"
                    f" over --max-elements {self.limits.max_elements}"
                )
        return out


def _meta(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float64, device="meta")


def _held(values: Mapping[str, Any]) -> int:
    return sum(v.numel() for v in values.values() if isinstance(v, torch.Tensor))


def check_shapes(case: Case, limits: Limits) -> None:
    """Raise LimitError, located at the statement, when a program of ``case`` would build an
    array past the limits; every other failure is left to the real run to report."""
    if case.forward.program is None:
        return
    be = TorchBackend(torch.float64, "meta")
    env = {k: _meta(tuple(v.shape)) for k, v in case.inputs.items()}
    try:
        with _SizeGuard(limits):
            values = case.forward.run(env, be)
            if case.reference is not None and case.reference.program is not None:
                case.reference.run(env, be)
            if case.backward is not None and case.backward.program is not None:
                douts = {f"d{o}": _meta(tuple(be._t(values[o]).shape)) for o in case.outputs if o in values}
                values = case.backward.run({**values, **douts}, be)
    except LimitError:
        raise
    except (CaseError, RuntimeError, ValueError, TypeError, IndexError, KeyError):
        # a shape error or an operation meta tensors lack: the real run reports or does it
        return
    held = _held(values)
    if held > HELD * limits.max_elements:
        raise LimitError(
            f"the programs hold {held} elements at one point, over {HELD} x --max-elements {limits.max_elements}",
            file=case.file,
            key="forward",
            case=case.name,
        )
