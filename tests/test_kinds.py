"""Check kinds in every front end and report: CLI, report.json, junit.xml, summary.md, the
plugin's items, baselines; and the second-order and forward-mode numbers themselves."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch

from gradcheck_suite import check, load_case
from gradcheck_suite._engine import RunOptions
from gradcheck_suite._kinds import check_kind
from gradcheck_suite._report import json_report

from .conftest import CASES

FUNCTION_CASE = """\
name = "xyy"
output = "f"
{extra}
[inputs]
x = [1.0, -2.0, 0.5]
y = [0.3, 1.5, -1.0]

[forward]
callable = "tests.planted:{function}"

[reference]
callable = "tests.planted:xyy_reference"
array = "torch"
"""


def _case_file(tmp_path: Path, function: str = "XYYDetached", extra: str = "") -> Path:
    path = tmp_path / "xyy.toml"
    path.write_text(FUNCTION_CASE.format(function=function, extra=extra))
    return path


def test_order_2_on_the_command_line_fails_a_detached_backward_in_every_report(tmp_path: Path, cli: Any) -> None:
    path = _case_file(tmp_path)
    reports = tmp_path / "reports"
    code, out, _ = cli("run", str(path), "--order", "2", "--report-dir", str(reports))
    assert code == 1
    assert "xyy [order2]" in out and "hessian 6x6" in out and "FAIL: manual is the odd one out" in out
    data = json.loads((reports / "report.json").read_text())
    jsonschema.validate(data, json_report.load_schema())
    assert data["version"] == json_report.SCHEMA_VERSION and data["options"]["order"] == 2
    by_kind = {c["kind"]: c for c in data["cases"]}
    assert by_kind["order1"]["verdict"] == "pass"
    assert by_kind["order2"]["verdict"] == "fail" and by_kind["order2"]["odd_one_out"] == "manual"
    assert by_kind["order2"]["check"] == "hessian 6x6"
    assert [i["name"] for i in by_kind["order2"]["inputs"]] == ["x", "y"]
    assert by_kind["order2"]["inputs"][0]["shape"] == [6, 3]  # a row per basis direction
    junit = ET.fromstring((reports / "junit.xml").read_bytes())
    names = {t.get("name"): t for t in junit.iter("testcase")}
    assert set(names) == {"xyy[cpu-float64]", "xyy[cpu-float64-order2]"}
    failure = names["xyy[cpu-float64-order2]"].find("failure")
    assert failure is not None and failure.get("message", "").startswith("manual is the odd one out at y[")
    assert "| xyy    | cpu-float64-order2 | FAIL" in (reports / "summary.md").read_text()


def test_the_case_file_asks_for_its_own_kinds(tmp_path: Path, cli: Any) -> None:
    path = _case_file(tmp_path, "XYY", 'order = 2\nchecks = ["batched", "noncontiguous"]')
    case = load_case(path)
    assert (case.order, case.checks) == (2, ("batched", "noncontiguous"))
    code, out, _ = cli("run", str(path), "--no-reports")
    assert code == 0, out
    assert "xyy [order2]" in out and "xyy [batched]" in out and "xyy [noncontiguous]" in out
    assert "4 case(s): 4 pass" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--order", "3"], "order must be 1 or 2"),
        (["--checks", "forward,bogus"], "unknown check 'bogus'"),
    ],
)
def test_bad_kind_options_are_usage_errors(tmp_path: Path, cli: Any, args: list[str], message: str) -> None:
    code, _, err = cli("run", str(_case_file(tmp_path)), *args)
    assert code == 2 and message in err


def test_a_bad_checks_key_is_a_located_error(tmp_path: Path) -> None:
    path = _case_file(tmp_path, extra='checks = ["forwards"]')
    with pytest.raises(Exception, match=r"xyy.toml:3: case 'xyy': \[checks\]: `checks`: unknown check 'forwards'"):
        load_case(path)


def test_kinds_that_do_not_apply_are_noted_not_run(cli: Any) -> None:
    code, out, _ = cli("run", str(CASES / "product.toml"), "--checks", "all", "--no-reports")
    assert code == 0, out
    assert "product [fwd-over-rev]" in out  # forward mode through the backward program
    assert "product [batched]" not in out and "product [forward]" not in out
    assert "batched (no backward for vmap to batch" in out  # a program: nothing to batch
    assert "forward (a hand-written backward has no forward mode to check)" in out


def test_baselines_compare_kinds_and_read_version_1(tmp_path: Path, cli: Any) -> None:
    path = _case_file(tmp_path, "XYY")
    base = tmp_path / "base.json"
    assert cli("baseline", "save", str(base), "--cases", str(path), "--order", "2")[0] == 0
    stored = json.loads(base.read_text())
    assert {json_report.case_key(c) for c in stored["cases"]} == {"xyy[cpu-float64]", "xyy[cpu-float64-order2]"}
    # a run without --order 2 does not miss the stored order2 entry
    code, out, _ = cli("run", str(path), "--baseline", str(base), "--no-reports")
    assert code == 0 and "1 case(s) compared, no regression" in out
    code, out, _ = cli("run", str(path), "--order", "2", "--baseline", str(base), "--no-reports")
    assert code == 0 and "2 case(s) compared, no regression" in out
    # a version-1 report (no kinds) is still a baseline: its entries are first order
    old = dict(stored, version=1, cases=[c for c in stored["cases"] if c["kind"] == "order1"])
    for c in old["cases"]:
        del c["kind"], c["check"], c["notes"]
    base.write_text(json.dumps(old))
    code, out, _ = cli("run", str(path), "--order", "2", "--baseline", str(base), "--no-reports")
    assert (
        code == 0
        and "1 case(s) compared, no regression" in out
        and "new (not in the baseline): xyy[cpu-float64-order2]" in out
    )


# -- the numbers -------------------------------------------------------------------------------


def test_the_second_order_numeric_estimate_bounds_its_true_error() -> None:
    """Richardson differences of autograd's gradient (float64, steps 2^-7 |x| down to 2^-10 |x|)
    against torch.func.hessian of the same function: every element within its estimate."""
    case = load_case(CASES / "compound_sigmoid.toml")
    result = check_kind(case, RunOptions(), "order2")
    assert result.verdict == "pass" and result.check_label == "hessian 2x2"
    numeric = result.sources["numeric"]

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sx, sy = torch.sigmoid(x), torch.sigmoid(y)
        return (x + sy) / (sx + (x + y) ** 2)

    x, y = torch.tensor(3.0, dtype=torch.float64), torch.tensor(-4.0, dtype=torch.float64)
    H = torch.func.hessian(f, argnums=(0, 1))(x, y)
    exact = {"x": np.array([float(H[0][0]), float(H[1][0])]), "y": np.array([float(H[0][1]), float(H[1][1])])}
    for name in ("x", "y"):
        error = np.abs(numeric.values[name] - exact[name])
        assert np.all(error <= numeric.error[name]), (name, error, numeric.error[name])
        # and is small: the true error is about 1.2e-11, the estimate (|d - r1b|, which bounds the
        # fourth-order term) about 2.9e-8, 1.1e-8 of the Hessian's scale
        assert np.all(numeric.error[name] < 1e-7 * np.abs(exact[name]).max())
        # the analytic sources: manual (double backward through the backward program) and autograd
        assert result.sources["manual"].values[name] == pytest.approx(exact[name], rel=1e-13)


def test_the_forward_mode_numeric_estimate_bounds_its_true_error() -> None:
    W = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = check(lambda W, x: torch.tanh(W @ x), {"W": W, "x": torch.ones(4, dtype=torch.float64)}, checks=["forward"])
    fwd = r.kind_result("forward")
    assert fwd.verdict == "pass" and fwd.check_label == "jvp x4"  # 24 input elements: random directions
    numeric, autograd = fwd.sources["numeric"], fwd.sources["autograd"]
    (label,) = numeric.values
    error = np.abs(numeric.values[label] - autograd.values[label])
    assert np.all(error <= numeric.error[label])


BACKWARD2 = '''name = "product2"
output = "z"
order = 2
[inputs]
x = 4.0
y = -3.0
[forward]
program = """
z = x * y
"""
[backward]
program = """
dx = y * dz
dy = x * dz
"""
[backward2]
program = """
hvx = vy * dz
hvy = {hvy}
"""
'''


def test_a_backward2_program_is_the_hand_written_second_order(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "product2.toml"
    path.write_text(BACKWARD2.format(hvy="vx * dz"))
    result = check_kind(load_case(path), RunOptions(), "order2")
    assert result.verdict == "pass" and result.sources["manual"].method == "the [backward2] program"
    # H = [[0, 1], [1, 0]] at the Hessian's basis directions, whose rows are e_x and e_y
    assert result.sources["manual"].values["x"].tolist() == [0.0, 1.0]
    assert result.sources["manual"].values["y"].tolist() == [1.0, 0.0]
    path.write_text(BACKWARD2.format(hvy="2 * vx * dz"))
    code, out, _ = cli("run", str(path), "--no-reports")
    assert code == 1 and "product2 [order2]" in out and "FAIL: manual is the odd one out" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BACKWARD2.format(hvy="vx * dz").replace("hvy = vx * dz\n", ""), "must assign `hvy`"),
        (BACKWARD2.format(hvy="vx * dz").replace("dy = x * dz\n", "dy = x * dz\nvx = 1.0\n"), "`vx` is taken"),
        (BACKWARD2.format(hvy="vq * dz"), "name `vq` is used before it is assigned"),
    ],
)
def test_backward2_errors_are_located(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "product2.toml"
    path.write_text(text)
    with pytest.raises(Exception, match=message) as info:
        load_case(path)
    assert str(info.value).startswith(str(path))


class _MisshapenBackward(torch.autograd.Function):
    """x * 2 whose backward returns a gradient of the wrong shape (2 rows for 4)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x * 2

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.zeros(2, g.shape[1], dtype=g.dtype)


def test_a_gradient_of_the_wrong_shape_fails_that_source_in_every_kind() -> None:
    """Before: dtypes and noncontiguous ended in 'internal error while checking: ValueError:
    operands could not be broadcast together' and no kind ran."""
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = check(_MisshapenBackward, {"x": x}, reference=lambda x: x * 2, checks="all")
    assert {k.kind: (k.verdict, k.odd_one_out) for k in r.kinds} == {k.kind: ("fail", "manual") for k in r.kinds} and {
        "dtypes",
        "noncontiguous",
    } <= {k.kind for k in r.kinds}
    for kind in ("dtypes", "noncontiguous"):
        assert "manual returned a gradient of shape (2, 3) for `x`, expected (4, 3)" in r.kind_result(kind).reason
