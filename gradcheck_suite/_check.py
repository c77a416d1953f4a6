"""``gradcheck_suite.check`` and ``check_module``: the three-way check of a Python function,
an autograd.Function or an ``nn.Module``, for a user's own tests.

It builds a :class:`Case` whose forward and backward are the user's functions, through the
same callable layer as a case file's ``callable = ...`` (:mod:`gradcheck_suite._case_callables`),
and runs it through the same engine as case files and the CLI, so the verdict, the odd one
out and the tables are the same. The calling protocol:

* ``fn(**inputs)`` is a torch function returning one real tensor, or a tuple of them. The
  autograd source calls it on leaf tensors in the check's dtype and device; the numeric
  source calls it in float64, batched under :func:`torch.func.vmap` where it runs there
  (else one perturbation at a time: ``.item()``, in-place writes, control flow on values).
* ``fn`` may be a ``torch.autograd.Function`` subclass (classic ``forward(ctx, ...)`` or with
  ``setup_context``): it is called as ``fn.apply(*inputs)`` in the inputs' order, its own
  backward is the manual source and ``reference`` (a torch function autograd differentiates,
  called like ``fn``) the autograd source, as a case file's ``[reference]``.
* ``backward(grad_output, **inputs)`` returns the gradients as a dict by input name (or
  ``d<name>``), a tuple in the inputs' order, or one gradient for one input. Inputs arrive as
  tensors (copies) in the check's dtype on the CPU; a function with several outputs gets one
  ``grad_output`` per output, positionally.
* ``reference`` with a plain ``fn``: autograd differentiates the reference instead of ``fn``
  (for an ``fn`` autograd cannot follow, such as a kernel without a backward).
* A Python function cannot be inspected as a program can, so it counts as analytic only when
  the caller says so (``analytic=True``); otherwise numeric ``auto`` takes Richardson
  differences with kink detection rather than the complex step.
* ``order=2`` and ``checks=(...)`` add the check kinds of :mod:`gradcheck_suite._kinds`
  (second order, forward mode, batched, undefined output gradients, dtypes, layouts).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._case import Case
from ._case_callables import Backward, CallTarget, Forward, is_autograd_function
from ._dtypes import DTYPES
from ._engine import CaseResult, Report, RunOptions, check_case, ensure_device, kinds_of
from ._errors import CaseError, UsageError
from ._modules import module_case
from ._report.terminal import render_case_detail, render_table
from ._settings import DEFAULT_K, validate_k, validate_nondet_tol
from ._sources.numeric import DEFAULT_DIRECTIONS, DEFAULT_ELEMENTS, DEFAULT_MAX_MEMORY, METHODS, MODES

__all__ = ["CheckResult", "GradientCheckFailed", "check", "check_module", "explain"]


def _head(result: CaseResult) -> str:
    kind = f", {result.kind}" if result.kind else ""
    head = f"gradcheck {result.case.name} ({result.device}, {result.dtype}{kind}): {result.verdict.upper()}"
    if result.verdict == "fail":
        if result.odd_one_out:
            head += f": {result.odd_one_out} is the odd one out"
        else:
            head += ": the sources disagree, no single one is the odd one out"
    return head


def explain(result: CaseResult) -> str:
    """The verdict in words, the CLI's table, and the per-element table of every input that
    did not pass: what a failing test prints. A :class:`CheckResult` adds its check kinds."""
    results = [result.first(), *result.kinds] if isinstance(result, CheckResult) else [result]
    lines = [_head(r) for r in results]
    for r in results:
        label = f"{r.kind}: " if r.kind else ""
        lines += [f"  {label}{i.name}: {i.reason}" for i in r.inputs if i.verdict != "pass"]
        lines += [f"  {e}" for e in r.expect_failures]
    lines.append("")
    options = RunOptions(device=result.device, dtype=result.dtype)
    lines.append(render_table(Report(results, [], options)))
    for r in results:
        detail = render_case_detail(r)
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
    """A :class:`CaseResult` with the conveniences a test wants.

    ``kinds`` holds the results of the further check kinds asked for (``order=2``,
    ``checks=...``); ``verdict`` and ``odd_one_out`` then sum up all of them (any fail fails),
    while ``first_verdict`` keeps the first-order check's own."""

    kinds: list[CaseResult] = field(default_factory=list)
    first_verdict: str = ""
    first_odd_one_out: str | None = None

    @classmethod
    def of(cls, result: CaseResult, kinds: Sequence[CaseResult] = ()) -> CheckResult:
        values = {f.name: getattr(result, f.name) for f in fields(CaseResult)}
        out = cls(**values, kinds=list(kinds), first_verdict=result.verdict, first_odd_one_out=result.odd_one_out)
        everything = [result, *kinds]
        verdicts = {r.verdict for r in everything}
        if "fail" in verdicts:
            out.verdict = "fail"
            out.odd_one_out = next(r.odd_one_out for r in everything if r.verdict == "fail")
        elif "inconclusive" in verdicts:
            out.verdict, out.odd_one_out = "inconclusive", None
        return out

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def first(self) -> CaseResult:
        """The first-order check alone, with its own verdict."""
        values = {f.name: getattr(self, f.name) for f in fields(CaseResult)}
        values["verdict"], values["odd_one_out"] = self.first_verdict, self.first_odd_one_out
        return CaseResult(**values)

    def kind_result(self, name: str) -> CaseResult:
        """The result of one check kind (``"order2"``, ``"forward"``, ...)."""
        for r in self.kinds:
            if r.kind == name:
                return r
        raise KeyError(f"no {name!r} check in this result (checked: {', '.join(r.kind for r in self.kinds) or 'none'})")

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


def _options(
    *,
    dtype: str,
    device: str,
    numeric: str,
    analytic: bool,
    samples: int | None,
    max_memory: int,
    mode: str,
    elements: int,
    directions: int,
    order: int,
    checks: Sequence[str],
    k: float = DEFAULT_K,
    repeat: int = 1,
    nondet_tol: float = 0.0,
    tf32: bool = False,
) -> RunOptions:
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
    if order not in (1, 2):
        raise UsageError(f"order must be 1 or 2, not {order!r}")
    if isinstance(checks, str):
        checks = [c.strip() for c in checks.split(",") if c.strip()]
    from ._kinds import parse_checks  # the kinds load torch.func: only for checks that ask for them

    try:
        kinds = parse_checks(list(checks))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if problem := validate_k(k) or validate_nondet_tol(nondet_tol):
        raise UsageError(problem)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"repeat must be a whole number >= 1, not {repeat!r}")
    ensure_device(device)
    return RunOptions(
        device=device,
        dtype=dtype,
        numeric=numeric,
        samples=samples,
        max_memory=max_memory,
        mode=mode,
        elements=elements,
        directions=directions,
        order=order,
        checks=kinds,
        k=k,
        repeat=repeat,
        nondet_tol=nondet_tol,
        tf32=tf32,
    )


def _check(case: Case, options: RunOptions) -> CheckResult:
    first = check_case(case, options)
    return CheckResult.of(first, kinds_of(case, options, first))


def check(
    fn: Callable[..., Any],
    inputs: Mapping[str, Any],
    *,
    backward: Callable[..., Any] | None = None,
    reference: Callable[..., Any] | None = None,
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
    order: int = 1,
    checks: Sequence[str] = (),
    name: str | None = None,
    k: float = DEFAULT_K,
    repeat: int = 1,
    nondet_tol: float = 0.0,
    tf32: bool = False,
) -> CheckResult:
    """Check the gradient of ``fn(**inputs)`` three ways: ``backward`` (if given), torch
    autograd through ``fn`` (or ``reference``), and finite differences of ``fn``.

    ``fn`` takes the inputs as keyword tensors and returns a real tensor (or a tuple of
    them); it may also be a ``torch.autograd.Function`` subclass, called as
    ``fn.apply(*inputs)``, whose own backward is the manual source. ``backward`` is called as
    ``backward(grad_output, **inputs)`` and returns the gradients as a dict by input name, a
    tuple in the inputs' order, or one gradient for one input. ``reference`` is what autograd
    differentiates instead of ``fn``. ``upstream`` is the gradient flowing into the output
    (default: ones, i.e. the gradient of its sum; a sequence, one per output, for several).
    ``analytic=True`` declares ``fn`` analytic, so numeric ``auto`` may take the complex
    step (``fn`` must then accept complex tensors). ``samples`` checks that many random
    points around ``inputs`` as well. ``mode``, ``elements`` and ``directions`` are the CLI's
    ``--mode``, ``--elements`` and ``--directions``; ``order=2`` adds second order and
    ``checks`` further check kinds (``"forward"``, ``"batched"``, ``"undefined"``,
    ``"dtypes"``, ``"noncontiguous"``, ``"fwd-over-rev"`` or ``"all"``). Raises
    :class:`CaseError` when a function cannot be run.

    ``dtype="bfloat16"`` or ``"float16"`` runs ``backward`` and autograd in that dtype (the
    inputs and ``upstream`` rounded to it) and judges ``backward`` by the low-precision rule:
    its error against float64 autograd may be at most ``k`` times autograd's own error in the
    dtype, plus a floor (``tf32=True`` does the same for float32 with TF32 on CUDA).
    ``repeat=N`` runs ``backward`` and autograd N times and fails a source whose runs differ
    by more than ``nondet_tol`` (absolute; 0: they must agree exactly).
    """
    options = _options(
        dtype=dtype,
        device=device,
        numeric=numeric,
        analytic=analytic,
        samples=samples,
        max_memory=max_memory,
        mode=mode,
        elements=elements,
        directions=directions,
        order=order,
        checks=checks,
        k=k,
        repeat=repeat,
        nondet_tol=nondet_tol,
        tf32=tf32,
    )
    case = callable_case(
        fn, inputs, backward=backward, reference=reference, upstream=upstream, analytic=analytic, name=name
    )
    return _check(case, options)


def check_module(
    module: torch.nn.Module,
    inputs: Any,
    *,
    reference: torch.nn.Module | None = None,
    upstream: Any = None,
    dtype: str = "float64",
    device: str = "cpu",
    numeric: str = "auto",
    samples: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    mode: str = "auto",
    elements: int = DEFAULT_ELEMENTS,
    directions: int = DEFAULT_DIRECTIONS,
    order: int = 1,
    checks: Sequence[str] = (),
    name: str | None = None,
    k: float = DEFAULT_K,
    repeat: int = 1,
    nondet_tol: float = 0.0,
    tf32: bool = False,
) -> CheckResult:
    """Check the gradient of every trainable parameter and every floating input of
    ``module(*inputs)`` (``inputs``: one tensor, a tuple of positional inputs, or a mapping of
    keyword inputs).

    Parameters are named as ``module.named_parameters()`` names them (``0.weight``) and
    passed through :func:`torch.func.functional_call`, so the module is never changed;
    buffers are left alone. A module built on custom autograd.Functions brings its own
    backward: that is the manual source, and ``reference`` (a module of plain torch
    operations with the same parameter names) the autograd source. A module of plain torch
    operations is checked two ways (autograd, numeric). The other keywords are
    :func:`check`'s (``k``, ``repeat``, ``nondet_tol`` and ``tf32`` included).
    """
    options = _options(
        dtype=dtype,
        device=device,
        numeric=numeric,
        analytic=False,
        samples=samples,
        max_memory=max_memory,
        mode=mode,
        elements=elements,
        directions=directions,
        order=order,
        checks=checks,
        k=k,
        repeat=repeat,
        nondet_tol=nondet_tol,
        tf32=tf32,
    )
    return _check(module_case(module, inputs, reference=reference, upstream=upstream, name=name), options)


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _where(fn: Callable[..., Any]) -> tuple[Path | None, int | None]:
    """The file and first line of ``fn``'s definition, so errors point at the user's code.

    Read from code objects: ``inspect.getsourcelines`` parses the whole file (5 ms a call). An
    autograd.Function is placed at its forward."""
    target = inspect.unwrap(fn)
    if isinstance(target, type):
        target = getattr(target, "forward", target)
    code = getattr(target, "__code__", None)
    if code is None:  # a callable object: its class's __call__
        code = getattr(vars(type(target)).get("__call__"), "__code__", None)
    if code is None:
        return None, None
    return Path(code.co_filename), code.co_firstlineno


def output_name(inputs: list[str], name: str = "out") -> str:
    """A name for the output that no input has (the backward receives ``d<output>``)."""
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


def _count_outputs(call: CallTarget, point: Mapping[str, np.ndarray]) -> int:
    """How many outputs ``fn`` returns: one tensor, or a tuple of them (found by calling it
    once in float64)."""
    tensors = [torch.tensor(v, dtype=torch.float64) for v in point.values()]
    with torch.no_grad():
        if call.keywords:
            result = call.invoke([], dict(zip(call.args, tensors, strict=True)))
        else:
            result = call.invoke(tensors)
    if isinstance(result, (tuple, list)) and result and all(isinstance(r, torch.Tensor) for r in result):
        return len(result)
    return 1  # anything else: the forward's own check names what is wrong


def _upstreams(upstream: Any, outputs: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    if upstream is None:
        return {o: None for o in outputs}
    if len(outputs) == 1:
        return {outputs[0]: to_point({"upstream": upstream})["upstream"]}
    if not isinstance(upstream, (tuple, list)) or len(upstream) != len(outputs):
        raise CaseError(f"fn returns {len(outputs)} outputs: give upstream as a sequence of {len(outputs)}")
    pairs = zip(outputs, upstream, strict=True)
    return {o: None if u is None else to_point({"upstream": u})["upstream"] for o, u in pairs}


def callable_case(
    fn: Callable[..., Any],
    inputs: Mapping[str, Any],
    *,
    backward: Callable[..., Any] | None = None,
    reference: Callable[..., Any] | None = None,
    upstream: Any = None,
    analytic: bool = False,
    name: str | None = None,
) -> Case:
    """A :class:`Case` whose forward (and backward, and reference) are Python functions
    (the module's protocol)."""
    if not callable(fn):
        raise CaseError(f"fn must be callable, not {type(fn).__name__}")
    function = is_autograd_function(fn)
    if backward is not None and not callable(backward):
        raise CaseError(f"backward must be callable, not {type(backward).__name__}")
    if function and backward is not None:
        raise CaseError(f"`{_label(fn)}` is a torch.autograd.Function: its own backward is checked, pass no backward=")
    if reference is not None and (not callable(reference) or is_autograd_function(reference)):
        raise CaseError("reference must be a torch function autograd differentiates, not an autograd.Function")
    point = to_point(inputs)
    names = list(point)
    label = _label(fn)
    case_name = name or label

    def target(f: Callable[..., Any], role: str, args: tuple[str, ...], keywords: bool = True) -> CallTarget:
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
            keywords=keywords,
            vmap=True,
            analytic=analytic,
            autograd=reference is None,
        )

    call = target(fn, "forward", tuple(names), keywords=not function)
    count = _count_outputs(call, point)
    outputs = (output_name(names),) if count == 1 else tuple(output_name(names, f"out{k}") for k in range(count))
    forward = Forward(program=None, call=call, outputs=outputs)
    back = None
    if function:
        back = Backward(program=None, call=None, inputs=tuple(names), outputs=outputs, forward=forward)
    elif backward is not None:
        bcall = target(backward, "backward", (*(f"d{o}" for o in outputs), *names))
        back = Backward(program=None, call=bcall, inputs=tuple(names), outputs=outputs, forward=forward)
    ref = None
    if reference is not None:
        ref = Forward(program=None, call=target(reference, "reference", tuple(names)), outputs=outputs)
    ups = _upstreams(upstream, outputs)
    file, line = _where(fn)
    return Case(
        name=case_name,
        description=(inspect.getdoc(fn) or "").split("\n", 1)[0],
        file=file or Path("<callable>"),
        line=line,
        output=outputs[0],
        inputs=point,
        forward=forward,
        backward=back,
        upstream=ups[outputs[0]],
        outputs=outputs,
        upstreams=ups,
        reference=ref,
    )
