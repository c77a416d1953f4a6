"""Issue 16 (a): the bundled conv_naive and max_pool_naive, full check against cs231n's
`eval_numerical_gradient_array` on the same functions and inputs.

Anchor: the course's helper, written out below as the assignments ship it (central
differences, h = 1e-5, one element at a time through np.nditer, `np.sum((pos - neg) * df)
/ (2 h)`), applied to every input of the case with the case's upstream as df: x, w and b of
the convolution, x of the pooling. It gives one number per element and nothing else.

Ours: `check_case(case, RunOptions())`, the whole check: the hand-written backward, autograd
through torch's conv2d / max_pool2d, the numeric source with an error estimate per element
and kink tests, and the comparison of all three. Both in this process, interleaved, medians
of RUNS. Then the kink: max_pool_naive with one window's two largest values tied.

    .venv/bin/python benchmarks/cs231n.py [--runs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import ROOT, fmt, machine

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite.naive_layers import conv_forward_naive, max_pool_forward_naive

RUNS = 15
LAYERS = ROOT / "cases" / "layers"


def eval_numerical_gradient_array(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, df: np.ndarray, h: float = 1e-5
):
    """cs231n's gradient_check.eval_numerical_gradient_array, as the assignments ship it."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        pos = f(x).copy()
        x[ix] = oldval - h
        neg = f(x).copy()
        x[ix] = oldval
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def cs231n_conv(case: Any) -> dict[str, np.ndarray]:
    x, w, b = (case.inputs[k].copy() for k in ("x", "w", "b"))
    param, dout = case.constants["conv_param"], case.upstream
    return {
        "x": eval_numerical_gradient_array(lambda v: conv_forward_naive(v, w, b, param)[0], x, dout),
        "w": eval_numerical_gradient_array(lambda v: conv_forward_naive(x, v, b, param)[0], w, dout),
        "b": eval_numerical_gradient_array(lambda v: conv_forward_naive(x, w, v, param)[0], b, dout),
    }


def cs231n_pool(case: Any) -> dict[str, np.ndarray]:
    x, param, dout = case.inputs["x"].copy(), case.constants["pool_param"], case.upstream
    return {"x": eval_numerical_gradient_array(lambda v: max_pool_forward_naive(v, param)[0], x, dout)}


def interleaved(ours: Callable[[], Any], theirs: Callable[[], Any], runs: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    for _ in range(runs):
        for fn, out in ((theirs, b), (ours, a)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return a, b


def tie(case: Any) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    """The pooling case with the largest value of its first window copied to a second place."""
    x = case.inputs["x"].copy()
    window = x[0, 0, 0:3, 0:3]
    i, j = np.unravel_index(int(np.argmax(window)), window.shape)
    k = (int(i) + 1) % 3
    x[0, 0, k, j] = x[0, 0, i, j]
    return dataclasses.replace(case, inputs={"x": x}), (0, 0, int(i), int(j)), (0, 0, k, int(j))


def one_sided(case: Any, at: tuple[int, ...], h: float = 1e-7) -> tuple[float, float]:
    """The left and right derivatives of sum(upstream * pool(x)) in element ``at``."""
    x, param, dout = case.inputs["x"], case.constants["pool_param"], case.upstream

    def phi(t: float) -> float:
        y = x.copy()
        y[at] += t
        return float(np.sum(dout * max_pool_forward_naive(y, param)[0]))

    return (phi(0.0) - phi(-h)) / h, (phi(h) - phi(0.0)) / h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    print(machine())
    options = RunOptions()
    for name, anchor in (("conv_naive", cs231n_conv), ("max_pool_naive", cs231n_pool)):
        case = load_case(LAYERS / f"{name}.toml")
        result = check_case(case, options)  # warm-up, and the verdict
        assert result.verdict == "pass" and result.mode == "full", result.reason
        theirs = anchor(case)
        numeric = result.sources["numeric"]
        worst = max(
            float(np.max(np.abs(theirs[k] - numeric.values[k]) / (np.abs(numeric.values[k]) + 1e-3))) for k in theirs
        )
        ours_t, theirs_t = interleaved(lambda c=case: check_case(c, options), lambda c=case, f=anchor: f(c), args.runs)
        a, b = statistics.median(ours_t), statistics.median(theirs_t)
        elements = sum(int(np.size(v)) for v in case.inputs.values())
        print(f"\n{name}: {elements} input elements")
        print(f"  gradcheck-suite full check (three sources, compared): median {a:.4f} s  ({fmt(ours_t)})")
        print(f"    {numeric.notes[0]}; numeric source {numeric.seconds:.4f} s")
        for note in result.notes:
            print(f"    note: {note}")
        print(f"  cs231n eval_numerical_gradient_array, every input:    median {b:.4f} s  ({fmt(theirs_t)})")
        print(f"  ratio ours / cs231n: {a / b:.2f}x (target <= 1); largest relative gap of the two numeric")
        estimate = max(float(np.max(e)) for e in numeric.error.values())
        print(f"  gradients {worst:.1e}; our numeric estimate at most {estimate:.1e}")

    case = load_case(LAYERS / "max_pool_naive.toml")
    tied, a_at, b_at = tie(case)
    result = check_case(tied, options)
    kinks = result.sources["numeric"].kinks["x"]
    theirs = cs231n_pool(tied)["x"]
    print(
        "\nmax_pool_naive with x"
        + str(list(b_at))
        + " set equal to x"
        + str(list(a_at))
        + " (a tie in the first window):"
    )
    print(f"  gradcheck-suite: {result.verdict}; kinks reported at {[list(map(int, k)) for k in np.argwhere(kinks)]}")
    print(f"    {result.reason}")
    slopes = [one_sided(tied, at) for at in (a_at, b_at)]
    print(
        f"  cs231n: {theirs[a_at]:.6f} and {theirs[b_at]:.6f} at the two tied elements, no warning"
        f" (one-sided slopes there, left / right: {slopes[0][0]:.6f} / {slopes[0][1]:.6f} and"
        f" {slopes[1][0]:.6f} / {slopes[1][1]:.6f})"
    )


if __name__ == "__main__":
    main()
