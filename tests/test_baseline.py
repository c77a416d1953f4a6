"""Baselines: saving one, drift and missing cases failing the run, noise never failing it,
and a baseline file that is missing or is not one."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gradcheck_suite import load_case
from gradcheck_suite._cli import main
from gradcheck_suite._report import baseline, json_report

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of two bundled cases, the working directory of the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "cases").mkdir()
    for name in ("product.toml", "matmul.toml"):
        shutil.copy(REPO / "cases" / name, tmp_path / "cases")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["run", "--report-dir", "out", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_drift_fails_with_case_input_and_growth_and_restoring_passes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    capsys.readouterr()
    status, out, _ = run(capsys, "--baseline", "base.json")
    assert status == 0 and "no regression" in out

    case = project / "cases" / "matmul.toml"
    original = case.read_text()
    assert "dW = dD @ X.T" in original
    case.write_text(original.replace("dW = dD @ X.T", "dW = 1.01 * (dD @ X.T)"))
    status, out, _ = run(capsys, "--baseline", "base.json")
    assert status == 1
    growth = re.search(
        r"REGRESSION matmul\[cpu-float64\] input W: manual-autograd difference grew (\S+)x"
        r" \((\S+) -> (\S+); allowed 10x\)",
        out,
    )
    assert growth, out
    assert float(growth.group(1)) > 1e6  # from rounding level to 1% of the gradient
    assert "REGRESSION matmul[cpu-float64]: passed in the baseline, now fails" in out
    assert "input X" not in out  # dX did not drift
    report = json.loads((project / "out" / "report.json").read_text())
    kinds = {(r["kind"], r["input"], r["pair"]) for r in report["baseline"]["regressions"]}
    assert ("growth", "W", "manual-autograd") in kinds and ("now_fails", None, None) in kinds
    assert not report["baseline"]["passed"]

    case.write_text(original)
    status, out, _ = run(capsys, "--baseline", "base.json")
    assert status == 0 and "REGRESSION" not in out and "no regression" in out


DRIFT_MODULE = """
SCALE = 1.0

def forward(x, y):
    return x * y

def backward(dout, x, y):
    return dout * y * SCALE, dout * x
"""

DRIFT_CASE = """
name = "drift"
output = "out"
[inputs]
x = -3.0
y = 4.0
[forward]
callable = "drift_layer:forward"
[backward]
callable = "drift_layer:backward"
"""


def test_a_drift_that_still_passes_is_caught_by_growth_alone(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A baseline can catch what the check alone lets through: a drift inside the tolerance.

    Checked two ways (a numpy forward, no reference), the manual-numeric pair's tolerance is
    4 times the numeric error estimate, while the baseline's growth floor is the estimate
    itself: a drift of 2.5 floors passes the check and grows 2.5x."""
    (project / "drift_layer.py").write_text(DRIFT_MODULE)
    (project / "pyproject.toml").write_text('[tool.gradcheck]\ncallables = ["drift_layer.*"]\n')
    (project / "cases" / "drift.toml").write_text(DRIFT_CASE)
    monkeypatch.syspath_prepend(str(project))
    assert main(["baseline", "save", "base.json"]) == 0
    saved = json.loads((project / "base.json").read_text())
    entry = next(c for c in saved["cases"] if c["case"] == "drift")
    x = next(i for i in entry["inputs"] if i["name"] == "x")
    floor = baseline.growth_floor("float64", json_report.to_float(entry["gradient_scale"]), x["numeric_error"])
    import drift_layer  # type: ignore[import-not-found]

    monkeypatch.setattr(drift_layer, "SCALE", 1 + 2.5 * floor / 4.0)  # dx = 4: off by 2.5 floors
    capsys.readouterr()
    status, out, _ = run(capsys, "--baseline", "base.json", "-k", "drift", "--max-growth", "2")
    assert status == 1
    assert "FAIL" not in out  # the check itself passes
    m = re.search(r"REGRESSION drift\[cpu-float64\] input x: manual-numeric difference grew (\S+)x", out)
    assert m, out
    assert 2 < float(m.group(1)) < 3
    # the default factor leaves it alone: it is still within a few times the rounding noise
    status, out, _ = run(capsys, "--baseline", "base.json", "-k", "drift")
    assert status == 0, out


def test_missing_and_new_cases(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    (project / "cases" / "matmul.toml").unlink()
    shutil.copy(REPO / "cases" / "sum_times.toml", project / "cases")
    capsys.readouterr()
    status, out, _ = run(capsys, "--baseline", "base.json")
    assert status == 1
    assert "REGRESSION matmul[cpu-float64]: passed in the baseline, missing from this run" in out
    assert "new (not in the baseline): sum_times[cpu-float64]" in out
    assert "removed (in the baseline, not run): matmul[cpu-float64]" in out


def test_a_case_file_that_stops_loading_is_named_as_the_reason(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    (project / "cases" / "matmul.toml").write_text("name = \n")
    capsys.readouterr()
    status, out, _ = run(capsys, "--baseline", "base.json")
    assert status == 2  # the broken file itself is an error
    assert "matmul[cpu-float64]: passed in the baseline, missing from this run (its case file failed to load)" in out


def test_a_partial_run_is_compared_only_where_it_ran(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "save", "base.json"]) == 0
    capsys.readouterr()
    for args in (["-k", "product"], ["cases/product.toml"]):
        status, out, _ = run(capsys, "--baseline", "base.json", *args)
        assert status == 0, (args, out)
        assert "missing" not in out and "removed" not in out
    # float32 is a different configuration: its cases are new and none is compared, which
    # would pass whatever the gradients are, so it is an error naming what each side holds
    status, out, err = run(capsys, "--baseline", "base.json", "--dtype", "float32")
    assert status == 2
    assert "0 case(s) compared" in out and "new (not in the baseline): matmul[cpu-float32]" in out
    assert "base.json matches none of this run's cases: it holds matmul[cpu-float64]" in err


def _report(
    max_abs: float, scale: float = 1.0, numeric_error: float | None = None, pair: str = "manual-autograd"
) -> dict[str, Any]:
    a, b = pair.split("-")
    return {
        "schema": json_report.SCHEMA_ID,
        "version": json_report.SCHEMA_VERSION,
        "cases": [
            {
                "case": "c",
                "file": "cases/c.toml",
                "device": "cpu",
                "dtype": "float64",
                "verdict": "pass",
                "reason": "",
                "gradient_scale": scale,
                "inputs": [
                    {
                        "name": "x",
                        "numeric_error": numeric_error,
                        "pairs": [{"pair": pair, "a": a, "b": b, "max_abs": json_report.number(max_abs)}],
                    }
                ],
            }
        ],
        "errors": [],
    }


@pytest.mark.parametrize(
    ("old", "new", "kwargs", "regressed"),
    [
        (0.0, 0.0, {}, False),
        (0.0, 1e-16, {}, False),  # rounding appearing where there was none is not growth
        (0.0, 1e-13, {"scale": 10.0}, False),  # below 64 eps S
        (1e-15, 1e-14, {}, False),  # both below the floor
        (0.0, 1e-3, {}, True),
        (1e-6, 2e-5, {}, True),  # 20x above the floor
        (1e-6, 9e-6, {}, False),  # 9x: within the default 10x
        (0.0, float("inf"), {}, True),
        # finite differences are only known to their error estimate
        (1e-10, 5e-9, {"numeric_error": 1e-8, "pair": "manual-numeric"}, False),
        (1e-10, 5e-7, {"numeric_error": 1e-8, "pair": "manual-numeric"}, True),
    ],
)
def test_growth_is_measured_above_a_noise_floor(
    old: float, new: float, kwargs: dict[str, Any], regressed: bool
) -> None:
    result = baseline.compare(_report(new, **kwargs), _report(old, **kwargs))
    assert result.compared == ["c[cpu-float64]"]
    assert (not result.passed) == regressed, result.lines()
    if regressed:
        (r,) = result.regressions
        assert (r.kind, r.case, r.input, r.pair) == ("growth", "c", "x", kwargs.get("pair", "manual-autograd"))
        assert r.growth is not None and r.growth > baseline.DEFAULT_MAX_GROWTH


def test_a_fail_that_was_already_failing_is_not_a_regression() -> None:
    old, new = _report(0.1), _report(0.1)
    for r in (old, new):
        r["cases"][0]["verdict"] = "fail"
    assert baseline.compare(new, old).passed


def test_the_projects_baseline_is_valid_and_the_bundled_cases_match_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = baseline.load(REPO / "reports" / "baseline.json")
    jsonschema.validate(stored, json_report.load_schema())
    bundled = {load_case(p).name for p in (REPO / "cases").rglob("*.toml")}
    assert {c["case"] for c in stored["cases"]} == bundled
    assert all(c["verdict"] == "pass" for c in stored["cases"])
    monkeypatch.chdir(REPO)  # the stored file paths are relative to the repository root
    status = main(["run", "--baseline", "reports/baseline.json", "--report-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert status == 0, out
    assert f"{len(bundled)} case(s) compared, no regression" in out


def test_baseline_save_refuses_when_a_case_file_fails(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "cases" / "broken.toml").write_text("name = \n")
    assert main(["baseline", "save", "base.json"]) == 2
    _, err = capsys.readouterr()
    assert "baseline not saved: 1 case file(s) failed" in err
    assert not (project / "base.json").exists()


def test_baseline_save_default_file_and_stored_content(project: Path) -> None:
    assert main(["baseline", "save"]) == 0
    stored = json.loads((project / "reports" / "baseline.json").read_text())
    jsonschema.validate(stored, json_report.load_schema())
    assert stored["baseline"] is None
    assert [c["case"] for c in stored["cases"]] == ["matmul", "product"]
    assert not (project / "reports" / "report.json").exists()  # saving writes only the baseline


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("{ not json", "is not a baseline: not JSON"),
        ({"cases": []}, 'is not a baseline: not a gradcheck-suite report (no "schema"'),
        ("<?xml version='1.0'?><testsuites/>", "is not a baseline: not JSON"),
        ({"schema": "gradcheck-suite/report", "version": 99, "cases": []}, "reads version 4"),
        ({"schema": "gradcheck-suite/report", "version": 1, "cases": [{"case": "c"}]}, "cases[0] lacks"),
    ],
)
def test_a_missing_or_bad_baseline_exits_2_with_one_line(
    content: Any, expected: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project / "base.json"
    if content is not None:
        _write(path, content)
    status, out, err = run(capsys, "--baseline", str(path))
    assert status == 2
    assert out == ""  # refused before running any case
    assert err.count("\n") == 1 and err.startswith("gradcheck: error: ") and expected in err, err
    assert str(path) in err
    assert not (project / "out").exists() or not any((project / "out").iterdir())


def test_max_growth_must_be_a_factor_above_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("1", "0.5", "nan", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["run", "--max-growth", bad])
        assert exc.value.code == 2
    capsys.readouterr()


def test_comparison_round_trips_through_the_report(project: Path) -> None:
    """The comparison stored in report.json is what junit.xml's baseline suite shows."""
    assert main(["baseline", "save", "base.json"]) == 0
    stored = json.loads((project / "base.json").read_text())
    drifted = copy.deepcopy(stored)
    drifted["cases"][0]["inputs"][0]["pairs"][0]["max_abs"] = 1.0
    drifted["cases"][0]["verdict"] = "fail"
    result = baseline.compare(drifted, stored, file="base.json")
    d = result.to_dict()
    assert d["passed"] is False and {r["kind"] for r in d["regressions"]} == {"now_fails", "growth"}
    assert d["compared"] == ["matmul[cpu-float64]", "product[cpu-float64]"]


@pytest.mark.parametrize("mode", ["sample", "projection"])
def test_sample_and_projection_reports_keep_the_numeric_error_for_the_noise_floor(
    project: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    status, _, _ = run(capsys, "--mode", mode, "--elements", "3", "--directions", "2")
    assert status == 0
    data = json.loads((project / "out" / "report.json").read_text())
    (mm,) = [c for c in data["cases"] if c["case"] == "matmul"]
    assert mm["mode"] == mode
    for i in mm["inputs"]:
        assert isinstance(i["numeric_error"], float) and i["numeric_error"] > 0


def test_a_change_of_mode_compares_only_the_elementwise_pairs(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", "save", "base.json"]) == 0  # full mode
    case = project / "cases" / "matmul.toml"
    case.write_text(case.read_text().replace("dW = dD @ X.T", "dW = 1.01 * (dD @ X.T)"))
    capsys.readouterr()

    def grew(out: str) -> set[str]:
        return set(re.findall(r"REGRESSION matmul\S* input W: (\S+) difference grew", out))

    # projection: numeric pairs hold projections now, elements then; manual-autograd still counts
    status, out, _ = run(capsys, "--baseline", "base.json", "--mode", "projection")
    assert status == 1 and grew(out) == {"manual-autograd"}, out
    status, out, _ = run(capsys, "--baseline", "base.json")
    assert status == 1 and grew(out) == {"manual-autograd", "manual-numeric"}, out
