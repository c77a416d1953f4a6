"""Issue 12, run by hand: `.venv/bin/python benchmarks/lowprecision.py [POINTS] [DTYPES] [-k NAME]`.

False alarms of the low-precision rule: every bundled layer (`cases/layers/`) with its right
backward program, checked in bfloat16 and float16 at its own point and POINTS random points
(default 1,000) by the engine (`check_case` with `samples=POINTS`), three sources and the case's
k (2 unless the case file declares its own).
For each case and dtype it prints the verdict counts (a fail is a false alarm: every backward
here is right) and the margin: the largest ratio of the manual source's error to what the
rule allows, per element and as a norm, over all points (above 1 would fail; kinks excluded
as the engine excludes them: the numeric source reruns at each point that did not pass), with
the time.

Then the anchor: what `torch.autograd.gradcheck` does with the same bfloat16 and float16
kernels as tests/test_lowprecision.py (`.venv/bin/python benchmarks/lowprecision.py 0` prints
only the case's own point and the anchor).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import machine

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._engine import (
    _at_dtype,
    _bounds,
    _numeric_rounding,
    _numeric_settings,
    check_settings,
    sample_points,
)
from gradcheck_suite._limits import DEFAULT_LIMITS
from gradcheck_suite._lowprecision import judge_low_precision, measure_reference
from gradcheck_suite._sources.autograd import autograd_gradients
from gradcheck_suite._sources.manual import manual_gradients
from gradcheck_suite._sources.numeric import numeric_gradients_at

ROOT = Path(__file__).resolve().parent.parent
ARGS = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("-") and sys.argv[i - 1] != "-k"]
POINTS = int(ARGS[0]) if ARGS else 1000
DTYPES = ARGS[1].split(",") if len(ARGS) > 1 else ["bfloat16", "float16"]
ONLY = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else ""


def margins(case_file: Path, dtype: str, verdicts: list[str]) -> tuple[float, float]:
    """The largest element and norm ratios of the manual source over the sweep's points.

    Where the sweep's verdict was not a pass the numeric source runs too, so that its kinks
    (an exact tie of a max-pool window, a hinge margin of exactly 0 at the rounded point) are
    left out as the engine leaves them out: there is no true gradient there to be off from."""
    case = load_case(case_file).resolved()  # its callables imported, as check_case does
    options = RunOptions(dtype=dtype)
    settings = check_settings(case, options)
    case = case.at_dtype(dtype)
    element = norm = 0.0
    for p, verdict in zip([case.inputs, *sample_points(case, POINTS)], verdicts, strict=True):
        point = _at_dtype(p, dtype)
        manual = manual_gradients(case, point, dtype)
        auto = autograd_gradients(case, point, dtype, "cpu")
        measure_reference(case, point, auto, dtype, "cpu")
        results = [manual, auto]
        if verdict != "pass":
            rounding = _numeric_rounding(case, _bounds(case, [point]))
            results += numeric_gradients_at(case, [point], _numeric_settings(case, options), rounding)
        for name in point:
            e = judge_low_precision(name, results, settings).low_precision  # type: ignore[attr-defined]
            element, norm = max(element, e.element_ratio or 0.0), max(norm, e.norm_ratio or 0.0)
    return element, norm


def sweep() -> bool:
    print(f"== bundled layers, right backward passes, {POINTS} random points + the case's own")
    head = f"{'case':24} {'dtype':9} {'k':>2} {'pass':>5} {'fail':>5} {'inconcl.':>8}"
    print(f"{head}  {'elem ratio':>10} {'norm ratio':>10}  time")
    clean = True
    for f in sorted((ROOT / "cases" / "layers").glob("*.toml")):
        if ONLY and ONLY not in f.stem:
            continue
        for dtype in DTYPES:
            start = time.perf_counter()
            # no per-case timeout: the numpy convolution takes longer than 600 s at 1,000 points
            options = RunOptions(dtype=dtype, samples=POINTS, limits=replace(DEFAULT_LIMITS, timeout=0))
            r = check_case(load_case(f), options)
            c = r.samples.counts if r.samples else {"pass": 0, "fail": 0, "inconclusive": 0}
            element, norm = margins(f, dtype, r.samples.verdicts if r.samples else [])
            clean &= c["fail"] == 0
            k = r.settings.k if r.settings is not None else 0.0
            print(
                f"{r.case.name:24} {dtype:9} {k:2g} {c['pass']:5d} {c['fail']:5d} {c['inconclusive']:8d}"
                f"  {element:10.3f} {norm:10.3f}  {time.perf_counter() - start:.0f} s",
                flush=True,
            )
    print("no false alarm" if clean else "FALSE ALARMS above")
    return clean


def _as_function(fn, backward):  # type: ignore[no-untyped-def]
    """A kernel (forward and hand-written backward) as torch.autograd.gradcheck takes it."""

    class Kernel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(*xs)
            return fn(*xs)

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            out = backward(g, *ctx.saved_tensors)
            return out if isinstance(out, tuple) else (out,)

    return Kernel.apply


def _gradcheck(f, xs, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            said = f"returns {torch.autograd.gradcheck(f, xs, **kwargs)}"
        except Exception as exc:  # noqa: BLE001 - what it raises is the finding
            said = f"raises {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    notes = "".join(f"\n    warns: {w.message}" for w in caught)
    return said + notes


def anchor() -> None:
    """torch.autograd.gradcheck on the kernels of tests/test_lowprecision.py (a 4x8 softmax,
    a 4x3 @ 3x5 matmul) in bfloat16 and float16, at its defaults and loosened."""
    sys.path.insert(0, str(ROOT))
    from tests.test_lowprecision import KERNELS

    print("\n== torch.autograd.gradcheck on the same kernels (the anchor)")
    fn, inputs, _, backwards = KERNELS["softmax"]
    for dtype in (torch.bfloat16, torch.float16):
        x = inputs["x"][:4, :8].to(dtype).requires_grad_()
        print(f"softmax, right backward, {dtype}, defaults: {_gradcheck(_as_function(fn, backwards['right']), (x,))}")
    fn, inputs, _, backwards = KERNELS["matmul"]
    for dtype in (torch.bfloat16, torch.float16):
        xs = (inputs["a"][:4, :3].to(dtype).requires_grad_(), inputs["b"][:3, :5].to(dtype).requires_grad_())
        print(f"matmul, right backward, {dtype}, defaults: {_gradcheck(_as_function(fn, backwards['right']), xs)}")
    print("loosened to eps = atol = rtol = 1e-2:")
    fn, inputs, _, backwards = KERNELS["softmax"]
    for dtype in (torch.bfloat16, torch.float16):
        for variant in ("right", "low_accumulator", "no_rescale"):
            x = inputs["x"][:4, :8].to(dtype).requires_grad_()
            said = _gradcheck(_as_function(fn, backwards[variant]), (x,), eps=1e-2, atol=1e-2, rtol=1e-2)
            print(f"  softmax, {variant} backward, {dtype}: {said.splitlines()[0][:90]}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    print(machine())
    ok = sweep()
    anchor()
    sys.exit(0 if ok else 1)
