"""``torch.nn.Module``s as cases: the gradient of every parameter and every floating input.

A module becomes a case whose inputs are its forward's floating tensors followed by its
trainable parameters, named as ``named_parameters()`` names them (``0.weight``). Every source
calls it through :func:`torch.func.functional_call` with those tensors standing in for the
parameters, so the module itself is never changed. Buffers (and frozen parameters) are left
alone: each call gets copies of them in the call's dtype and device, so a batch norm's running
statistics neither drift between the many evaluations nor leak into the module.

Which source is which:

* a module built on custom ``torch.autograd.Function``s (found by running it once and looking
  for their nodes in the autograd graph) brings its own backward: that is the **manual**
  source, and **autograd** differentiates the ``reference`` module (pure torch, the same
  parameter names) when one is given; without one it is checked two ways.
* a module of plain torch operations has no hand-written backward: autograd differentiates it
  directly, and it is checked two ways (autograd, numeric).
* **numeric** differentiates the module's forward, under vmap where it runs (see the numeric
  runner's fallback).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ._case import Case
from ._case_callables import Backward, CallTarget, Forward
from ._errors import CaseError

__all__ = ["ModuleSpec", "custom_functions", "module_case", "module_forward", "split_inputs"]


def _where(obj: Any) -> tuple[Path | None, int | None]:
    try:
        target = type(obj) if isinstance(obj, nn.Module) else obj
        file = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return None, None
    return (Path(file) if file else None), line


def _positional_names(module: nn.Module, n: int) -> list[str]:
    """Names for ``n`` positional inputs: the forward's own parameter names where it has them."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    named = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [named[k] if k < len(named) else f"input{k}" for k in range(n)]


@dataclass(frozen=True)
class ModuleSpec:
    """How a module is called: its inputs by name (positional first, then keywords), which of
    them are differentiated, and its trainable parameters."""

    positional: tuple[str, ...]
    keywords: tuple[str, ...]
    parameters: tuple[str, ...]

    @property
    def args(self) -> tuple[str, ...]:
        return (*self.positional, *self.keywords, *self.parameters)


def split_inputs(
    module: nn.Module, inputs: Any, positional: bool = False
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]:
    """``inputs`` (one tensor, a tuple of positional inputs, or a mapping of keyword inputs) as
    (positional names, keyword names, {name: value}). ``positional``: a mapping's values go
    positionally, in its order, under its names (a case file's inputs)."""
    if isinstance(inputs, Mapping) and positional:
        return tuple(inputs), (), dict(inputs)
    if isinstance(inputs, Mapping):
        names = list(inputs)
        bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
        if bad:
            raise CaseError(f"input name {bad[0]!r} is not an identifier (keyword inputs are passed by name)")
        return (), tuple(names), dict(inputs)
    values = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    if not values:
        raise CaseError("inputs must hold at least one value")
    names = _positional_names(module, len(values))
    return tuple(names), (), dict(zip(names, values, strict=True))


def _state_like(tensor: torch.Tensor, like: torch.Tensor | None) -> torch.Tensor:
    # A copy, so in-place updates (running statistics, counters) stay inside one call.
    if like is not None and tensor.is_floating_point():
        dtype = like.real.dtype if like.is_complex() else like.dtype
        return tensor.detach().to(device=like.device, dtype=dtype, copy=True)
    return tensor.detach().clone() if like is None else tensor.detach().to(device=like.device, copy=True)


def module_forward(module: nn.Module, spec: ModuleSpec) -> Callable[..., Any]:
    """``forward(**named)``: the module called through functional_call with the named
    parameters in place of its own; buffers and frozen parameters as copies in the call's dtype."""
    trainable = set(spec.parameters)
    frozen = {n: p for n, p in module.named_parameters() if n not in trainable}
    buffers = dict(module.named_buffers())

    def forward(**named: Any) -> Any:
        like = next((named[n] for n in spec.parameters), None)
        if like is None:
            like = next((v for v in named.values() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
        state = {n: _state_like(t, like) for n, t in {**buffers, **frozen}.items()}
        state.update({n: named[n] for n in spec.parameters})
        args = tuple(named[n] for n in spec.positional)
        kwargs = {n: named[n] for n in spec.keywords}
        return functional_call(module, state, args, kwargs)

    forward.__name__ = type(module).__name__
    forward.__qualname__ = type(module).__qualname__
    return forward


def custom_functions(outputs: Sequence[torch.Tensor]) -> list[type]:
    """The custom autograd.Functions whose nodes the outputs' autograd graph holds."""
    found: dict[type, None] = {}
    seen: set[int] = set()
    stack = [o.grad_fn for o in outputs if isinstance(o, torch.Tensor) and o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found[getattr(node, "_forward_cls", type(node))] = None
        stack.extend(next_node for next_node, _ in node.next_functions if next_node is not None)
    return list(found)


def _outputs_of(result: Any, label: str) -> list[torch.Tensor]:
    parts = list(result) if isinstance(result, (tuple, list)) else [result]
    if not parts or not all(isinstance(p, torch.Tensor) for p in parts):
        raise CaseError(f"module `{label}` must return a tensor or a tuple of tensors, not {type(result).__name__}")
    return parts


def _float64(value: Any, name: str) -> np.ndarray:
    array = value.detach().to("cpu", torch.float64).numpy() if isinstance(value, torch.Tensor) else value
    array = np.asarray(array, dtype=np.float64)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise CaseError(f"`{name}` is empty, NaN or infinite", key="inputs")
    return array


def _is_floating(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    return bool(np.issubdtype(np.asarray(value).dtype, np.floating))


def module_case(
    module: nn.Module,
    inputs: Any,
    *,
    reference: nn.Module | None = None,
    upstream: Any = None,
    name: str | None = None,
    file: Path | None = None,
    line: int | None = None,
    target: str | None = None,
    outputs: Sequence[str] | None = None,
    upstreams: Mapping[str, np.ndarray | None] | None = None,
    positional: bool = False,
) -> Case:
    """A :class:`Case` checking ``module`` at ``inputs`` (see the module docstring).

    ``upstream``: the gradient flowing into the output (a sequence, one per output, for a
    module returning a tuple). Case files pass ``outputs`` and ``upstreams`` themselves.
    """
    if not isinstance(module, nn.Module):
        raise CaseError(f"expected a torch.nn.Module, not {type(module).__name__}")
    label = target or type(module).__name__
    case_name = name or type(module).__name__
    positional_names, keywords, values = split_inputs(module, inputs, positional)
    parameters = tuple(n for n, p in module.named_parameters() if p.requires_grad)
    clash = [n for n in parameters if n in values]
    if clash:
        raise CaseError(f"input `{clash[0]}` has the name of one of the module's parameters")
    floats = {n: _float64(v, n) for n, v in values.items() if _is_floating(v)}
    constants = {
        n: np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v).astype(np.int64)
        for n, v in values.items()
        if n not in floats
    }
    params = {n: _float64(p, n) for n, p in module.named_parameters() if n in parameters}
    if not floats and not params:
        raise CaseError(f"module `{label}` has no floating input and no trainable parameter to differentiate")
    spec = ModuleSpec(positional_names, keywords, parameters)
    forward_fn = module_forward(module, spec)
    probe = forward_fn(**_probe_inputs(spec, floats, constants, params))
    outs = _outputs_of(probe, label)
    hand_written = custom_functions(outs)
    if outputs is None:
        outputs = ("out",) if len(outs) == 1 else tuple(f"out{k}" for k in range(len(outs)))
    elif len(outputs) != len(outs):
        raise CaseError(f"module `{label}` returned {len(outs)} output(s), the case names {len(outputs)}")
    if upstreams is None:
        upstreams = _upstreams(upstream, outputs)
    where_file, where_line = _where(module)
    file, line = file or where_file, line or where_line

    jvp = getattr(torch.autograd.Function, "jvp", None)
    forward_ad = all(getattr(f, "jvp", None) is not jvp for f in hand_written)

    def call(fn: Callable[..., Any], role: str, own: bool, autograd: bool = True) -> CallTarget:
        return CallTarget(
            target=label if role == "forward" else f"{type(reference).__name__} (reference)",
            fn=fn,
            args=spec.args,
            kwargs={},
            array="torch",
            role=role,
            case=case_name,
            file=file,
            line=line,
            keywords=True,
            vmap=True,
            own_backward=own,
            autograd=autograd,
            forward_ad=forward_ad or role != "forward",
        )

    forward = Forward(None, call(forward_fn, "forward", bool(hand_written)), tuple(outputs), constants)
    backward = None
    if hand_written:
        backward = Backward(None, None, (*floats, *params), tuple(outputs), forward, constants)
    ref = None
    if reference is not None:
        ref = Forward(None, call(_reference_forward(reference, spec, label), "reference", False), tuple(outputs))
        ref = ref.with_constants(constants)
    return Case(
        name=case_name,
        description=(inspect.getdoc(type(module)) or "").split("\n", 1)[0],
        file=file or Path("<module>"),
        line=line,
        output=outputs[0],
        inputs={**floats, **params},
        forward=forward,
        backward=backward,
        upstream=upstreams.get(outputs[0]),
        outputs=tuple(outputs),
        upstreams=dict(upstreams),
        constants=constants,
        reference=ref,
    )


def _probe_inputs(
    spec: ModuleSpec, floats: Mapping[str, np.ndarray], constants: Mapping[str, np.ndarray], params: Any
) -> dict[str, Any]:
    named: dict[str, Any] = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in floats.items()}
    named.update({n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in params.items()})
    named.update({n: torch.as_tensor(v) for n, v in constants.items()})
    return {n: named[n] for n in spec.args}


def _reference_forward(reference: nn.Module, spec: ModuleSpec, label: str) -> Callable[..., Any]:
    if not isinstance(reference, nn.Module):
        raise CaseError(f"the reference of module `{label}` must be a torch.nn.Module too")
    theirs = {n for n, p in reference.named_parameters() if p.requires_grad}
    if theirs != set(spec.parameters):
        missing = sorted(set(spec.parameters) - theirs)
        extra = sorted(theirs - set(spec.parameters))
        raise CaseError(
            f"the reference module must have the same trainable parameters as `{label}`"
            + (f"; it lacks {', '.join(missing)}" if missing else "")
            + (f"; it also has {', '.join(extra)}" if extra else "")
        )
    return module_forward(reference, spec)


def _upstreams(upstream: Any, outputs: Sequence[str]) -> dict[str, np.ndarray | None]:
    if upstream is None:
        return {o: None for o in outputs}
    if len(outputs) == 1:
        return {outputs[0]: _float64(upstream, "upstream")}
    if not isinstance(upstream, (tuple, list)) or len(upstream) != len(outputs):
        raise CaseError(f"the module has {len(outputs)} outputs: give upstream as a sequence of {len(outputs)}")
    return {o: None if u is None else _float64(u, f"upstream of {o}") for o, u in zip(outputs, upstream, strict=True)}
