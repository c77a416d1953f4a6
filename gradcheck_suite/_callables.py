"""Python callables in place of a case's forward and backward programs.

The engine and its three sources use a case's programs through a small interface:
``run(env, backend, trace=None) -> env``, ``assigned``, ``analytic``, ``functions`` and
(for errors) ``statements``. :class:`CallableForward` and :class:`CallableBackward` provide
that interface over plain Python functions, so every source works on them unchanged:

* the forward is a **torch** function of named inputs returning one real tensor,
  ``fn(**inputs) -> Tensor``. The autograd source calls it on leaf tensors in the check's
  dtype and device; the numeric source calls it under :func:`torch.func.vmap` in float64
  (complex128 for the complex step), so it must be vmappable: no ``.item()``, no in-place
  writes into its inputs, no Python control flow on tensor values.
* the backward (optional) is the hand-written gradient,
  ``backward(grad_output, **inputs) -> gradients``: ``grad_output`` is the upstream gradient
  (ones shaped like the output when none is given), the inputs come as keyword tensors in
  the check's dtype on the CPU, and it returns a mapping ``{input name: gradient}``, a
  sequence of gradients in the inputs' order (as ``torch.autograd.Function.backward`` does)
  or, for a single input, one gradient. Gradients may be tensors or anything numpy can
  convert.

Where the engine runs a program on numpy (the manual source, the forward's finiteness
check) the adapters convert to torch tensors and back, in the same dtype.

A Python function cannot be inspected the way a program is, so ``analytic`` is whatever the
caller declares (default ``False``): numeric ``auto`` then takes Richardson differences with
kink detection rather than the complex step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._backends import Backend, TorchBackend
from ._case import Case
from ._errors import CaseError

__all__ = [
    "CallableForward",
    "CallableBackward",
    "Forward",
    "Backward",
    "callable_case",
    "to_point",
    "output_name",
]

Forward = Callable[..., torch.Tensor]
Backward = Callable[..., Any]

# Precisions torch can run a callable in.
_TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _where(fn: Callable[..., Any]) -> tuple[Path | None, int | None]:
    """The file and first line of ``fn``'s definition, so errors point at the user's code."""
    try:
        target = inspect.unwrap(fn)
        file = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return None, None
    return (Path(file) if file else None), line


class _Adapter:
    """What forward and backward adapters share: where the function is, how to convert."""

    key = ""

    def __init__(self, fn: Callable[..., Any], inputs: Sequence[str], output: str) -> None:
        self.fn = fn
        self.inputs = tuple(inputs)
        self.output = output
        self.label = _label(fn)
        self.file, self.line = _where(fn)
        # The engine's sources never look inside a callable; these keep its interface whole.
        self.statements: tuple[Any, ...] = ()
        self.functions: frozenset[str] = frozenset({self.label})
        # Neither a program nor a case file's callable (the _case_callables protocol).
        self.program = None
        self.call = None

    def with_constants(self, constants: Mapping[str, Any], forward: Any = None) -> Any:
        return self  # check() has no constants: every input is differentiated

    def error(self, message: str, line: int | None = None) -> CaseError:
        return CaseError(message, file=self.file, line=line or self.line, key=self.key)

    def _torch_dtype(self, backend: Backend) -> torch.dtype:
        name = str(np.dtype(getattr(backend, "dtype", "float64")))
        if name not in _TORCH_DTYPES:
            raise self.error(f"a Python callable runs in torch, which has no {name}")
        return _TORCH_DTYPES[name]

    def _tensors(self, env: Mapping[str, Any], names: Sequence[str], backend: Backend) -> dict[str, torch.Tensor]:
        if isinstance(backend, TorchBackend):
            return {k: backend._t(env[k]) for k in names}
        dtype = self._torch_dtype(backend)
        # A copy: a user function that writes into its argument must not change the point.
        return {k: torch.tensor(np.asarray(env[k]), dtype=dtype) for k in names}

    def _back(self, value: Any, what: str, backend: Backend) -> Any:
        """``value`` as the backend's array type (numpy arrays for the numpy backend)."""
        if isinstance(backend, TorchBackend):
            return backend._t(value)
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        try:
            return np.asarray(value, dtype=np.dtype(getattr(backend, "dtype", "float64")))
        except (TypeError, ValueError):
            raise self.error(f"{what} is not an array of numbers: {type(value).__name__}") from None

    def _call(self, args: Sequence[Any], kwargs: Mapping[str, Any], backend: Backend) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except CaseError:
            raise
        except Exception as exc:
            how = " under torch.func.vmap (the numeric source batches its calls)" if _in_vmap(kwargs) else ""
            raise self.error(f"`{self.label}` raised {type(exc).__name__}{how}: {exc}") from exc


def _in_vmap(kwargs: Mapping[str, Any]) -> bool:
    # Only words the error message: a private helper, so its absence just drops the hint.
    batched = getattr(torch._C._functorch, "is_batchedtensor", None)
    return batched is not None and any(isinstance(v, torch.Tensor) and batched(v) for v in kwargs.values())


class CallableForward(_Adapter):
    """A torch function ``fn(**inputs) -> Tensor`` as a case's forward program."""

    key = "forward"
    # The protocol asks for a vmappable torch function, and torch differentiates it.
    vmap = True
    torch_differentiable = True

    def __init__(self, fn: Forward, inputs: Sequence[str], output: str, *, analytic: bool = False) -> None:
        super().__init__(fn, inputs, output)
        self._analytic = analytic
        self.outputs = (output,)

    @property
    def assigned(self) -> list[str]:
        return [self.output]

    @property
    def analytic(self) -> bool:
        """Declared by the caller: a Python function cannot be checked for kinks."""
        return self._analytic

    def run(self, env: Mapping[str, Any], backend: Backend, trace: list[Any] | None = None) -> dict[str, Any]:
        out = self._call((), self._tensors(env, self.inputs, backend), backend)
        if not isinstance(out, torch.Tensor):
            raise self.error(f"`{self.label}` must return one torch tensor, not {type(out).__name__}")
        if out.is_complex() and not (isinstance(backend, TorchBackend) and backend.dtype.is_complex):
            raise self.error(f"`{self.label}` returned a complex tensor for real inputs; only real outputs are checked")
        return {**env, self.output: self._back(out, "the output", backend)}


class CallableBackward(_Adapter):
    """A hand-written gradient ``backward(grad_output, **inputs)`` as a case's backward program."""

    key = "backward"
    # torch has no long double, so the manual source cannot measure this backward's rounding
    # by a rerun in higher precision; in a float32 check it still reruns in float64.
    longdouble = False

    @property
    def assigned(self) -> list[str]:
        return [f"d{n}" for n in self.inputs]

    @property
    def analytic(self) -> bool:
        return True  # never consulted: the numeric source differentiates the forward only

    def run(self, env: Mapping[str, Any], backend: Backend, trace: list[Any] | None = None) -> dict[str, Any]:
        dout = f"d{self.output}"
        t = self._tensors(env, [*self.inputs, dout], backend)
        result = self._call((t.pop(dout),), t, backend)
        grads = self._by_name(result)
        return {**env, **{f"d{k}": self._back(g, f"the gradient of `{k}`", backend) for k, g in grads.items()}}

    def _by_name(self, result: Any) -> dict[str, Any]:
        names = self.inputs
        if isinstance(result, Mapping):
            extra = [k for k in result if k not in names]
            missing = [k for k in names if k not in result]
            if extra or missing:
                parts = []
                if missing:
                    parts.append("no gradient for " + ", ".join(f"`{k}`" for k in missing))
                if extra:
                    parts.append("gradients for unknown input(s) " + ", ".join(f"`{k}`" for k in extra))
                raise self.error(f"`{self.label}` returned " + " and ".join(parts))
            grads = {k: result[k] for k in names}
        elif isinstance(result, tuple | list):
            if len(result) != len(names):
                raise self.error(
                    f"`{self.label}` returned {len(result)} gradient(s) for {len(names)} input(s)"
                    f" ({', '.join(names)}); return them in that order or as a dict"
                )
            grads = dict(zip(names, result, strict=True))
        elif len(names) == 1:
            grads = {names[0]: result}
        else:
            raise self.error(
                f"`{self.label}` returned one {type(result).__name__} for {len(names)} inputs;"
                " return a dict {name: gradient} or a tuple in the inputs' order"
            )
        for k, g in grads.items():
            if g is None:
                raise self.error(f"`{self.label}` returned None as the gradient of `{k}`")
        return grads


def output_name(inputs: Sequence[str]) -> str:
    """A name for the output that no input has (the backward receives ``d<output>``)."""
    name = "out"
    while name in inputs:
        name += "_"
    return name


def to_point(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Input values (tensors, arrays, numbers) as the float64 point a Case holds."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise CaseError("inputs must be a non-empty mapping {name: value}", key="inputs")
    point: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise CaseError(f"input name {name!r} is not an identifier (inputs are passed as keywords)", key="inputs")
        if isinstance(value, torch.Tensor):
            if value.is_complex():
                raise CaseError(f"input `{name}` is complex; only real inputs are checked", key="inputs")
            value = value.detach().to("cpu", torch.float64).numpy()
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise CaseError(f"input `{name}` is not an array of real numbers", key="inputs") from None
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise CaseError(f"input `{name}` is empty, NaN or infinite", key="inputs")
        point[name] = array
    return point


def callable_case(
    fn: Forward,
    inputs: Mapping[str, Any],
    *,
    backward: Backward | None = None,
    upstream: Any = None,
    analytic: bool = False,
    name: str | None = None,
) -> Case:
    """A :class:`Case` whose forward (and backward) are Python callables; see the module doc."""
    if not callable(fn):
        raise CaseError(f"fn must be callable, not {type(fn).__name__}")
    if backward is not None and not callable(backward):
        raise CaseError(f"backward must be callable, not {type(backward).__name__}")
    point = to_point(inputs)
    output = output_name(list(point))
    forward = CallableForward(fn, list(point), output, analytic=analytic)
    up = None
    if upstream is not None:
        up = to_point({"upstream": upstream})["upstream"]
    # Case's annotations name Program; the adapters provide the same interface (module doc).
    return Case(
        name=name or forward.label,
        description=(inspect.getdoc(fn) or "").split("\n", 1)[0],
        file=forward.file or Path("<callable>"),
        line=forward.line,
        output=output,
        inputs=point,
        forward=forward,  # type: ignore[arg-type]
        backward=CallableBackward(backward, list(point), output) if backward is not None else None,  # type: ignore[arg-type]
        upstream=up,
        outputs=(output,),
        upstreams={output: up},
    )
