"""Issue 12's CUDA checks, called by benchmarks/gpu_check.sh: `python benchmarks/gpu_kernels.py [DEVICE]`.

1. the bfloat16/float16 kernels of tests/test_lowprecision.py (softmax, layer norm, matmul:
   float32 accumulation passes; accumulation in the dtype, a missing rescale, one element 5%
   off fail with manual named), on the device;
2. a CUDA-only bug in a kernel: `--device cpu,cuda` names cuda as the odd device;
3. --repeat on an atomics-based backward (index_add_ on CUDA, float32): the spread, judged
   with nondet_tol 0 and 1e-3;
4. TF32: a float32 matmul backward with TF32 on, judged by the low-precision rule.
DEVICE defaults to cuda; `cpu` runs the same code on the CPU (to try the script anywhere).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradcheck_suite import check  # noqa: E402
from gradcheck_suite._cli import main  # noqa: E402
from tests import test_lowprecision as kernels  # noqa: E402

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cuda"


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _resolution(r: object) -> float:
    """The relative error the rule allows at the largest element of the first input: a 5%
    error below it is not there to be found (the reference's own error is as large)."""
    i = r.inputs[0]  # type: ignore[attr-defined]
    e = i.low_precision
    t = r.sources["autograd"].reference[i.name]  # type: ignore[attr-defined]
    s = float(np.sqrt(np.mean(t**2)))
    big = float(np.abs(t).max())
    return e.k * max(e.reference, 2 * e.unit_roundoff) * (1 + s / big) + e.unit_roundoff


def lowprecision_kernels() -> bool:
    section(f"bfloat16/float16 kernels on {DEVICE} (right: pass; bugs: fail, manual)")
    ok = True
    for kernel in kernels.KERNELS:
        for dtype in kernels.DTYPES:
            for variant in ("right", "low_accumulator", "no_rescale", "one_element_off"):
                start = time.perf_counter()
                r = kernels._run(kernel, variant, dtype, device=DEVICE)
                want = ("pass", None) if variant == "right" else ("fail", "manual")
                good = (r.verdict, r.odd_one_out) == want
                note = "ok" if good else "UNEXPECTED"
                if variant == "one_element_off" and not good and _resolution(r) >= 0.05:
                    # honest, not a miss of the rule: the reference's own error allows more
                    good, note = True, f"not detectable: the rule allows {_resolution(r):.1%} at that element"
                ok &= good
                worst = max(
                    (max(i.low_precision.element_ratio or 0, i.low_precision.norm_ratio or 0) for i in r.inputs),
                    default=0.0,
                )
                seconds = time.perf_counter() - start
                print(
                    f"  {kernel:10} {dtype:8} {variant:16} {r.verdict:4} {str(r.odd_one_out):6}"
                    f" worst/allowed {worst:9.2f}  {note}  {seconds:.1f} s",
                    flush=True,
                )
    return ok


CUDA_ONLY_BUG = """\
def backward(dout, x):
    g = 3 * x**2 * dout
    return g * 1.01 if g.is_cuda else g  # a bug in the CUDA path of a kernel only
"""

CASE = """\
name = "cube_kernel"
output = "out"
upstream = { random = "normal", shape = [64, 32], seed = 2 }
[inputs]
x = { random = "normal", shape = [64, 32], seed = 1 }
[forward]
program = "out = x * x * x"
[backward]
callable = "cudaonly:backward"
args = ["dout", "x"]
array = "torch"
"""


def cuda_only_bug() -> bool:
    if DEVICE == "cpu":
        return True  # nothing to compare the CPU with
    section(f"a {DEVICE}-only bug in a kernel: --device cpu,{DEVICE} (expect exit 1, {DEVICE} the odd device)")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cudaonly.py").write_text(CUDA_ONLY_BUG)
        (Path(tmp) / "cube.toml").write_text(CASE)
        sys.path.insert(0, tmp)
        code = main(["run", str(Path(tmp) / "cube.toml"), "--device", f"cpu,{DEVICE}", "--no-reports"])
        sys.path.remove(tmp)
    print(f"exit status {code}")
    return code == 1


def atomics() -> bool:
    section(f"--repeat on index_add_ (atomics on CUDA), float32, {DEVICE}")
    rows, n, d = 16, 1 << 16, 64
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, rows, size=n)).to(DEVICE)
    table = torch.from_numpy(np.random.default_rng(1).normal(size=(rows, d)))
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=(n, d)))

    def gather(table: torch.Tensor) -> torch.Tensor:
        return table[idx.to(table.device)]

    def backward(g: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(table).index_add_(0, idx.to(g.device), g)

    ok = True
    for tol in (0.0, 1e-3):
        r = check(
            gather,
            {"table": table},
            upstream=upstream,
            backward=backward,
            dtype="float32",
            device=DEVICE,
            repeat=5,
            nondet_tol=tol,
            mode="projection",
        )
        spreads = {p.name: f"{p.max_abs:.2e}" for p in r.inputs[0].pairs if p.a == p.b}
        print(f"  nondet_tol {tol:g}: {r.verdict}, odd one out {r.odd_one_out}; spreads {spreads}")
        print(f"    {r.inputs[0].reason}")
        if tol > 0:
            ok &= r.verdict == "pass"
    return ok


def tf32() -> bool:
    section(f"TF32: float32 matmul on {DEVICE}, hand-written backward with torch matmuls")
    a, b, g = (torch.from_numpy(np.random.default_rng(s).normal(size=(256, 256))) for s in (3, 4, 5))

    def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def backward(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return g @ b.T, a.T @ g

    def half_backward(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.bfloat16  # a kernel that silently computes in bfloat16
        return (g.to(h) @ b.T.to(h)).to(g.dtype), (a.T.to(h) @ g.to(h)).to(g.dtype)

    ok = True
    for name, bw, tf, want in (
        ("right, TF32 off (float32 rule)", backward, False, "pass"),
        ("right, TF32 on (low-precision rule)", backward, True, "pass"),
        ("bfloat16 inside, TF32 on", half_backward, True, "fail"),
    ):
        r = check(matmul, {"a": a, "b": b}, upstream=g, backward=bw, dtype="float32", device=DEVICE, tf32=tf)
        e = r.inputs[0].low_precision if hasattr(r.inputs[0], "low_precision") else None
        side = f"; manual err {e.manual:.1e} vs reference {e.reference:.1e} ({e.dtype})" if e is not None else ""
        print(f"  {name}: {r.verdict}, odd one out {r.odd_one_out}{side}")
        ok &= r.verdict == want
    return ok


def complex_pow() -> bool:
    """For issue 10 (the numeric source): the complex step through `x ** 3` at negative x."""
    section(f"complex step through z ** 3 at x = -1.5, h = 2^-60 (expect 6.75 = 3 x^2): {DEVICE}, then cpu")
    for where in dict.fromkeys((DEVICE, "cpu")):
        z = torch.tensor([-1.5 + 2.0**-60 * 1j], dtype=torch.complex128, device=where)
        print(
            f"  {where}: Im((x + ih) ** 3) / h = {float((z**3).imag[0]) / 2.0**-60:.6g};"
            f" Im((x + ih) * (x + ih) * (x + ih)) / h = {float((z * z * z).imag[0]) / 2.0**-60:.6g}"
        )
    return True


if __name__ == "__main__":
    results = {f.__name__: f() for f in (lowprecision_kernels, cuda_only_bug, atomics, tf32, complex_pow)}
    section("summary")
    for k, v in results.items():
        print(f"  {k}: {'as expected' if v else 'UNEXPECTED'}")
    sys.exit(0 if all(results.values()) else 1)
