"""Figures for issues 3 and 10 (numerics), run by hand:

    .venv/bin/python benchmarks/numerics.py [POINTS] [-k PATTERN] [--only seeds,corpus,startup]
        [--dtypes float64,float32] [--json FILE]

POINTS random points per function (default 1000). Prints, for the five seed cases (issue 3):
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

Then, for the adversarial corpus (benchmarks/corpus, issue 10; `-k` picks functions), in
float64 and float32, from one `check_case` per point and the 50-digit referee (see _corpus.py
for every definition):
6. fails and inconclusives of the correct gradients, and which inconclusive points lie within
   a noise-limited step of a true kink;
7. the numeric error estimate against the true error on every element;
8. sensitivity: (1 + 1e-6) / (1 + 1e-3) scaled gradients, one element off, a sign flip;
9. the referee's speed;
and 10. `gradcheck run cases/*.toml` against `python -c "import torch"` (startup.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
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
POINTS = 1000
# numeric methods of tables 1 and 2 (--as-callable: a callable has no complex step, and the
# first pass of auto is what table 2 must then vouch for)
ACCURACY_METHODS = ("auto", "central", "richardson", "complex-step")
ESTIMATE_METHODS = ("complex-step", "richardson", "central")


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
        rows = [(m, rel_errors(case, case.inputs, m)) for m in ACCURACY_METHODS]
        rows.append(("torch eps=1e-6", torch_central(case, case.inputs)))
        for m, errs in rows:
            print(f"{name:18} {m:14} {np.median(errs):10.2e} {np.max(errs):10.2e}")


def estimates_hold():
    section(f"2. Error estimates hold: elements whose true error exceeds the estimate, {POINTS} points")
    for dtype, method in [(d, m) for d in ("float64", "float32") for m in ESTIMATE_METHODS]:
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


def corpus_figures(pattern, dtypes, json_path):
    from _corpus import corpus, measure

    figures = []
    section(f"6-8. Adversarial corpus: {POINTS} random points per function plus its own point")
    print(
        "fail / inconclusive: of the correct gradient; 'not near kink': inconclusive points with no true kink"
        "\nwithin sqrt(eps64) x scale (referee); est over: elements whose true error exceeds the numeric"
        "\nestimate (of elements compared); worst: true error / estimate; bugs: missed of detectable points"
        "\n(scaled gradient, one element, sign flip)"
    )
    header = (
        f"{'function':24} {'dtype':7} {'fail':>5} {'blamed':14} {'incon':>5} {'not near kink':>13}"
        f" {'est over':>14} {'worst':>9} {'scaled':>9} {'element':>9} {'flip':>9} {'time':>7}"
    )
    for dtype in dtypes:
        print()
        print(header)
        for path in corpus(pattern):
            fig = measure(path, dtype, POINTS)
            figures.append(fig)
            bugs = [f"{fig.bugs[k][1]}/{fig.bugs[k][0]}" for k in ("scaled", "element", "flip")]
            blamed = ",".join(f"{k}:{v}" for k, v in sorted(fig.fail_odd.items())) or "-"
            print(
                f"{fig.name:24} {dtype:7} {fig.verdicts['fail']:5} {blamed:14} {fig.verdicts['inconclusive']:5}"
                f" {fig.unjustified:13} {f'{fig.over}/{fig.elements}':>14} {fig.worst:9.3g}"
                f" {bugs[0]:>9} {bugs[1]:>9} {bugs[2]:>9} {fig.seconds:6.0f}s",
                flush=True,
            )
            for e in fig.errors[:2]:
                print(f"    error: {e}")
        _totals([f for f in figures if f.dtype == dtype], dtype)
    section("9. Referee speed (50 digits, every element of every point, both precisions of the stencil)")
    elements = sum(f.referee_elements for f in figures)
    seconds = sum(f.referee_seconds for f in figures)
    print(f"{elements} elements in {seconds:.1f} s: {elements / max(seconds, 1e-9):.0f} elements per second")
    slow = sorted(figures, key=lambda f: f.referee_elements / max(f.referee_seconds, 1e-9))[:3]
    for f in slow:
        print(f"  slowest: {f.name} {f.dtype}: {f.referee_elements / max(f.referee_seconds, 1e-9):.0f} elements/s")
    if json_path:
        Path(json_path).write_text(json.dumps([f.row() for f in figures], indent=1) + "\n")
        print(f"per-function figures written to {json_path}")


def _totals(figures, dtype):
    points = sum(f.points for f in figures)
    fails = sum(f.verdicts["fail"] for f in figures)
    smooth = [f for f in figures if not f.kinked]
    smooth_points = sum(f.points for f in smooth)
    smooth_incon = sum(f.verdicts["inconclusive"] for f in smooth)
    kinked_unjust = sum(f.unjustified for f in figures if f.kinked)
    over = sum(f.over for f in figures)
    elements = sum(f.elements for f in figures)
    worst = max((f.worst for f in figures), default=0.0)
    bugs = {k: [sum(f.bugs[k][i] for f in figures) for i in (0, 1)] for k in ("scaled", "element", "flip")}
    print(f"{dtype}, all {len(figures)} functions, {points} points:")
    print(f"  fails on correct gradients: {fails} ({100 * fails / max(points, 1):.2f}% of points)")
    print(
        f"  inconclusive on smooth functions ({len(smooth)}): {smooth_incon} of {smooth_points} points"
        f" ({100 * smooth_incon / max(smooth_points, 1):.2f}%); on kinked ones, not near a true kink: {kinked_unjust}"
    )
    print(f"  estimate under the true error: {over} of {elements} elements; worst true/estimate {worst:.3g}")
    print("  sensitivity, missed of detectable points: " + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in bugs.items()))


def startup_ratio():
    from startup import measure

    section("10. Default run of the five seed cases against `python -c 'import torch'` (startup.py)")
    ours, anchor = measure()
    a, b = statistics.median(ours), statistics.median(anchor)
    print(f"gradcheck run cases/*.toml: median {a:.3f} s; import torch: median {b:.3f} s")
    print(f"ratio {a / b:.2f}x (target <= 1.15x)")


def as_callable():
    """Make the numeric source treat every program as it treats an opaque Python callable:
    no complex step (a callable is never known to be analytic) and no rounding bound from the
    program's terms (its noise is measured, ECnoise). The manual and autograd sources, the
    comparison and the referee are unchanged."""
    global ACCURACY_METHODS, ESTIMATE_METHODS
    from gradcheck_suite import _engine
    from gradcheck_suite._program import Program

    ACCURACY_METHODS = ESTIMATE_METHODS = ("auto", "central", "richardson")
    Program.analytic = property(lambda self: False)
    _engine._numeric_rounding = lambda case, bounds: None
    print("--as-callable: every forward differenced with measured noise, as for a Python callable")


def main():
    global POINTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", nargs="?", type=int, default=1000, help="random points per function")
    parser.add_argument("-k", dest="pattern", help="corpus functions whose name contains PATTERN (or a glob)")
    parser.add_argument("--only", default="seeds,corpus,startup", help="sections: seeds, corpus, startup")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--json", help="write the corpus figures per function to this file")
    parser.add_argument(
        "--as-callable",
        action="store_true",
        help="numeric source as for a Python callable: every forward differenced (the first pass, then the"
        " ladders, with kink tests), its noise measured rather than bounded from the program (issue 16)",
    )
    args = parser.parse_args()
    POINTS = args.points
    only = set(args.only.split(","))
    from _common import machine

    if args.as_callable:
        as_callable()
    print(machine())
    print(f"torch {torch.__version__}, numpy {np.__version__}, long double eps {np.finfo(np.longdouble).eps:.2e}")
    start = time.perf_counter()
    if "seeds" in only:
        accuracy()
        estimates_hold()
        false_alarms()
        sensitivity()
        kink()
    if "corpus" in only:
        corpus_figures(args.pattern, args.dtypes.split(","), args.json)
    if "startup" in only:
        startup_ratio()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
