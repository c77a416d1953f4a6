"""Issue 16: what a passing run of small cases pays for: no torch._dynamo, one torch thread."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradcheck_suite import Limits, load_case
from gradcheck_suite._shapes import _proven_small, check_shapes

from .conftest import CASES, ROOT


def test_the_seed_cases_are_checked_without_torch_dynamo() -> None:
    """main: the static shape pass ran on meta tensors, whose Python kernels import
    torch._dynamo (and sympy) on first use, longer than the rest of the run."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom gradcheck_suite import RunOptions, check_case, load_case\n"
        "for p in sorted(Path('cases').glob('*.toml')):\n"
        "    assert check_case(load_case(p), RunOptions()).verdict == 'pass'\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_shape_walk_refuses_what_the_meta_pass_refuses(tmp_path: Path) -> None:
    small = Limits(max_elements=64)
    path = tmp_path / "outer.toml"
    path.write_text(
        'name = "outer"\noutput = "f"\n[inputs]\nx = { random = "normal", shape = [10], seed = 0 }\n'
        '[forward]\nprogram = """\no = reshape(x, (10, 1)) * reshape(x, (1, 10))\nf = sum(o)\n"""\n'
    )
    case = load_case(path)
    assert _proven_small(case, Limits())
    assert not _proven_small(case, small)
    with pytest.raises(Exception, match="max-elements"):
        check_shapes(case, small)
    for folder in (CASES, ROOT / "benchmarks" / "corpus"):
        for p in folder.rglob("*.toml"):
            c = load_case(p)
            if c.forward.program is not None:
                assert _proven_small(c, Limits()), p.name


def test_a_small_case_runs_with_one_torch_thread_and_gives_the_setting_back() -> None:
    """On a busy machine each parallel region of torch waits for every thread to be scheduled:
    a 64x64 matmul took 20 to 50 ms with 2 threads, 0.03 ms with one (_threads.py)."""
    from gradcheck_suite import check

    seen: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return torch.tanh(x)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert check(f, {"x": torch.linspace(-1, 1, 5, dtype=torch.float64)}).verdict == "pass"
        # check() calls f once to count its outputs before the case is checked
        assert len(seen) > 2 and set(seen[1:]) == {1}
        assert torch.get_num_threads() == 2
        big = {"x": torch.zeros(5000, dtype=torch.float64)}
        seen.clear()
        check(f, big, mode="projection")
        assert set(seen) == {2}  # a large case keeps the caller's threads
    finally:
        torch.set_num_threads(before)


def test_a_run_moves_its_imports_out_of_the_collectors_reach(tmp_path: Path) -> None:
    """torch's million objects, walked at every full collection and again at exit (0.35 s of
    `python -c "import torch"` is its final collection): `gradcheck run` freezes them."""
    import gc

    from gradcheck_suite._cli import main

    gc.unfreeze()
    try:
        assert main(["run", str(CASES / "product.toml"), "--no-reports"]) == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
