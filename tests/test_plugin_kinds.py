"""The plugin with check kinds, autograd.Functions and modules; the README's fixture examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .test_kinds import FUNCTION_CASE
from .test_plugin import outcomes

README = Path(__file__).resolve().parent.parent / "README.md"
INI = """
[tool.pytest.ini_options]
gradcheck_paths = ["checks"]

[tool.gradcheck]
callables = ["tests.planted.*"]
"""


@pytest.fixture
def functions(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "checks").mkdir()
    (pytester.path / "checks" / "xyy.toml").write_text(FUNCTION_CASE.format(function="XYYDetached", extra="order = 2"))
    pytester.makefile(".toml", pyproject=INI)
    return pytester


def test_each_kind_is_an_item_named_for_k(functions: pytest.Pytester) -> None:
    result = functions.runpytest("-rA", "--gradcheck-checks", "batched")
    found = outcomes(result)
    assert found == {
        "checks/xyy.toml::xyy[cpu-float64]": "PASSED",
        "checks/xyy.toml::xyy[cpu-float64-order2]": "FAILED",
        "checks/xyy.toml::xyy[cpu-float64-batched]": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*gradcheck xyy (cpu, float64, order2): FAIL: manual is the odd one out*",
            "xyy [[]order2[]]*x*hessian 6x6*pass",
            "*y*hessian 6x6*FAIL: manual is the odd one out",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    functions.runpytest("-k", "order2").assert_outcomes(failed=1)
    functions.runpytest("-k", "not order2").assert_outcomes(passed=1)


def test_kind_items_report_across_xdist_workers(functions: pytest.Pytester) -> None:
    result = functions.runpytest("-n", "2", "--gradcheck-checks", "batched", "--gradcheck-report-dir", "out")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["gradcheck: 3 case(s): 2 pass, 1 fail, 0 inconclusive, 0 error*"])
    report = (functions.path / "out" / "report.json").read_text()
    assert '"kind": "order2"' in report and '"kind": "batched"' in report


def test_the_order_option_adds_second_order_items(pytester: pytest.Pytester) -> None:
    (pytester.path / "checks").mkdir()
    (pytester.path / "checks" / "xyy.toml").write_text(FUNCTION_CASE.format(function="XYY", extra=""))
    pytester.makefile(".toml", pyproject=INI)
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.runpytest("--gradcheck-order", "2", "--gradcheck-dtype", "float64,float32").assert_outcomes(passed=4)


FIXTURE_TEST = """
import torch
from torch import nn
from tests.planted import XYYDetached, mlp, mlp_with_bug, reference_mlp

def xyy(x, y):
    return x * y * y

def test_function_order2(gradcheck):
    gradcheck(XYYDetached, {"x": [1.0, 2.0], "y": [0.5, -1.0]}, reference=xyy, order=2)

def test_function_first_order_only(gradcheck):
    gradcheck(XYYDetached, {"x": [1.0, 2.0], "y": [0.5, -1.0]}, reference=xyy)

def test_module_with_bug(gradcheck):
    gradcheck(mlp_with_bug(), torch.randn(4, 3, dtype=torch.float64), reference=reference_mlp())

def test_module(gradcheck):
    result = gradcheck(mlp(), torch.randn(4, 3, dtype=torch.float64), reference=reference_mlp(), checks="all")
    assert {k.kind for k in result.kinds} >= {"batched", "noncontiguous", "undefined"}
"""


def test_the_fixture_takes_functions_and_modules(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=FIXTURE_TEST)
    result = pytester.runpytest("-rA")
    found = outcomes(result)
    assert found == {
        "test_user.py::test_function_order2": "FAILED",
        "test_user.py::test_function_first_order_only": "PASSED",
        "test_user.py::test_module_with_bug": "FAILED",
        "test_user.py::test_module": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*gradcheck XYYDetached (cpu, float64, order2): FAIL: manual is the odd one out*",
            "*gradcheck Sequential (cpu, float64): FAIL: manual is the odd one out*",
            "*0.weight: manual disagrees with the other two*",
        ]
    )
    # the fixture's defaults come from the options, as --gradcheck-dtype's do
    pytester.runpytest("--gradcheck-order", "2", "-k", "first_order_only").assert_outcomes(failed=1)


def readme_fixture_examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)\n```", README.read_text(), re.S)
    return [b for b in blocks if "def test_" in b and "gradcheck" in b]


def test_the_readmes_fixture_examples_run_and_pass(pytester: pytest.Pytester) -> None:
    examples = readme_fixture_examples()
    assert any("torch.autograd.Function" in b and "forward(ctx" in b for b in examples), "a classic Function"
    assert any("nn.Sequential" in b or "nn.Module" in b for b in examples), "a module"
    pytester.makepyfile(**{f"test_readme_{k}": b for k, b in enumerate(examples)})
    result = pytester.runpytest("-rA")
    count = sum(len(re.findall(r"^def test_", b, re.M)) for b in examples)
    result.assert_outcomes(passed=count)
