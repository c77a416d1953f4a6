"""What CI reads: baselines matched by case name and stable on disk, one junit classname per case
across the CLI, pytest and the plugin, plugin reports named by node id and counting errors as
errors, and summary.md cells that survive a `|`."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck_suite._cli import main
from gradcheck_suite._report import markdown

from .conftest import CASES


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "cases").mkdir()
    for name in ("product.toml", "matmul.toml"):
        shutil.copy(CASES / name, tmp_path / "cases")
    return tmp_path


# --- baselines ---------------------------------------------------------------------------------


def test_a_baseline_matches_cases_by_name_wherever_they_moved(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    shutil.copytree(project / "cases", project / "elsewhere")
    capsys.readouterr()
    assert main(["run", "elsewhere", "--baseline", "base.json", "--no-reports"]) == 0
    out = capsys.readouterr().out
    assert "baseline base.json: 2 case(s) compared, no regression" in out
    # and a drift in the moved copy is caught against it
    moved = project / "elsewhere" / "matmul.toml"
    moved.write_text(moved.read_text().replace("dW = dD @ X.T", "dW = 1.01 * (dD @ X.T)"))
    assert main(["run", "elsewhere", "--baseline", "base.json", "--no-reports"]) == 1
    assert "REGRESSION matmul[cpu-float64]" in capsys.readouterr().out


def test_a_baseline_that_matches_nothing_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    (project / "renamed").mkdir()
    for p in (project / "cases").glob("*.toml"):
        text = p.read_text().replace(f'name = "{p.stem}"', f'name = "{p.stem}_v2"')
        (project / "renamed" / p.name).write_text(text)
    capsys.readouterr()
    assert main(["run", "renamed", "--baseline", "base.json", "--no-reports"]) == 2
    err = capsys.readouterr().err
    assert "base.json matches none of this run's cases: it holds matmul[cpu-float64], product[cpu-float64]" in err
    assert "this run checked matmul_v2[cpu-float64], product_v2[cpu-float64]" in err


def test_saving_an_unchanged_baseline_leaves_the_file_byte_for_byte(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    first = (project / "base.json").read_bytes()
    capsys.readouterr()
    assert main(["baseline", "save", "base.json"]) == 0  # other timings, same gradients
    assert (project / "base.json").read_bytes() == first
    assert "baseline base.json unchanged: 2 case(s)" in capsys.readouterr().out
    # a gradient that changed is saved
    p = project / "cases" / "matmul.toml"
    p.write_text(p.read_text().replace("dW = dD @ X.T", "dW = 1.01 * (dD @ X.T)"))
    assert main(["baseline", "save", "base.json"]) == 0
    assert (project / "base.json").read_bytes() != first
    assert "saved baseline base.json: 2 case(s); 1 failing case(s) stored as failing" in capsys.readouterr().out


# --- junit.xml: one classname, node ids --------------------------------------------------------

INI = '[tool.pytest.ini_options]\ngradcheck_paths = ["cases"]\n'


def _classnames(path: Path) -> dict[str, str]:
    return {t.get("name", ""): t.get("classname", "") for t in ET.parse(path).getroot().iter("testcase")}


def test_one_classname_per_case_in_the_cli_pytest_and_the_plugin(pytester: pytest.Pytester) -> None:
    shutil.copytree(CASES, pytester.path / "cases", ignore=shutil.ignore_patterns("layers"))
    pytester.makefile(".toml", pyproject=INI)
    pytester.runpytest("--junitxml=pytest.xml", "--gradcheck-report-dir", "plugin").assert_outcomes(passed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(pytester.path)
        assert main(["run", "cases", "--report-dir", "cli"]) == 0
    by_pytest = _classnames(pytester.path / "pytest.xml")
    by_plugin = _classnames(pytester.path / "plugin" / "junit.xml")
    by_cli = _classnames(pytester.path / "cli" / "junit.xml")
    assert by_pytest["matmul[cpu-float64]"] == "cases.matmul.toml"
    assert by_cli == by_plugin == by_pytest


CUBE_TESTS = """
import pytest
import torch

def cube(x):
    return x ** 3

def cube_backward(g, x):
    return 3 * x ** 2 * g

def test_at_one(gradcheck):
    gradcheck(cube, {"x": torch.tensor([1.0])}, backward=cube_backward)

def test_at_two(gradcheck):
    gradcheck(cube, {"x": torch.tensor([2.0])}, backward=cube_backward)

@pytest.mark.parametrize("x", [-1.0, 3.0])
def test_at(gradcheck, x):
    gradcheck(cube, {"x": torch.tensor([x])}, backward=cube_backward)

@pytest.mark.parametrize("label", ["a|b"])
def test_named(gradcheck, label):
    gradcheck(cube, {"x": torch.tensor([0.5])}, backward=cube_backward)
"""


def test_the_plugin_names_fixture_checks_by_their_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cube=CUBE_TESTS)
    pytester.runpytest("--junitxml=pytest.xml", "--gradcheck-report-dir", "out").assert_outcomes(passed=5)
    data = json.loads((pytester.path / "out" / "report.json").read_text())
    names = sorted(c["case"] for c in data["cases"])
    assert names == [
        "test_cube.py::test_at[-1.0]",
        "test_cube.py::test_at[3.0]",
        "test_cube.py::test_at_one",
        "test_cube.py::test_at_two",
        "test_cube.py::test_named[a|b]",
    ]
    assert {c["file"] for c in data["cases"]} == {"test_cube.py"}
    # junit.xml names them as pytest's own --junitxml does
    assert _classnames(pytester.path / "out" / "junit.xml") == _classnames(pytester.path / "pytest.xml")
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert "| test_cube.py::test_named[a\\|b] " in summary


ERRORING_TESTS = """
import pytest
import torch

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown went wrong")

def test_check_then_teardown_error(gradcheck, broken_teardown):
    gradcheck(lambda x: x * x, {"x": torch.tensor([1.5])}, backward=lambda g, x: 2 * x * g)

def test_a_check_that_cannot_run(gradcheck):
    gradcheck(lambda x: x * x, {"x": torch.tensor([1.5, 2.0])}, upstream=torch.ones(3))

def test_fine(gradcheck):
    gradcheck(lambda x: x * x, {"x": torch.tensor([1.5])}, backward=lambda g, x: 2 * x * g)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_the_plugin_summary_counts_errored_tests_as_errors(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(test_err=ERRORING_TESTS)
    result = pytester.runpytest_subprocess(*workers, "--gradcheck-report-dir", "out")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["gradcheck: 3 case(s): 1 pass, 0 fail, 0 inconclusive, 2 error in *"])
    data = json.loads((pytester.path / "out" / "report.json").read_text())
    assert data["summary"] == {"pass": 1, "fail": 0, "inconclusive": 0, "error": 2}
    errors = {e["case"]: e["text"] for e in data["errors"]}
    assert "teardown went wrong" in errors["test_err.py::test_check_then_teardown_error"]
    assert "test_err.py::test_a_check_that_cannot_run" in errors


def test_summary_md_escapes_pipes_in_every_cell() -> None:
    data = {
        "summary": {"pass": 1, "fail": 0, "inconclusive": 0, "error": 0},
        "options": {"device": "cpu", "dtype": "float64", "numeric": "auto"},
        "environment": {"device_name": "cpu", "torch": "x"},
        "timings": {"total_seconds": 0.1},
        "cases": [
            {
                "case": "a|b",
                "device": "cpu",
                "dtype": "float64",
                "verdict": "pass",
                "odd_one_out": None,
                "reason": "",
                "inputs": [],
            }
        ],
        "errors": [],
        "baseline": None,
    }
    rows = [line for line in markdown.render(data).splitlines() if line.startswith("| a")]
    assert rows and rows[0].startswith("| a\\|b ")
    assert rows[0].count(" | ") == 5  # six cells: the pipe did not split the name's
