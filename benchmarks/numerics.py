"""Figures for issue 3 (numerics), run by hand: `.venv/bin/python benchmarks/numerics.py [POINTS]`.

Prints, for the five seed cases:
1. numeric accuracy in float64 per method (median and max relative error against the exact
   gradient), with torch.autograd.gradcheck's central difference (eps=1e-6) as the anchor;
2. whether the error estimates hold: elements whose true error exceeds the estimate, over
   POINTS random points, float64 and float32 points;
3. false alarms: fail / inconclusive counts of correct gradients over POINTS points;
4. sensitivity: a manual gradient scaled by 1 + 1e-6 (float64) and 1 + 1e-3 (float32), and
   what torch.autograd.gradcheck does with the same (anchor);
5. the kink case.

"Exact" is the backward program evaluated in long double (x86: 64-bit mantissa), whose
rounding is about 2,000 times below float64's.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._engine import _at_dtype, sample_points
from gradcheck_suite._program import parse_program
from gradcheck_suite._sources.manual import run_programs
from gradcheck_suite._sources.numeric import NumericSettings, numeric_gradients

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ["product", "sum_times", "sigmoid_neuron", "compound_sigmoid", "matmul"]
POINTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def exact(case, point):
    values = run_programs(case, point, "longdouble")
    return {k: np.asarray(values[f"d{k}"], dtype=np.longdouble) for k in point}


def rel_errors(case, point, method):
    g = numeric_gradients(case, point, NumericSettings(method=method))
    truth = exact(case, point)
    out = []
    for k in point:
        t = truth[k].astype(np.float64)
        scale = np.maximum(np.abs(t), np.max(np.abs(t)) * 1e-3)
        out.extend((np.abs(g.values[k] - t) / scale).ravel())
    return out


def torch_central(case, point, eps=1e-6):
    """torch.autograd.gradcheck's numerical Jacobian: central differences, eps = 1e-6."""
    from gradcheck_suite._backends import TorchBackend

    be = TorchBackend(torch.float64)
    base = {k: be.asarray(v) for k, v in point.items()}
    up = None if case.upstream is None else be.asarray(case.upstream)

    def phi(env):
        out = be._t(case.forward.run(env, be)[case.output])
        return float(torch.sum(out * up) if up is not None else torch.sum(out))

    grads = {}
    for k, x in base.items():
        g = torch.zeros_like(x).reshape(-1)
        for j in range(x.numel()):
            d = torch.zeros_like(x).reshape(-1)
            d[j] = eps
            d = d.reshape(x.shape)
            g[j] = (phi({**base, k: x + d}) - phi({**base, k: x - d})) / (2 * eps)
        grads[k] = g.reshape(x.shape).numpy()
    truth = exact(case, point)
    out = []
    for k in point:
        t = truth[k].astype(np.float64)
        scale = np.maximum(np.abs(t), np.max(np.abs(t)) * 1e-3)
        out.extend((np.abs(grads[k] - t) / scale).ravel())
    return out


def section(title):
    print(f"\n## {title}")


def accuracy():
    section("1. Numeric accuracy, float64, at each case's own point (relative error vs exact)")
    print(f"{'case':18} {'method':14} {'median':>10} {'max':>10}")
    for name in SEEDS:
        case = load_case(ROOT / "cases" / f"{name}.toml")
        rows = [(m, rel_errors(case, case.inputs, m)) for m in ("auto", "central", "richardson", "complex-step")]
        rows.append(("torch eps=1e-6", torch_central(case, case.inputs)))
        for m, errs in rows:
            print(f"{name:18} {m:14} {np.median(errs):10.2e} {np.max(errs):10.2e}")


def estimates_hold():
    section(f"2. Error estimates hold: elements whose true error exceeds the estimate, {POINTS} points")
    for dtype, method in [(d, m) for d in ("float64", "float32") for m in ("complex-step", "richardson", "central")]:
        for name in SEEDS:
            case = load_case(ROOT / "cases" / f"{name}.toml")
            worst = 0.0
            over = total = 0
            for p in sample_points(case, POINTS):
                p = _at_dtype(p, dtype)
                g = numeric_gradients(case, p, NumericSettings(method=method))
                truth = exact(case, p)
                for k in p:
                    err = np.abs(g.values[k] - truth[k].astype(np.float64))
                    assert g.error is not None
                    ratio = err / np.maximum(g.error[k], 1e-300)
                    worst = max(worst, float(ratio.max()))
                    over += int((err > g.error[k]).sum())
                    total += err.size
            print(f"{dtype} {method:12} {name:18} {over} of {total} elements over; worst true/estimate {worst:.3f}")


def false_alarms():
    section(f"3. False alarms: correct gradients at {POINTS} random points (plus the case's own)")
    for dtype in ("float64", "float32"):
        for name in SEEDS:
            case = load_case(ROOT / "cases" / f"{name}.toml")
            t = time.perf_counter()
            r = check_case(case, RunOptions(dtype=dtype, samples=POINTS))
            assert r.samples is not None
            c = r.samples.counts
            rate = 100 * c["inconclusive"] / r.samples.points
            print(
                f"{dtype} {name:18} pass {c['pass']:5} fail {c['fail']:3} inconclusive {c['inconclusive']:3}"
                f" ({rate:.2f}%)  {time.perf_counter() - t:.1f} s"
            )


def scaled(case, factor):
    assert case.backward is not None
    extra = "".join(f"\nd{k} = d{k} * {factor}" for k in case.inputs)
    source = "\n".join(s.text for s in case.backward.statements) + extra
    known = [*case.inputs, *case.forward.assigned, f"d{case.output}"]
    program = parse_program(source, key="backward", known=known)
    return dataclasses.replace(case, backward=dataclasses.replace(case.backward, program=program), expect={})


def sensitivity():
    section("4. Sensitivity: manual gradient scaled by a factor (verdict, odd one out)")
    for dtype, factor in (("float64", "(1 + 1e-6)"), ("float32", "(1 + 1e-3)")):
        for name in SEEDS:
            case = scaled(load_case(ROOT / "cases" / f"{name}.toml"), factor)
            r = check_case(case, RunOptions(dtype=dtype))
            print(f"{dtype} x{factor:12} {name:18} {r.verdict:5} {r.odd_one_out}")
    print("\nanchor: torch.autograd.gradcheck at its defaults (eps=1e-6, atol=1e-5, rtol=1e-3)")
    for factor in (1.001, 1.0001, 1.000001):

        class Wrong(torch.autograd.Function):
            scale = factor

            @staticmethod
            def forward(ctx, x, y):
                ctx.save_for_backward(x, y)
                return (x + torch.sigmoid(y)) / (torch.sigmoid(x) + (x + y) ** 2)

            @staticmethod
            def backward(ctx, g):
                x, y = ctx.saved_tensors
                with torch.enable_grad():
                    xx, yy = x.detach().requires_grad_(), y.detach().requires_grad_()
                    f = (xx + torch.sigmoid(yy)) / (torch.sigmoid(xx) + (xx + yy) ** 2)
                    dx, dy = torch.autograd.grad(f, (xx, yy), g)
                return dx * Wrong.scale, dy * Wrong.scale

        x = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
        y = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
        ok = torch.autograd.gradcheck(Wrong.apply, (x, y), raise_exception=False)
        print(f"  compound_sigmoid scaled by {factor}: torch gradcheck {'PASSES (misses it)' if ok else 'fails'}")
    rng = np.random.default_rng(0)
    flagged = 0
    for _ in range(200):
        x = torch.tensor(rng.uniform(-5, 5), dtype=torch.float32, requires_grad=True)
        y = torch.tensor(rng.uniform(-5, 5), dtype=torch.float32, requires_grad=True)
        f = lambda a, b: (a + torch.sigmoid(b)) / (torch.sigmoid(a) + (a + b) ** 2)  # noqa: E731
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flagged += not torch.autograd.gradcheck(f, (x, y), raise_exception=False)
    print(f"  correct float32 compound_sigmoid at 200 random points: torch gradcheck flags {flagged}")


def kink():
    section("5. Kink")
    r = check_case(load_case(ROOT / "tests" / "data" / "kink_relu.toml"), RunOptions())
    print(f"kink_relu at x = 0: {r.verdict}; {r.reason}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, numpy {np.__version__}, long double eps {np.finfo(np.longdouble).eps:.2e}")
    accuracy()
    estimates_hold()
    false_alarms()
    sensitivity()
    kink()
