"""``gradcheck_suite.check``: the three-way check of a Python function, for a user's own tests.

It builds a :class:`Case` whose forward and backward are the user's functions, through the
same callable layer as a case file's ``callable = ...`` (:mod:`gradcheck_suite._case_callables`),
and runs it through the same engine as case files and the CLI, so the verdict, the odd one
out and the tables are the same. The calling protocol:

* ``fn(**inputs)`` is a torch function returning one real tensor. The autograd source calls it
  on leaf tensors in the check's dtype and device; the numeric source calls it under
  :func:`torch.func.vmap` in float64, so it must be vmappable: no ``.item()``, no in-place
  writes into its inputs, no Python control flow on tensor values.
* ``backward(grad_output, **inputs)`` returns the gradients as a dict by input name (or
  ``d<name>``), a tuple in the inputs' order, or one gradient for one input. Inputs arrive as
  tensors (copies) in the check's dtype on the CPU.
* A Python function cannot be inspected as a program can, so it counts as analytic only when
  the caller says so (``analytic=True``); otherwise numeric ``auto`` takes Richardson
  differences with kink detection rather than the complex step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._case import Case
from ._case_callables import Backward, CallTarget, Forward
from ._dtypes import DTYPES
from ._engine import CaseResult, Report, RunOptions, check_case, ensure_device
from ._errors import CaseError, UsageError
from ._report.terminal import render_case_detail, render_table
from ._settings import DEFAULT_K, validate_k, validate_nondet_tol
from ._sources.numeric import DEFAULT_DIRECTIONS, DEFAULT_ELEMENTS, DEFAULT_MAX_MEMORY, METHODS, MODES

__all__ = ["CheckResult", "GradientCheckFailed", "check", "explain"]


def explain(result: CaseResult) -> str:
    """The verdict in words, the CLI's table, and the per-element table of every input that
    did not pass: what a failing test prints."""
    head = f"gradcheck {result.case.name} ({result.device}, {result.dtype}): {result.verdict.upper()}"
    if result.verdict == "fail":
        if result.odd_one_out:
            head += f": {result.odd_one_out} is the odd one out"
        else:
            head += ": the sources disagree, no single one is the odd one out"
    lines = [head]
    lines += [f"  {i.name}: {i.reason}" for i in result.inputs if i.verdict != "pass"]
    lines += [f"  {e}" for e in result.expect_failures]
    lines.append("")
    options = RunOptions(device=result.device, dtype=result.dtype)
    lines.append(render_table(Report([result], [], options)))
    detail = render_case_detail(result)
    if detail:
        lines.append(detail)
    return "\n".join(lines)


class GradientCheckFailed(AssertionError):
    """A check that did not pass; ``result`` holds everything the message summarises."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(explain(result))
        self.result = result


@dataclass
class CheckResult(CaseResult):
    """A :class:`CaseResult` with the conveniences a test wants."""

    @classmethod
    def of(cls, result: CaseResult) -> CheckResult:
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)})

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def explain(self) -> str:
        return explain(self)

    def assert_ok(self, *, allow_inconclusive: bool = False) -> CheckResult:
        """Raise :class:`GradientCheckFailed` (an AssertionError) unless the check passed.

        An inconclusive check (a kink, a numeric estimate too rough to decide) is not a pass;
        ``allow_inconclusive=True`` lets it through.
        """
        if self.verdict == "fail" or (self.verdict == "inconclusive" and not allow_inconclusive):
            raise GradientCheckFailed(self)
        return self


def check(
    fn: Callable[..., torch.Tensor],
    inputs: Mapping[str, Any],
    *,
    backward: Callable[..., Any] | None = None,
    upstream: Any = None,
    dtype: str = "float64",
    device: str = "cpu",
    numeric: str = "auto",
    analytic: bool = False,
    samples: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    mode: str = "auto",
    elements: int = DEFAULT_ELEMENTS,
    directions: int = DEFAULT_DIRECTIONS,
    name: str | None = None,
    k: float = DEFAULT_K,
    repeat: int = 1,
    nondet_tol: float = 0.0,
    tf32: bool = False,
) -> CheckResult:
    """Check the gradient of ``fn(**inputs)`` three ways: ``backward`` (if given), torch
    autograd through ``fn``, and finite differences of ``fn``.

    ``fn`` takes the inputs as keyword tensors and returns one real tensor; ``backward`` is
    called as ``backward(grad_output, **inputs)`` and returns the gradients as a dict by
    input name, a tuple in the inputs' order, or one gradient for one input. ``upstream`` is
    the gradient flowing into the output (default: ones, i.e. the gradient of its sum).
    ``analytic=True`` declares ``fn`` analytic, so numeric ``auto`` may take the complex
    step (``fn`` must then accept complex tensors). ``samples`` checks that many random
    points around ``inputs`` as well. ``mode``, ``elements`` and ``directions`` are the CLI's
    ``--mode``, ``--elements`` and ``--directions``. Raises :class:`CaseError` when a function
    cannot be run.

    ``dtype="bfloat16"`` or ``"float16"`` runs ``backward`` and autograd in that dtype (the
    inputs and ``upstream`` rounded to it) and judges ``backward`` by the low-precision rule:
    its error against float64 autograd may be at most ``k`` times autograd's own error in the
    dtype, plus a floor (``tf32=True`` does the same for float32 with TF32 on CUDA).
    ``repeat=N`` runs ``backward`` and autograd N times and fails a source whose runs differ
    by more than ``nondet_tol`` (absolute; 0: they must agree exactly).
    """
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if numeric not in METHODS:
        raise UsageError(f"numeric must be one of {', '.join(METHODS)}, not {numeric!r}")
    if numeric == "complex-step" and not analytic:
        raise UsageError("numeric='complex-step' needs analytic=True: only you can say a Python function is analytic")
    if samples is not None and samples < 1:
        raise UsageError("samples must be at least 1")
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if problem := validate_k(k) or validate_nondet_tol(nondet_tol):
        raise UsageError(problem)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"repeat must be a whole number >= 1, not {repeat!r}")
    ensure_device(device)
    case = callable_case(fn, inputs, backward=backward, upstream=upstream, analytic=analytic, name=name)
    options = RunOptions(
        device=device,
        dtype=dtype,
        numeric=numeric,
        samples=samples,
        max_memory=max_memory,
        mode=mode,
        elements=elements,
        directions=directions,
        k=k,
        repeat=repeat,
        nondet_tol=nondet_tol,
        tf32=tf32,
    )
    return CheckResult.of(check_case(case, options))


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


def output_name(inputs: list[str]) -> str:
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
    fn: Callable[..., torch.Tensor],
    inputs: Mapping[str, Any],
    *,
    backward: Callable[..., Any] | None = None,
    upstream: Any = None,
    analytic: bool = False,
    name: str | None = None,
) -> Case:
    """A :class:`Case` whose forward (and backward) are Python functions (the module's protocol)."""
    if not callable(fn):
        raise CaseError(f"fn must be callable, not {type(fn).__name__}")
    if backward is not None and not callable(backward):
        raise CaseError(f"backward must be callable, not {type(backward).__name__}")
    point = to_point(inputs)
    names = list(point)
    output = output_name(names)
    label = _label(fn)
    case_name = name or label

    def target(f: Callable[..., Any], role: str, args: tuple[str, ...]) -> CallTarget:
        file, line = _where(f)
        return CallTarget(
            target=_label(f),
            fn=f,
            args=args,
            kwargs={},
            array="torch",
            role=role,
            case=case_name,
            file=file,
            line=line,
            keywords=True,
            vmap=True,
            analytic=analytic,
        )

    forward = Forward(program=None, call=target(fn, "forward", tuple(names)), outputs=(output,))
    back = None
    if backward is not None:
        call = target(backward, "backward", (f"d{output}", *names))
        back = Backward(program=None, call=call, inputs=tuple(names), outputs=(output,), forward=forward)
    up = None if upstream is None else to_point({"upstream": upstream})["upstream"]
    file, line = _where(fn)
    return Case(
        name=case_name,
        description=(inspect.getdoc(fn) or "").split("\n", 1)[0],
        file=file or Path("<callable>"),
        line=line,
        output=output,
        inputs=point,
        forward=forward,
        backward=back,
        upstream=up,
        outputs=(output,),
        upstreams={output: up},
    )
