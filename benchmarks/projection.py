"""(c) Projection mode on a 1024x1024 @ 1024x1024 matmul in float64 (2,097,152 input elements).

Each run is a fresh interpreter (so its peak RSS is its own): it loads the case, times
check_case with --mode projection (default 4 directions per input), then plants a bug in the
manual gradient, one element of dX scaled by 1.01, and judges it with the same numeric
projections. Targets: at most 3 s, at most 2 GiB peak, the planted bug fails.

Then torch.autograd.gradcheck(fast_mode=True) on the same matmul with the same bug planted
in a custom autograd.Function's backward, and with the right backward.
"""

from __future__ import annotations

import statistics

import torch
from _common import BENCH_CASES, child, fmt, machine, median_time

RUNS = 5
WRONG = (517, 300)  # the element of dX that is off
FACTOR = 1.01

CHILD = f"""
import time
import numpy as np
from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._compare import gradient_scale, judge_input
from gradcheck_suite._sources import Gradients
from gradcheck_suite._sources.autograd import autograd_gradients
from gradcheck_suite._sources.manual import manual_gradients

case = load_case({str(BENCH_CASES / "matmul1024.toml")!r})
start = time.perf_counter()
r = check_case(case, RunOptions(mode="projection"))
seconds = time.perf_counter() - start
numeric = r.sources["numeric"]
manual = r.sources["manual"]
values = {{k: v.copy() for k, v in manual.values.items()}}
values["X"][{WRONG}] *= {FACTOR}
wrong = Gradients("manual", values, "float64")
results = [wrong, r.sources["autograd"], numeric]
scale = gradient_scale(results)
bad = {{k: judge_input(k, results, "float64", scale) for k in case.inputs}}
x = bad["X"]
pair = x.pair("manual", "numeric")
delta = abs(values["X"][{WRONG}] - manual.values["X"][{WRONG}])
RESULT = dict(
    seconds=seconds,
    verdict=r.verdict,
    mode=r.mode,
    source_seconds={{k: g.seconds for k, g in r.sources.items()}},
    notes=numeric.notes,
    bug_verdict_X=x.verdict,
    bug_verdict_W=bad["W"].verdict,
    bug_odd_one_out=x.odd_one_out,
    bug_directions_failing=pair.disagree,
    bug_ratio=pair.ratio,
    delta=float(delta),
    numeric_error_max=float(np.max(x.projection_error)),
    projection_size=float(np.max(np.abs(x.projections["numeric"]))),
    ok_max_ratio=max(p.ratio for i in r.inputs for p in i.pairs),
)
"""


class PlantedMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(w, x)
        return w @ x

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        w, x = ctx.saved_tensors
        gx = w.T @ g
        if PlantedMatmul.planted:
            gx = gx.clone()
            gx[WRONG] *= FACTOR
        return g @ x.T, gx

    planted = True


def main() -> None:
    runs = [child(CHILD) for _ in range(RUNS)]
    times = [r["seconds"] for r in runs]
    rss = [r["max_rss_mib"] for r in runs]
    last = runs[-1]
    print(machine())
    print(
        "projection check of 1024x1024 @ 1024x1024 (2,097,152 elements):"
        f" median {statistics.median(times):.3f} s  ({fmt(times)})"
    )
    print(
        "  sources (last run): "
        + ", ".join(f"{k} {v:.3f} s" for k, v in last["source_seconds"].items())
        + f"; {last['notes'][-1]}"
    )
    print(
        f"  verdict of the right gradient: {last['verdict']} (mode {last['mode']});"
        f" largest ratio to tolerance {last['ok_max_ratio']:.2e}"
    )
    print(
        f"  peak RSS of the whole process: median {statistics.median(rss):.0f} MiB (max {max(rss):.0f})"
        "  (target <= 2048)"
    )
    print(
        f"  dX{list(WRONG)} x {FACTOR}: X {last['bug_verdict_X']} (odd one out: {last['bug_odd_one_out']}),"
        f" W {last['bug_verdict_W']}; {last['bug_directions_failing']} of 4 directions fail,"
        f" the worst at {last['bug_ratio']:.3g}x its tolerance"
    )
    print(
        f"  the bug moves each projection by {last['delta']:.3e}; numeric error estimate at most"
        f" {last['numeric_error_max']:.3e} on projections of size up to {last['projection_size']:.3e}"
    )

    torch.manual_seed(0)
    case_w = torch.randn(1024, 1024, dtype=torch.float64, requires_grad=True)
    case_x = torch.randn(1024, 1024, dtype=torch.float64, requires_grad=True)
    for planted in (True, False):
        PlantedMatmul.planted = planted
        verdicts: list[bool] = []

        def fast(verdicts: list[bool] = verdicts) -> None:
            verdicts.append(
                torch.autograd.gradcheck(PlantedMatmul.apply, (case_w, case_x), fast_mode=True, raise_exception=False)
            )

        t, all_t = median_time(fast, 3)
        what = "with the bug" if planted else "right backward"
        print(f"torch.autograd.gradcheck(fast_mode=True) {what}: returns {verdicts}, median {t:.3f} s ({fmt(all_t)})")


if __name__ == "__main__":
    main()
