"""A case file's `dtype`, `k`, `repeat` and `nondet_tol`, and the options that override them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._engine import check_settings

from .conftest import CASES

# without the bundled file's own `k`, which these tests set themselves
LAYERNORM = re.sub(r"(?m)^k = .*\n", "", (CASES / "layers" / "layernorm.toml").read_text())


def _case(tmp_path: Path, header: str, name: str = "layernorm") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(header + "\n" + LAYERNORM)
    return path


def test_case_keys_are_read_and_the_run_overrides_them(tmp_path: Path) -> None:
    case = load_case(_case(tmp_path, 'dtype = "bfloat16"\nk = 3\nrepeat = 2\nnondet_tol = 1e-6'))
    s = check_settings(case, RunOptions(case_dtype=True))
    assert (s.dtype, s.k, s.repeat, s.nondet_tol) == ("bfloat16", 3.0, 2, 1e-6)
    # options given to the run win: --dtype, --k-factor, --repeat, --nondet-tol
    s = check_settings(case, RunOptions(dtype="float32", k=4.0, repeat=1, nondet_tol=0.0))
    assert (s.dtype, s.k, s.repeat, s.nondet_tol) == ("float32", 4.0, 1, 0.0)
    # a library caller's explicit dtype holds unless it asks for the case's
    assert check_settings(case, RunOptions()).dtype == "float64"
    # no keys: the defaults
    s = check_settings(load_case(CASES / "product.toml"), RunOptions(case_dtype=True))
    assert (s.dtype, s.k, s.repeat, s.nondet_tol) == ("float64", 2.0, 1, 0.0)
    # the bundled layer norm declares k = 4 (its comment says why)
    assert check_settings(load_case(CASES / "layers" / "layernorm.toml"), RunOptions()).k == 4.0


def test_the_cli_runs_a_case_in_its_own_dtype_unless_told(tmp_path: Path, cli) -> None:
    path = _case(tmp_path, 'dtype = "float16"\nk = 3')
    code, out, _ = cli("run", str(path), "--report-dir", str(tmp_path / "r"))
    assert code == 0, out
    assert "float16" in out.splitlines()[-1]
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    (entry,) = data["cases"]
    assert entry["dtype"] == "float16" and entry["settings"]["k"] == 3.0
    assert all(i["low_precision"]["k"] == 3.0 for i in entry["inputs"])
    code, out, _ = cli("run", str(path), "--dtype", "float32", "--no-reports")
    assert code == 0 and "(cpu, float32," in out.splitlines()[-1]
    code, out, _ = cli("run", str(path), "--k-factor", "2.5", "--report-dir", str(tmp_path / "r"))
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["cases"][0]["settings"]["k"] == 2.5 and data["options"]["k"] == 2.5


@pytest.mark.parametrize(
    ("header", "line", "words"),
    [
        ('dtype = "float8"', 1, "`dtype` must be one of float64, float32, bfloat16, float16"),
        ("k = 0.5", 1, "k must be a number >= 1"),
        ('k = "two"', 1, "k must be a number >= 1"),
        ("repeat = 0", 1, "`repeat` must be a whole number >= 1"),
        ("nondet_tol = -1e-3", 1, "nondet_tol must be a number >= 0"),
    ],
)
def test_bad_keys_are_located_errors(tmp_path: Path, cli, header: str, line: int, words: str) -> None:
    _case(tmp_path, header, name="bad")
    good = tmp_path / "good.toml"
    good.write_text((CASES / "product.toml").read_text())
    code, out, err = cli("run", str(tmp_path), "--no-reports")
    assert code == 2
    assert f"bad.toml:{line}:" in err and words in err
    assert "product" in out  # the other case still ran


def test_bad_options_are_usage_errors(cli) -> None:
    code, _, err = cli("run", "--k-factor", "0.9")
    assert code == 2 and "k must be a number >= 1" in err
    code, _, err = cli("run", "--nondet-tol", "-1")
    assert code == 2 and "nondet_tol must be a number >= 0" in err
    code, _, err = cli("run", "--repeat", "0")
    assert code == 2 and "must be at least 1" in err


def test_plugin_items_take_the_case_dtype(pytester: pytest.Pytester) -> None:
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "ln.toml").write_text('dtype = "bfloat16"\n' + LAYERNORM)
    result = pytester.runpytest("--gradcheck", "cases", "-v")
    result.stdout.fnmatch_lines(["*layernorm?cpu-bfloat16? PASSED*"])
    result = pytester.runpytest("--gradcheck", "cases", "--gradcheck-dtype", "float32,float16", "-v")
    result.stdout.fnmatch_lines(["*layernorm?cpu-float32? PASSED*", "*layernorm?cpu-float16? PASSED*"])


def test_a_case_in_bfloat16_is_judged_by_the_low_precision_rule(tmp_path: Path) -> None:
    result = check_case(load_case(_case(tmp_path, 'dtype = "bfloat16"')), RunOptions(case_dtype=True))
    assert result.dtype == "bfloat16" and result.verdict == "pass"
    assert all(i.low_precision is not None for i in result.inputs)  # type: ignore[attr-defined]


def test_baseline_noise_floor_knows_bfloat16() -> None:
    from gradcheck_suite._report.baseline import growth_floor

    assert growth_floor("bfloat16", 1.0, None) == 64 * 2.0**-7  # not float64's eps
    assert growth_floor("float16", 1.0, None) == 64 * 2.0**-10
    assert growth_floor("float64", 1.0, None) == 64 * 2.0**-52


def test_a_bad_dtype_in_run_options_is_a_usage_error() -> None:
    from gradcheck_suite import GradcheckError  # check_case locates every error (issue 13)

    with pytest.raises(GradcheckError, match="dtype must be one of"):
        check_case(load_case(CASES / "product.toml"), RunOptions(dtype="float8"))
