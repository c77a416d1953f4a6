"""Issue 16: --time-budget measures one evaluation and chooses full, sample or projection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._sources.numeric import budget as budget_module

from .conftest import CASES
from .speedpkg import speed_case

LAYERS = CASES / "layers"


@pytest.mark.parametrize(
    ("cost", "mode"),
    [(1e-5, "full"), (8e-3, "sample"), (0.05, "projection"), (10.0, "projection")],
)
def test_the_time_budget_chooses_full_sample_or_projection_from_the_measured_cost(
    monkeypatch: pytest.MonkeyPatch, cost: float, mode: str
) -> None:
    """conv_naive (177 elements: x 120, w 54, b 3; 727 evaluations in full) in a 10 s budget,
    each evaluation taking ``cost`` seconds (the measurement replaced, so the arithmetic is
    the test's own: 5 s for the plan, less the probe and the time spent)."""
    monkeypatch.setattr(budget_module, "seconds_per_evaluation", lambda *a: cost)
    result = check_case(load_case(LAYERS / "conv_naive.toml"), RunOptions(time_budget=10))
    assert result.verdict == "pass", result.reason
    assert result.mode == mode and result.budget is not None and result.budget.mode == mode
    allowance = 5 - cost * budget_module.PROBE_ROWS
    planned = result.budget.planned
    if mode == "full":
        assert planned * cost <= allowance
    elif mode == "sample":
        assert result.budget.elements is not None and result.budget.elements >= 60  # half of x
        assert planned * cost <= allowance
    else:
        assert result.budget.directions is not None and 1 <= result.budget.directions <= 64
        assert result.budget.fits == (cost < 1.0)
    assert result.notes[0].startswith("--time-budget 10 s chose")


def test_the_time_budget_keeps_an_explicit_mode_and_says_whether_it_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_module, "seconds_per_evaluation", lambda *a: 1.0)
    result = check_case(load_case(LAYERS / "conv_naive.toml"), RunOptions(time_budget=0.1, mode="full"))
    assert result.mode == "full" and result.budget is not None
    assert not result.budget.chosen and not result.budget.fits
    assert "kept --mode full" in result.notes[0] and "does not fit" in result.notes[0]


def test_a_wrong_gradient_fails_in_the_projection_a_small_budget_chose(
    speedpkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = speed_case(speedpkg, "scaled", "single", "layer_backward_scaled")
    monkeypatch.setenv("SPEEDPKG_SCALE", "1e-4")
    sys.modules.pop("speedpkg", None)
    monkeypatch.setattr(budget_module, "seconds_per_evaluation", lambda *a: 1e-3)
    result = check_case(load_case(path), RunOptions(time_budget=0.1, jobs=1))
    assert result.mode == "projection"
    assert result.verdict == "fail"


def test_the_budget_is_in_report_json(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_suite._report.schema import validate

    code, out, _ = cli("run", str(LAYERS / "conv_naive.toml"), "--time-budget", "600", "--report-dir", str(tmp_path))
    assert code == 0 and "--time-budget 600 s chose full" in out
    data = json.loads((tmp_path / "report.json").read_text())
    validate(data)
    entry = data["cases"][0]["budget"]
    assert entry["mode"] == "full" and entry["chosen"] and entry["fits"] and entry["evaluation_seconds"] > 0


def test_the_measured_cost_is_that_of_the_evaluator_the_check_uses(speedpkg: Path) -> None:
    from gradcheck_suite._engine import _numeric_settings

    case = load_case(speed_case(speedpkg, "slow", "slow", "layer_backward")).resolved()
    cost = budget_module.seconds_per_evaluation(case, case.inputs, _numeric_settings(case, RunOptions()))
    assert cost >= 0.002  # the callable sleeps 2 ms per call and takes no batch


def test_time_budget_is_an_option_of_the_cli_and_the_plugin(cli, pytester: pytest.Pytester) -> None:
    code, _, err = cli("run", str(CASES / "product.toml"), "--time-budget", "-1", "--no-reports")
    assert code == 2 and "--time-budget" in err
    code, out, _ = cli("run", str(CASES / "product.toml"), "--time-budget", "30", "--no-reports")
    assert code == 0 and "--time-budget 30 s chose full" in out
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "product.toml").write_text((CASES / "product.toml").read_text())
    done = pytester.runpytest("--gradcheck", "cases", "--gradcheck-time-budget", "30", "-p", "no:cacheprovider")
    done.assert_outcomes(passed=1)
