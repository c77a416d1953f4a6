"""``gradcheck_suite.check``: the three-way check of a Python function, for a user's own tests.

It builds a :class:`Case` from callables (see :mod:`gradcheck_suite._callables` for the
calling protocol) and runs it through the same engine as case files and the CLI, so the
verdict, the odd one out and the tables are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ._callables import Backward, Forward, callable_case
from ._engine import CaseResult, Report, RunOptions, check_case, ensure_device
from ._errors import UsageError
from ._report.terminal import render_case_detail, render_table
from ._sources.numeric import DEFAULT_DIRECTIONS, DEFAULT_ELEMENTS, DEFAULT_MAX_MEMORY, METHODS, MODES

__all__ = ["CheckResult", "GradientCheckFailed", "check", "explain"]

DTYPES = ("float64", "float32")


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
    fn: Forward,
    inputs: Mapping[str, Any],
    *,
    backward: Backward | None = None,
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
    )
    return CheckResult.of(check_case(case, options))
