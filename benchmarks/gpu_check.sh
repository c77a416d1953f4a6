#!/usr/bin/env bash
# The CUDA checks, run by hand on a machine with an NVIDIA GPU from the repository root
# (torch, numpy and tabulate installed; the package need not be): issue 2's five cases with
# --device cuda, the layer library, the planted notebook bug, the pytest plugin's CUDA items,
# check() on CUDA, and projection mode on the 1024x1024 matmul; issue 12's bfloat16 and float16
# on CUDA, --device cpu,cuda with its devices table, --repeat on atomics, TF32
# (benchmarks/gpu_kernels.py). About 3 minutes on one H100.
set -u
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
gc() { "$PY" -m gradcheck_suite run --no-reports "$@"; echo "exit status $?"; }
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
echo "== the five seed cases, cuda, float64"; gc cases/*.toml --device cuda
echo "== the five seed cases, cuda, float32"; gc cases/*.toml --device cuda --dtype float32
echo "== the layer library, cuda, float64 and float32"; gc cases/layers --device cuda | tail -2; gc cases/layers --device cuda --dtype float32 | tail -2
echo "== 1000 random points, cuda, float32"; gc cases/*.toml --device cuda --dtype float32 --samples 1000 | tail -7
bug=$(mktemp -d); grep -v 'dx += ((1 - sigx) \* sigx) \* dsigx' cases/compound_sigmoid.toml > "$bug/bug.toml"
echo "== the dropped += on cuda (expect exit status 1, manual the odd one out)"; gc "$bug" --device cuda
echo "== pytest plugin, cuda and cpu items"
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -q -p gradcheck_suite.pytest_plugin -o addopts= cases --gradcheck-device cuda,cpu -rs 2>&1 | tail -3
echo "== check() on cuda"
"$PY" - <<'PY'
import torch
from gradcheck_suite import check
# square, so that the missing transpose keeps the shapes and only the values are wrong
W, X, G = (torch.randn(32, 32, dtype=torch.float64) for _ in range(3))
good = check(lambda W, X: W @ X, {"W": W, "X": X}, upstream=G, backward=lambda g, W, X: (g @ X.T, W.T @ g), device="cuda")
bad = check(lambda W, X: W @ X, {"W": W, "X": X}, upstream=G, backward=lambda g, W, X: (g @ X, W.T @ g), device="cuda")
print("right backward:", good.verdict, "| missing transpose:", bad.verdict, bad.odd_one_out)
PY
echo "== projection mode, 1024x1024 @ 1024x1024 float64, cuda vs cpu"
"$PY" - <<'PY'
import time
from gradcheck_suite import RunOptions, check_case, load_case
case = load_case("benchmarks/cases/matmul1024.toml")
for device in ("cuda", "cuda", "cpu"):
    t = time.perf_counter(); r = check_case(case, RunOptions(mode="projection", device=device))
    print(f"{device}: {r.verdict} in {time.perf_counter() - t:.2f} s")
PY
echo "== issue 11: the planted-bug suite with every check kind on cuda (expect each wrong: fail, manual; each right: pass)"
"$PY" - <<'PY'
import warnings
warnings.simplefilter("ignore")
import torch
from gradcheck_suite import check, check_module
from tests.planted import BUGS

for bug in BUGS:
    for which in ("wrong", "right"):
        made = getattr(bug, which)
        if bug.module:
            r = check_module(made(), bug.inputs["x"], reference=bug.reference(), order=2, checks="all", device="cuda")
        else:
            r = check(made, bug.inputs, reference=bug.reference, order=2, checks="all", device="cuda")
        failing = ([] if r.first_verdict == "pass" else ["order1"]) + [k.kind for k in r.kinds if k.verdict != "pass"]
        print(f"{bug.name:24} {which:5} {r.verdict:12} {r.odd_one_out or '-':8} {','.join(failing)}")

class CpuGradient(torch.autograd.Function):
    """A kernel wrapper whose backward forgets to move its result back to the input's device."""
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (2 * x * g).cpu()

r = check(CpuGradient, {"x": [1.0, 2.0]}, reference=lambda x: x * x, checks=["dtypes"], device="cuda")
print("gradient on the wrong device:", r.verdict, r.odd_one_out, "|", r.kind_result("dtypes").reason)
PY
echo; echo "######## issue 12: bfloat16, float16, devices, --repeat, TF32"
echo "== the layer library, cuda, bfloat16 and float16 (low-precision rule, k = 2)"
gc cases/layers --device cuda --dtype bfloat16 | tail -2; gc cases/layers --device cuda --dtype float16 | tail -2
echo "== 50 random points, cuda, bfloat16 and float16: right backward passes (expect no fail)"
for k in layernorm batchnorm lstm_step rnn_step; do for d in bfloat16 float16; do
  echo "$d: $(gc cases/layers --device cuda --dtype $d --samples 50 -k $k | grep -E 'points:')"; done; done
echo "== devices as sources: the seed cases and the layers, --device cpu,cuda (float64, then bfloat16)"
gc cases/*.toml --device cpu,cuda
gc cases/layers --device cpu,cuda --dtype bfloat16 | grep -E "DIFFER|differ across|exit status" | tail -3
echo "== TF32: the layers in float32 on cuda with --tf32 (low-precision rule with TF32's unit roundoff)"
gc cases/layers --device cuda --dtype float32 --tf32 | tail -2
echo "== pytest plugin, bfloat16 items on cuda and cpu"
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -q -p gradcheck_suite.pytest_plugin -o addopts= cases --gradcheck-device cuda,cpu --gradcheck-dtype bfloat16 -rs 2>&1 | tail -2
"$PY" benchmarks/gpu_kernels.py cuda; echo "exit status $?"
