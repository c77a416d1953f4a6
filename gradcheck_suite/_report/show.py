"""``gradcheck show``: each forward and backward step with its value, as the notebook's cells
print them (a callable's call, arguments and results: :mod:`.calls`), then each source's
gradient and the verdict; fitted to the terminal's width."""

from __future__ import annotations

import numpy as np

from .._case import Case
from .._console import Paint
from .._dtypes import to_float64
from .._engine import CaseResult
from .._sources.manual import manual_backend, upstream_gradients
from .._text import printable
from .calls import backward_call, forward_call
from .layout import wrap
from .terminal import format_value

__all__ = ["render_show", "show_value"]

STEP_TEXT = 40  # statements are padded to this many characters, so their values line up
VALUE_INDENT = " " * 8


def show_value(v: object, dtype: str = "float64") -> str:
    """One line: a scalar whole, an array as its shape and a summary of its elements."""
    a = _array(v)
    if a.ndim == 0:
        return format_value(a, str(a.dtype) if a.dtype == np.float32 else "float64")
    with np.printoptions(precision=6, suppress=True, threshold=20, linewidth=120):
        return f"shape {list(a.shape)} " + " ".join(str(a).split())


def _array(v: object) -> np.ndarray:
    # a torch value (bfloat16, float16, another device: the manual source's run there) as float64
    return np.asarray(v) if isinstance(v, (np.ndarray, np.generic, int, float)) else to_float64(v)


def _value_lines(v: object, width: int) -> list[str]:
    """A value too long for its statement's line, on lines of its own below it."""
    a = _array(v)
    if a.ndim == 0:
        return [f"{VALUE_INDENT}# {show_value(a)}"]
    body = np.array2string(
        a, precision=6, suppress_small=True, threshold=20, edgeitems=2, max_line_width=max(width - 10, 30)
    )
    return [f"{VALUE_INDENT}# shape {list(a.shape)}"] + [f"{VALUE_INDENT}  {line}" for line in body.splitlines()]


def _labelled(label: str, value: object, width: int | None) -> list[str]:
    one = f"{label}  # {show_value(value)}"
    if width is None or len(one) <= width:
        return [one]
    return wrap(label.rstrip(), width, VALUE_INDENT, first="") + _value_lines(value, width)


def _steps(title: str, trace: list, width: int | None) -> list[str]:
    out = [f"{title}:"]
    for s, v in trace:
        out += _labelled(f"  {s.line:4d}  {printable(s.text):{STEP_TEXT}}", v, width)
    return out


def render_show(
    case: Case, result: CaseResult, dtype: str, width: int | None = None, paint: Paint | None = None
) -> str:
    paint = paint or Paint()
    # a case file's text, made inert: no line of it may read as a terminal or CI command
    head = f"{paint(printable(case.name), 'bold')}: {printable(case.description)}  ({printable(case.file)})"
    out = wrap(head, width, "    ", first="")
    # as the manual source runs: numpy on the CPU in float64/float32, else torch (issue 12)
    programs = case.backward is not None and case.backward.program is not None
    be = manual_backend(dtype, result.device, programs)
    env = {k: be.asarray(v) for k, v in case.inputs.items()}
    for k, v in env.items():
        out += _labelled(f"  input  {k} =", v, width)
    trace: list = []
    values = case.forward.run(env, be, trace)
    out += _steps("forward", trace, width)
    if case.forward.program is None:  # a callable: the call, its arguments and its results
        out += forward_call(case, values)
    if case.backward is not None:
        trace = []
        grads = case.backward.run({**values, **upstream_gradients(case, values, be)}, be, trace)
        out += _steps("backward", trace, width)
        if case.backward.program is None:
            out += backward_call(case, grads)
    out.append("gradients:")
    for i in result.inputs:
        for src, g in i.grads.items():
            out += _labelled(f"  d{i.name} {src:9}", g, width)
        out += wrap(f"d{i.name} verdict   {paint.verdict(i.verdict)}: {i.reason}", width, "      ", first="  ")
    if result.expect_failures:
        out.append("expected values:")
        for e in result.expect_failures:
            out += wrap(e, width, "      ", first="  ")
    return "\n".join(out)
