from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from .conftest import CASES

DROP_SIGX = "dx += ((1 - sigx) * sigx) * dsigx\n"


BUNDLED = len(list(CASES.rglob("*.toml")))  # the five seed cases and the layer library


def test_bundled_cases_pass(cli) -> None:
    code, out, err = cli("run", str(CASES))
    assert code == 0, out + err
    for name in ("product", "sum_times", "sigmoid_neuron", "compound_sigmoid", "matmul"):
        assert re.search(rf"^{name}\s", out, re.M)
    assert f"{BUNDLED} case(s): {BUNDLED} pass, 0 fail, 0 inconclusive, 0 error" in out
    # scalars are shown whole, tensors summarised
    assert "1.5922327514838093" in out
    assert "[5x10]" in out


def test_dropped_accumulation_is_caught_and_blamed_on_manual(cli, seed_copy) -> None:
    """The bug the notebook warns about ("Notice += !!")."""
    path = seed_copy("compound_sigmoid", lambda t: t.replace(DROP_SIGX, ""))
    code, out, _ = cli("run", str(path), "-v")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("compound_sigmoid"))
    assert row.split()[1] == "x"
    assert "FAIL: manual is the odd one out" in row
    y_row = next(line for line in out.splitlines() if line.split()[:1] == ["y"])
    assert y_row.rstrip().endswith("pass")
    # -v: the per-element table and the rule that decided
    assert "compound_sigmoid / x: fail - manual disagrees with the other two" in out
    assert "autograd vs numeric: agree" in out
    assert "numeric error estimate" in out


def test_only_the_selected_cases_run(cli) -> None:
    code, out, _ = cli("run", str(CASES), "-k", "sig")
    assert code == 0
    assert "sigmoid_neuron" in out and "compound_sigmoid" in out
    assert "matmul" not in out and "product" not in out
    code, out, _ = cli("run", str(CASES), "-k", "s*m*s")
    assert "sum_times" in out and "sigmoid_neuron" not in out


def test_list_and_show(cli) -> None:
    code, out, _ = cli("list", str(CASES))
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["case", "inputs", "sources", "description"]
    # a row per case, each folder's name above its cases
    headings = [line for line in lines[2:] if line.endswith("/")]
    assert len(lines) - 2 - len(headings) == BUNDLED and len(headings) == 2
    code, out, _ = cli("show", "compound_sigmoid", str(CASES))
    assert code == 0
    # each forward step's value, as the notebook's cells print them
    assert "f = num * invden" in out and "1.5456448841066441" in out
    assert "dy += ((1 - sigy) * sigy) * dsigy" in out and "1.5922327514838093" in out
    code, _, err = cli("show", "no_such_case", str(CASES))
    assert code == 2 and "no case named 'no_such_case'" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(cli) -> None:
    code, out, err = cli("run", str(CASES), "--device", "cuda")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "no CUDA device is available" in err
    assert "Traceback" not in err


def test_usage_errors_exit_2(cli, tmp_path: Path) -> None:
    code, _, err = cli("run", "--dtype", "int8")  # float16 and bfloat16 are dtypes since issue 12
    assert code == 2 and "invalid choice" in err
    code, _, err = cli("run", str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in err


def test_console_script_runs_from_the_repository_root() -> None:
    import subprocess
    import sys

    root = CASES.parent
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck_suite", "run"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{BUNDLED} pass" in proc.stdout


def test_a_pattern_that_selects_nothing_is_an_error(cli) -> None:
    code, out, err = cli("run", str(CASES), "-k", "zzz", "--no-reports")
    assert code == 2 and out == ""
    assert "no case under" in err and "matches -k 'zzz'" in err


def test_show_has_no_samples_option_and_names_no_placeholder(cli) -> None:
    code, _, err = cli("show", "product", str(CASES), "--samples", "3")
    assert code == 2 and "unrecognized arguments: --samples" in err
    code, _, err = cli("show", "nosuch", str(CASES))
    assert code == 2 and err.startswith("gradcheck: error: no case named 'nosuch'")
