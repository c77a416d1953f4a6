#!/usr/bin/env bash
# The short CUDA check run on main after every issue's branch was merged (about a minute on one
# H100): the seed cases on both devices, the layer library on CUDA in float64 and bfloat16, a
# numpy callable on CUDA with forked workers (--jobs 2 after CUDA is initialised), and the
# planted Functions on CUDA with every check kind. benchmarks/gpu_check.sh is the full one.
set -u
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
gc() { "$PY" -m gradcheck_suite run --no-reports "$@"; echo "exit status $?"; }
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
echo "== seed cases, --device cpu,cuda, float64"; gc cases/*.toml --device cpu,cuda | tail -12
echo "== layers, cuda, float64"; gc cases/layers --device cuda | tail -2
echo "== layers, cuda, bfloat16"; gc cases/layers --device cuda --dtype bfloat16 | tail -2
echo "== numpy callables on cuda, --jobs 2"; gc cases/layers -k "conv_naive or max_pool_naive" --device cpu,cuda --jobs 2 | tail -4
echo "== 20 random points, cuda, float32"; gc cases/*.toml --device cuda --dtype float32 --samples 20 | tail -2
echo "== planted Functions on cuda, every kind"
"$PY" - <<'PY'
import warnings
warnings.simplefilter("ignore")
from gradcheck_suite import check, check_module
from tests.planted import BUGS
for bug in BUGS:
    for which in ("wrong", "right"):
        made = getattr(bug, which)
        kw = dict(order=2, checks="all", device="cuda", **bug.options)
        r = check_module(made(), bug.inputs["x"], reference=bug.reference(), **kw) if bug.module else check(made, bug.inputs, reference=bug.reference, **kw)
        failing = ([] if r.first_verdict == "pass" else ["order1"]) + [k.kind for k in r.kinds if k.verdict != "pass"]
        print(f"{bug.name:24} {which:5} {r.verdict:12} {r.odd_one_out or '-':8} {','.join(failing)}")
PY
echo "exit status $?"
