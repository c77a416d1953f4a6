"""The forward, backward and reference of a case: a program, or a Python callable.

A case file may name a callable as ``"package.module:function"`` (or ``package.module:Class``)
instead of writing a program. Importing it is the only way a case file runs Python code, so
the name must be on the allow-list (:mod:`gradcheck_suite._trust`), and it is matched when the
file loads but imported only when the case is checked (:meth:`CallTarget.resolved`): loading,
listing and collecting cases import nothing.

Calling protocol (README, "Checking your own code"):

* ``args`` lists the input and constant names passed positionally, default: every input, then
  every constant, in file order. ``kwargs`` are literal keyword arguments (``stride = 1``).
* forward ``returns = "output"`` (default): the callable returns the output, or a tuple/list
  of outputs in the order of ``output``, or a dict keyed by output name.
* forward ``returns = "cache"`` (cs231n): it returns ``out, cache`` (``out1, out2, ..., cache``
  with several outputs); the backward is then called as ``backward(dout, cache)``
  (``backward(dout1, dout2, ..., cache)``).
* a plain backward (no cache) is called as ``backward(dout..., *forward args)``, or with its own
  ``args`` (names of inputs, constants, outputs and ``d<output>``).
* a backward returns the gradients of the case's inputs in ``[inputs]`` order (a single array
  for one input), or a dict keyed by ``d<input>`` or ``<input>``.
* a ``torch.autograd.Function`` subclass as the forward is called through ``.apply``; its own
  backward is the manual source, so the case has no ``[backward]``.
* ``array = "numpy"`` (default) or ``"torch"`` says which arrays the callable takes. A torch
  forward that is not an ``autograd.Function`` is differentiated by autograd directly; for
  the others autograd differentiates the case's ``[reference]`` (a torch callable or a
  program), and a case without one is checked two ways.

Callables cannot run inside ``torch.func.vmap`` in general (numpy code, ``.item()``, custom
Functions without a vmap rule), so the numeric source evaluates them one perturbation at a
time, in float64, and always with finite differences (numpy code would silently drop the
imaginary part the complex step needs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._backends import Backend, NumpyBackend, TorchBackend
from ._errors import CaseError
from ._program import Program, Statement
from ._trust import Trust, split_target

__all__ = [
    "RefusedGradient",
    "Backward",
    "CallTarget",
    "Forward",
    "bind_constants",
    "import_target",
    "is_autograd_function",
]

# A constant is an integer (static: shapes, slices), a float, an integer or float array, or a
# dict of parameters for callables (cs231n's conv_param).
Constant = Any


class RefusedGradient(CaseError):
    """An autograd.Function's backward returned a gradient torch's engine refuses."""


def import_target(target: str, exact: bool = True) -> Any:
    """``package.module:qualname`` -> the object; raises ImportError/AttributeError/ValueError.

    Only for a name the allow-list already let through (:meth:`Trust.refusal`)."""
    return Trust.resolve(target, exact)


def is_autograd_function(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.autograd.Function)


def bind_constants(constants: Mapping[str, Constant], backend: Backend) -> dict[str, Any]:
    """The constants as ``backend``'s values: floats in its dtype, integer arrays as indices."""
    out: dict[str, Any] = {}
    for name, value in constants.items():
        if isinstance(value, (int, dict)):  # static integers and parameter dicts pass as they are
            out[name] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "iu":
            out[name] = backend.asindex(value)
        else:
            out[name] = backend.asarray(value)
    return out


def _is_float_dtype(dtype: Any) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.floating))


def _to_library(value: Any, array: str) -> Any:
    """A value as the callable's library wants it (numpy or torch), always a copy: a callable
    that writes into its argument (`x **= 2`) must not move the point the other sources see."""
    if array == "numpy":
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype in (torch.bfloat16, torch.float16):
                # numpy has no bfloat16 and computes float16 one rounded operation at a time:
                # the callable computes in float32 on the dtype's values and _from_library
                # rounds its results back (storage in the dtype, float32 arithmetic, as a
                # kernel with float32 accumulation)
                value = value.float()
            return value.numpy().copy()
        return value.copy() if isinstance(value, np.ndarray) else value
    if isinstance(value, np.ndarray):
        if value.dtype == np.longdouble:  # torch has no long double: such runs are skipped
            raise TypeError("a torch callable cannot run in long double")
        return torch.from_numpy(np.array(value, copy=True, order="C"))
    if isinstance(value, torch.Tensor):
        return value.clone()  # differentiable, so autograd still reaches the leaf
    return value


def _from_library(value: Any, backend: Backend) -> Any:
    """A callable's result as ``backend``'s array, keeping the autograd graph of torch results."""
    if isinstance(backend, TorchBackend):
        if isinstance(value, torch.Tensor):
            return value
        return backend.asarray(value)
    if isinstance(value, torch.Tensor):
        # through float64 (exact): numpy cannot take a bfloat16 tensor
        value = value.detach().to("cpu", torch.float64).numpy()
    return backend.asarray(value)


def _real_gradient(value: Any, name: str, call: CallTarget) -> None:
    """A gradient of real inputs is real and floating-point: converting a complex one would drop
    its imaginary part silently, an integer or boolean one hides a wrong dtype."""
    if isinstance(value, torch.Tensor):
        kind = "c" if value.is_complex() else ("f" if value.is_floating_point() else "i")
        dtype: Any = value.dtype
    else:
        arr = np.asarray(value)
        kind, dtype = arr.dtype.kind, arr.dtype
    if kind == "c":
        raise call.error(f"returned {name} as complex values ({dtype}); a gradient of real inputs is real")
    if kind != "f":
        raise call.error(f"returned {name} as {dtype}, not floating-point values")


@dataclass(frozen=True)
class CallTarget:
    """A callable named by a case file (or handed to :func:`gradcheck_suite.check`), with how
    to call it."""

    target: str  # as written: "package.module:function" (check(): the function's name)
    fn: Any  # None until resolved(): a case file's callable is imported only when it is checked
    args: tuple[str, ...]
    kwargs: Mapping[str, Any]
    array: str | None  # "numpy" or "torch"; None: decided on import (torch for an autograd.Function)
    returns: str = "output"  # "output" or "cache" (forward only)
    role: str = "forward"  # forward, backward or reference: names it in errors
    case: str = ""
    file: Path | None = None
    line: int | None = None
    # check()'s protocol: the inputs go by name, fn(**inputs) and backward(dout, **inputs);
    # the caller promises that fn runs under vmap, and may declare it analytic
    keywords: bool = False
    vmap: bool = False
    analytic: bool = False
    # Autograd through it runs hand-written backwards (an nn.Module built on custom
    # autograd.Functions): like an autograd.Function, its own backward is the manual source.
    own_backward: bool = False
    # False: autograd differentiates the case's reference instead (check(fn, reference=...)).
    autograd: bool = True
    # False: forward-mode AD cannot go through it (a module's custom Functions define no jvp).
    forward_ad: bool = True
    exact: bool = True  # allowed by an exact allow-list entry, not a wildcard

    @property
    def is_function(self) -> bool:
        return is_autograd_function(self.fn)

    @property
    def brings_backward(self) -> bool:
        """Its own backward (an autograd.Function's, a module's custom layers') is the manual source."""
        return self.is_function or self.own_backward

    def resolved(self) -> CallTarget:
        """This target with its function imported (a no-op once it is)."""
        if self.fn is not None:
            return self
        try:
            fn = import_target(self.target, self.exact)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the case's error
            hint = " (is the folder holding the package on PYTHONPATH?)" if isinstance(exc, ModuleNotFoundError) else ""
            raise self.error(f"cannot import: {type(exc).__name__}: {exc}{hint}", imported=False) from None
        if not callable(fn):
            raise self.error(f"is a {type(fn).__name__}, not a function or class", imported=False)
        array = self.array or ("torch" if is_autograd_function(fn) else "numpy")
        return replace(self, fn=fn, array=array)

    def error(self, message: str, imported: bool = True) -> CaseError:
        # "cannot import forward callable `x`" reads better than "forward callable `x`: cannot import"
        text = f"{self.role} callable `{self.target}`: {message}"
        if not imported and message.startswith("cannot import"):
            text = f"cannot import {self.role} callable `{self.target}`{message[len('cannot import') :]}"
        return CaseError(
            text,
            file=self.file,
            line=self.line,
            key=self.role,
            case=self.case,
        )

    def invoke(self, args: Sequence[Any], named: Mapping[str, Any] | None = None) -> Any:
        fn = self.fn.apply if self.is_function else self.fn
        try:
            if self.is_function:
                # autograd.Function.apply takes no keywords: literal kwargs follow positionally
                return fn(*args, *self.kwargs.values())
            return fn(*args, **(named or {}), **self.kwargs)
        except CaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: report it against the case
            how = " under torch.func.vmap (the numeric source batches its calls)" if _batched(args, named) else ""
            raise self.error(f"raised {type(exc).__name__}{how}: {exc}") from exc


def _batched(args: Sequence[Any], named: Mapping[str, Any] | None) -> bool:
    # Only words the error message: a private helper, so its absence just drops the hint.
    is_batched = getattr(torch._C._functorch, "is_batchedtensor", None)
    values = [*args, *(named or {}).values()]
    return is_batched is not None and any(isinstance(v, torch.Tensor) and is_batched(v) for v in values)


def _split(result: Any, names: Sequence[str], call: CallTarget, what: str) -> dict[str, Any]:
    """A callable's result (one value, a tuple/list, or a dict) as ``{name: value}``."""
    if isinstance(result, Mapping):
        found = {}
        known: set[Any] = set()
        for n in names:
            aliases = (n, n[1:]) if n.startswith("d") else (n,)  # a gradient by `dx` or by `x`
            known.update(aliases)
            for k in aliases:
                if k in result:
                    found[n] = result[k]
                    break
            else:
                raise call.error(f"returned a dict without `{n}` (keys: {', '.join(map(str, result))})")
        extra = [str(k) for k in result if k not in known]
        if extra:
            raise call.error(f"returned a dict with unknown key(s) {', '.join(f'`{k}`' for k in extra)}")
    elif len(names) == 1 and not isinstance(result, (tuple, list)):
        found = {names[0]: result}
    elif not isinstance(result, (tuple, list)):
        raise call.error(
            f"returned one {type(result).__name__}, expected {len(names)} {what} ({', '.join(names)});"
            " return a tuple in that order or a dict"
        )
    elif len(result) != len(names):
        raise call.error(f"returned {len(result)} {what}, expected {len(names)} ({', '.join(names)})")
    else:
        found = dict(zip(names, result, strict=True))
    for n, v in found.items():
        if v is None:
            raise call.error(f"returned None for `{n}`")
    return found


def _real_array(value: Any, name: str, call: CallTarget) -> None:
    """A value a callable returns for an output or a gradient must be real floating point: a
    float, a numpy float array or scalar, or a float tensor. An int, a bool, a string or any
    other object would be read as a constant (an "inconclusive" check of nothing) or fail deep
    inside a source, so it is the callable's located error here."""
    if isinstance(value, float):
        return
    if isinstance(value, torch.Tensor):
        ok = value.is_floating_point() or value.is_complex()
        kind = str(value.dtype)
    elif isinstance(value, (np.ndarray, np.generic)):
        ok = value.dtype.kind in "fc"
        kind = f"numpy {value.dtype}"
    else:
        ok, kind = False, type(value).__name__
    if not ok or (not isinstance(value, torch.Tensor) and np.asarray(value).dtype.kind == "c"):
        raise call.error(f"returned `{name}` as {kind}: it must be a float array, a float tensor or a float")


def _one_real_tensor(result: Any, call: CallTarget, backend: Backend) -> None:
    """check()'s forward returns one real tensor (complex only for the complex step)."""
    if not isinstance(result, torch.Tensor):
        raise call.error(f"must return one torch tensor, not {type(result).__name__}")
    if result.is_complex() and not (isinstance(backend, TorchBackend) and backend.dtype.is_complex):
        raise call.error("returned a complex tensor for real inputs; only real outputs are checked")


@dataclass(frozen=True)
class Forward:
    """A case's forward pass (or a torch reference), with the case's constants bound.

    ``run`` has :meth:`Program.run`'s signature, so every source calls a program and a
    callable the same way; the constants join the environment there.
    """

    program: Program | None
    call: CallTarget | None
    outputs: tuple[str, ...]
    constants: Mapping[str, Constant] = field(default_factory=dict)

    @property
    def statements(self) -> tuple[Statement, ...]:
        return self.program.statements if self.program else ()

    @property
    def assigned(self) -> list[str]:
        if self.program:
            return self.program.assigned
        cache = ["cache"] if self.call and self.call.returns == "cache" else []
        return [*self.outputs, *cache]

    @property
    def analytic(self) -> bool:
        # A callable may be anything, kinks included (finite differences with kink detection),
        # unless check()'s caller declares it analytic.
        if self.program:
            return self.program.analytic
        return self.call is not None and self.call.analytic

    @property
    def functions(self) -> frozenset[str]:
        return self.program.functions if self.program else frozenset()

    @property
    def vmap(self) -> bool:
        """Whether ``run`` works inside ``torch.func.vmap`` (programs do; callables may not,
        unless check()'s protocol promises it)."""
        return self.program is not None or (self.call is not None and self.call.vmap)

    @property
    def torch_differentiable(self) -> bool:
        """Autograd through it is independent of the manual source."""
        if self.program is not None:
            return True
        assert self.call is not None
        return self.call.array == "torch" and not self.call.brings_backward and self.call.autograd

    @property
    def label(self) -> str:
        return "program" if self.call is None else self.call.target

    def with_constants(self, constants: Mapping[str, Constant]) -> Forward:
        return replace(self, constants=constants)

    def resolved(self) -> Forward:
        """This forward with its callable imported (see CallTarget.resolved)."""
        return self if self.call is None else replace(self, call=self.call.resolved())

    def run(
        self, env: Mapping[str, Any], backend: Backend, trace: list[tuple[Statement, Any]] | None = None
    ) -> dict[str, Any]:
        values = {**bind_constants(self.constants, backend), **env}
        if self.program is not None:
            return self.program.run(values, backend, trace)
        assert self.call is not None
        call = self.call.resolved()  # a no-op after Case.resolved(), as every check does first
        try:
            args = [_to_library(values[n], call.array or "numpy") for n in call.args]
        except TypeError as exc:
            raise call.error(str(exc)) from None
        if call.keywords:
            result = call.invoke([], dict(zip(call.args, args, strict=True)))
            several = len(self.outputs) > 1 and isinstance(result, (tuple, list))
            for part in result if several else (result,):
                _one_real_tensor(part, call, backend)
        else:
            result = call.invoke(args)
        names = list(self.outputs)
        if call.returns == "cache":
            names.append("cache")
        parts = _split(result, names, call, "values" if call.returns == "output" else "values (outputs, cache)")
        for o in self.outputs:
            _real_array(parts[o], o, call)
            parts[o] = _from_library(parts[o], backend)
        values.update(parts)
        return values


@dataclass(frozen=True)
class Backward:
    """A case's hand-written backward: a program, a callable, or an autograd.Function's own."""

    program: Program | None
    call: CallTarget | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    forward: Forward
    constants: Mapping[str, Constant] = field(default_factory=dict)

    @property
    def statements(self) -> tuple[Statement, ...]:
        return self.program.statements if self.program else ()

    @property
    def assigned(self) -> list[str]:
        return self.program.assigned if self.program else [f"d{n}" for n in self.inputs]

    @property
    def longdouble(self) -> bool:
        """Whether the manual source can rerun it in long double to measure its rounding.

        Only a program after a program forward (the rerun runs both): torch has no long double,
        and numpy code often allocates float64 buffers that would make the rerun measure nothing."""
        return self.program is not None and self.forward.program is not None

    @property
    def label(self) -> str:
        if self.program is not None:
            return "backward program"
        if self.call is not None:
            return self.call.target
        assert self.forward.call is not None
        if self.forward.call.own_backward:
            return f"{self.forward.call.target}'s custom backward"
        return f"{self.forward.call.target}.backward"

    def with_constants(self, constants: Mapping[str, Constant], forward: Forward) -> Backward:
        return replace(self, constants=constants, forward=forward)

    def resolved(self, forward: Forward) -> Backward:
        """This backward with its callable imported, after ``forward`` (already resolved)."""
        return replace(self, call=self.call.resolved() if self.call else None, forward=forward)

    def run(
        self, values: Mapping[str, Any], backend: Backend, trace: list[tuple[Statement, Any]] | None = None
    ) -> dict[str, Any]:
        """``values``: the forward's values and ``d<output>``; returns them with ``d<input>``."""
        env = {**bind_constants(self.constants, backend), **values}
        if self.program is not None:
            return self.program.run(env, backend, trace)
        if self.call is None:
            grads = self._autograd_function(env, backend)
        else:
            call = self.call.resolved()
            douts = [f"d{o}" for o in self.outputs]
            if self.forward.call is not None and self.forward.call.returns == "cache":
                names = [*douts, "cache"]
            elif call.args:
                names = list(call.args)
            else:
                fwd_args = self.forward.call.args if self.forward.call else (*self.inputs, *self.constants)
                names = [*douts, *fwd_args]
            try:
                args = [_to_library(env[n], call.array or "numpy") for n in names]
            except TypeError as exc:
                raise call.error(str(exc)) from None
            if call.keywords:  # backward(dout, **inputs)
                inputs = dict(zip(self.inputs, args[len(douts) :], strict=True))
                result = call.invoke(args[: len(douts)], inputs)
            else:
                result = call.invoke(args)
            grads = _split(result, [f"d{n}" for n in self.inputs], call, "gradients")
            for k, v in grads.items():
                _real_array(v, k, call)
                _real_gradient(v, k, call)
        return {**env, **{k: _from_library(v, backend) for k, v in grads.items()}}

    def _autograd_function(self, env: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
        """The Function's own backward: torch.autograd.grad through ``Function.apply``."""
        call = self.forward.call
        assert call is not None
        if isinstance(backend, TorchBackend):
            # bfloat16, float16 and devices other than the CPU: the tensors are already there
            tdtype, where = backend.dtype, backend.device
        elif not isinstance(backend, NumpyBackend) or not _is_float_dtype(backend.dtype):
            raise call.error("an autograd.Function's backward runs on float32 or float64 only")
        elif backend.dtype == np.longdouble:
            raise call.error("an autograd.Function cannot run in long double")
        else:
            tdtype, where = (torch.float32 if backend.dtype == np.float32 else torch.float64), torch.device("cpu")

        def tensor(v: Any) -> torch.Tensor:
            if isinstance(v, torch.Tensor):
                return v.detach().to(where, tdtype)
            return torch.as_tensor(np.asarray(v), dtype=tdtype, device=where)

        leaves = {n: tensor(env[n]).clone().requires_grad_(True) for n in self.inputs}
        args = [leaves[n] if n in leaves else _to_library(env[n], "torch") for n in call.args]
        result = call.invoke([], dict(zip(call.args, args, strict=True))) if call.keywords else call.invoke(args)
        outs = _split(result, list(self.outputs), call, "outputs")
        pairs = [
            (outs[o], tensor(env[f"d{o}"]))
            for o in self.outputs
            if isinstance(outs[o], torch.Tensor) and outs[o].requires_grad
        ]
        if not pairs:
            raise call.error("no output depends on an input through the Function")
        try:
            grads = torch.autograd.grad(
                [p[0] for p in pairs], list(leaves.values()), [p[1] for p in pairs], allow_unused=True
            )
        except Exception as exc:  # noqa: BLE001 - the user's backward
            if isinstance(exc, RuntimeError) and "returned an invalid gradient" in str(exc):
                # torch's engine refuses what the backward returned (a gradient on another
                # device, of another shape): a wrong gradient on this device, not a broken case
                refused = call.error(f"backward returned a gradient torch refuses: {exc}")
                raise RefusedGradient(refused.message, file=refused.file, line=refused.line, key=refused.key) from exc
            raise call.error(f"backward raised {type(exc).__name__}: {exc}") from exc
        done = {
            n: (g if g is not None else torch.zeros_like(leaves[n])).detach()
            for n, g in zip(leaves, grads, strict=True)
        }
        if isinstance(backend, TorchBackend):
            return {f"d{n}": g for n, g in done.items()}
        return {f"d{n}": g.numpy() for n, g in done.items()}


def make_call(
    spec: Mapping[str, Any],
    *,
    role: str,
    default_args: Sequence[str],
    names: Sequence[str],
    case: str,
    file: Path,
    line: int | None,
    err: Callable[[str, str | None], CaseError],
    trust: Trust | None = None,
) -> CallTarget:
    """Validate a `callable = ...` section and match its target against ``trust`` (the
    defaults when None), importing nothing: :meth:`CallTarget.resolved` imports it later."""
    trust = Trust() if trust is None else trust
    target = spec["callable"]
    if not isinstance(target, str):
        raise err('`callable` must be a string "package.module:function"', "callable")
    refused = trust.refusal(target)
    if refused:
        raise err(refused, "callable")
    split_target(target)  # refusal() accepted its form
    args = spec.get("args", list(default_args))
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise err("`args` must be a list of names", "args")
    unknown = [a for a in args if a not in names]
    if unknown:
        raise err(f"`args` names `{unknown[0]}`, which is not one of: {', '.join(names)}", "args")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise err("`kwargs` must be a table of literal keyword arguments", "kwargs")
    # known without importing for torch.*; an autograd.Function is recognised on import
    array = spec.get("array", "torch" if target.startswith("torch.") else None)
    if array not in ("numpy", "torch", None):
        raise err('`array` must be "numpy" or "torch"', "array")
    returns = spec.get("returns", "output")
    if returns not in ("output", "cache"):
        raise err('`returns` must be "output" or "cache"', "returns")
    return CallTarget(
        target=target,
        fn=None,
        args=tuple(args),
        kwargs=dict(kwargs),
        array=array,
        returns=returns,
        role=role,
        case=case,
        file=file,
        line=line,
        exact=trust.exactly(target),
    )
