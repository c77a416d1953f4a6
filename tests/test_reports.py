"""The report folder: report.json against its schema, junit.xml as CI reads it, summary.md,
atomic writing (a killed run keeps the old reports) and an unwritable folder."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from gradcheck_suite import load_case
from gradcheck_suite._cli import main
from gradcheck_suite._report import files, json_report

REPO = Path(__file__).resolve().parents[1]
DRIFTED = "dW = 1.01 * (dD @ X.T)"

KINK = '''name = "kink"
description = "abs at its kink: no derivative, so the check cannot decide"
output = "y"

[inputs]
x = 0.0

[forward]
program = """
y = abs(x)
"""

[backward]
program = """
dx = 1 * dy
"""
'''


def drift(case_file: Path) -> None:
    """Scale matmul's hand-written dW by 1.01, the kind of slip a refactor makes."""
    text = case_file.read_text()
    assert "dW = dD @ X.T" in text
    case_file.write_text(text.replace("dW = dD @ X.T", DRIFTED))


@pytest.fixture
def mixed_cases(tmp_path: Path) -> Path:
    """One case of each outcome: pass, fail (manual odd one out), inconclusive, file error."""
    d = tmp_path / "cases"
    d.mkdir()
    shutil.copy(REPO / "cases" / "product.toml", d)
    shutil.copy(REPO / "cases" / "matmul.toml", d)
    drift(d / "matmul.toml")
    (d / "kink.toml").write_text(KINK)
    (d / "broken.toml").write_text('name = "broken"\noutput = \n')
    return d


@pytest.fixture
def mixed_run(mixed_cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = tmp_path / "out"
    assert main(["run", "cases", "--report-dir", str(out)]) == 2  # a case file error outranks the failure
    return out


def test_junit_has_the_attributes_ci_reads(mixed_run: Path, mixed_cases: Path) -> None:
    root = ET.parse(mixed_run / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
    }
    assert float(suite.get("time", "-1")) >= 0
    cases = {t.get("name"): t for t in suite.findall("testcase")}
    assert set(cases) == {
        "product[cpu-float64]",
        "matmul[cpu-float64]",
        "kink[cpu-float64]",
        "broken[cpu-float64]",
    }
    assert cases["matmul[cpu-float64]"].get("classname") == "cases.matmul.toml"  # as pytest names it
    assert list(cases["product[cpu-float64]"]) == []  # a pass has no child element

    skipped = cases["kink[cpu-float64]"].find("skipped")
    assert skipped is not None and "kink" in skipped.get("message", "")
    error = cases["broken[cpu-float64]"].find("error")
    assert error is not None and "broken.toml" in error.get("message", "")

    failure = cases["matmul[cpu-float64]"].find("failure")
    assert failure is not None
    message = failure.get("message", "")
    m = re.fullmatch(
        r"manual is the odd one out at W\[(\d+), (\d+)\]: manual=(\S+) autograd=(\S+) numeric=(\S+)"
        r" \(manual-autograd (\S+)x its tolerance\)",
        message,
    )
    assert m, message
    i, j = int(m.group(1)), int(m.group(2))
    manual, autograd, numeric = (float(m.group(k)) for k in (3, 4, 5))
    assert float(m.group(6)) > 1
    # The three values are the gradients at the element the message names: dW = dD X^T.
    case = load_case(mixed_cases / "matmul.toml")
    assert case.upstream is not None
    dW = case.upstream @ case.inputs["X"].T
    assert autograd == pytest.approx(dW[i, j], rel=1e-12)
    assert manual == pytest.approx(1.01 * dW[i, j], rel=1e-12)
    assert numeric == pytest.approx(dW[i, j], rel=1e-8)
    # ... and the element report.json calls the worst.
    data = json.loads((mixed_run / "report.json").read_text())
    (mm,) = [c for c in data["cases"] if c["case"] == "matmul"]
    w = next(x for x in mm["inputs"] if x["name"] == "W")["worst"]
    assert w["index"] == [i, j]
    assert w["values"] == {"manual": manual, "autograd": autograd, "numeric": numeric}


def test_report_json_validates_against_the_shipped_schema(mixed_run: Path) -> None:
    schema = json_report.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads((mixed_run / "report.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)

    # The schema is not a rubber stamp: a wrong verdict or a missing environment field fails.
    bad = json.loads(json.dumps(data))
    bad["cases"][0]["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = json.loads(json.dumps(data))
    del bad["environment"]["torch"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_report_json_content(mixed_run: Path, mixed_cases: Path) -> None:
    data = json.loads((mixed_run / "report.json").read_text())
    assert (data["schema"], data["version"]) == ("gradcheck-suite/report", 4)
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["device"] == "cpu" and env["device_name"]
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
    assert data["summary"] == {"pass": 1, "fail": 1, "inconclusive": 1, "error": 1}
    assert data["timings"]["total_seconds"] >= data["timings"]["cases_seconds"] > 0

    by = {c["case"]: c for c in data["cases"]}
    assert {k: (c["verdict"], c["odd_one_out"]) for k, c in by.items()} == {
        "product": ("pass", None),
        "matmul": ("fail", "manual"),
        "kink": ("inconclusive", None),
    }
    mm = by["matmul"]
    assert (mm["file"], mm["device"], mm["dtype"]) == ("cases/matmul.toml", "cpu", "float64")
    pairs = {p["pair"]: p for p in next(i for i in mm["inputs"] if i["name"] == "W")["pairs"]}
    assert set(pairs) == {"manual-autograd", "manual-numeric", "autograd-numeric"}
    case = load_case(mixed_cases / "matmul.toml")
    assert case.upstream is not None
    dW = case.upstream @ case.inputs["X"].T
    # manual is 1.01 dW, so its largest difference from autograd is 1% of the largest |dW|.
    assert pairs["manual-autograd"]["max_abs"] == pytest.approx(0.01 * np.abs(dW).max(), rel=1e-9)
    assert pairs["manual-autograd"]["max_rel"] == pytest.approx(0.01 / 1.01, rel=1e-9)
    assert pairs["autograd-numeric"]["ratio"] < 1 < pairs["manual-autograd"]["ratio"]
    # the report says which rule decided each pair
    assert "manual rounding bound" in pairs["manual-autograd"]["rule"]
    assert "numeric error estimate" in pairs["autograd-numeric"]["rule"]
    assert mm["mode"] == "full" and data["options"]["mode"] == "auto"
    (err,) = data["errors"]
    assert err["file"].endswith("broken.toml") and err["line"] == 2


def test_non_finite_numbers_are_strings_so_the_json_stays_valid() -> None:
    assert [json_report.number(x) for x in (1.5, math.inf, -math.inf, math.nan)] == [1.5, "inf", "-inf", "nan"]
    assert math.isinf(json_report.to_float("inf")) and math.isnan(json_report.to_float("nan"))
    with pytest.raises(ValueError):
        json_report.dumps({"x": math.inf})  # a float that slipped past number() is caught at writing


def test_summary_md_and_github_step_summary(mixed_cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    out = tmp_path / "out"
    main(["run", "cases", "--report-dir", str(out)])
    summary = (out / "summary.md").read_text()
    assert step.read_text() == "earlier step\n" + summary  # appended, never overwritten
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in summary.splitlines() if line.startswith("| ")]
    assert rows[0][:4] == ["case", "device-dtype", "verdict", "odd one out"]
    by = {r[0]: r for r in rows[1:]}
    assert by["matmul"][1:4] == ["cpu-float64", "FAIL", "manual"]
    assert "manual is the odd one out at W[" in by["matmul"][5]
    assert by["product"][2] == "pass" and by["kink"][2] == "INCONCLUSIVE" and by["cases/broken.toml"][2] == "ERROR"
    # tabulate's github format: a |---| rule under the header
    assert re.search(r"^\|-+\|", summary, re.M)


def test_no_reports_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(REPO / "cases" / "product.toml"), "--no-reports"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_default_report_dir_is_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["run", str(REPO / "cases" / "product.toml")]) == 0
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert names == [files.SETS, "junit.xml", "report.html", "report.json", "summary.md"]
    # each report is a link through the set the last run wrote (see files.write_set)
    assert all((tmp_path / "reports" / n).is_symlink() for n in names[1:])


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_unwritable_report_dir_exits_2_with_one_line(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    target = blocker / "reports" if where == "under_a_file" else blocker
    assert main(["run", str(REPO / "cases" / "product.toml"), "--report-dir", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before running any case
    assert err.count("\n") == 1 and err.startswith(f"gradcheck: error: cannot write reports to {target}")
    assert blocker.read_text() == "not a folder"


def test_a_failed_write_keeps_the_old_files_and_leaves_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    files.write_all({a: "old a", b: "old b"})
    real = os.replace

    def no_space(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(files.ReportDirError, match="No space left on device"):
        files.write_all({a: "new a", b: "new b"})
    monkeypatch.setattr(os, "replace", real)
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


# The child runs the real CLI with one os function replaced so that it stops, at a chosen
# point of writing the reports, until it is killed: "write" while the first temporary file
# is being written, "rename-N" after N of the set's renames.
CHILD = """
import os, sys, time
from pathlib import Path
from gradcheck_suite._cli import main

marker, mode = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace
renamed = []

def hang(*args):
    marker.write_text(mode)
    time.sleep(300)

def replace_then_hang(src, dst):
    if len(renamed) == int(mode.split("-")[1]):
        hang()
    renamed.append(dst)
    real_replace(src, dst)

if mode == "write":
    os.fsync = hang
else:
    os.replace = replace_then_hang
sys.exit(main(sys.argv[3:]))
"""


def _report_files(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in ("report.json", "junit.xml", "summary.md")}


def _parse_all(folder: Path) -> None:
    json.loads((folder / "report.json").read_text())
    ET.parse(folder / "junit.xml")
    assert (folder / "summary.md").read_text().startswith("## gradcheck")


def _one_run(reports: dict[str, bytes]) -> str:
    """Which run the three files come from, by the verdict each one records: all must agree."""
    verdicts = {
        json.loads(reports["report.json"])["cases"][0]["verdict"],
        "fail" if b"<failure" in reports["junit.xml"] else "pass",
        "fail" if b"FAIL" in reports["summary.md"] else "pass",
    }
    assert len(verdicts) == 1, f"a mixed set: {verdicts}"
    return verdicts.pop()


# The killed child renames the 3 files into its set folder, then `previous`, then `current`
# (the visible links exist since the first run): killed inside the writes, after the first
# file, after all three, and between `previous` and `current`.
@pytest.mark.parametrize("mode", ["write", "rename-1", "rename-3", "rename-4"])
def test_killing_a_run_while_it_writes_keeps_a_whole_set(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(REPO / "cases" / "matmul.toml", cases)
    out = tmp_path / "reports"
    assert main(["run", "cases", "--report-dir", str(out)]) == 0
    old = _report_files(out)

    drift(cases / "matmul.toml")  # the new reports would say FAIL: easy to tell from the old
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), mode, "run", "cases", "--report-dir", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None:
            assert time.monotonic() < deadline, "the child never reached the write"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    now = _report_files(out)
    _parse_all(out)  # every report is whole, whatever the moment of the kill
    _one_run(now)  # and all three come from one run: never an old junit.xml beside a new summary
    if mode == "write":
        assert now == old
    # The next run is not disturbed by what the killed one left behind, and removes it.
    assert main(["run", "cases", "--report-dir", str(out)]) == 1
    assert json.loads((out / "report.json").read_text())["cases"][0]["verdict"] == "fail"
    left = [p.name for p in out.iterdir()] + [p.name for p in (out / files.SETS).iterdir()]
    assert not [n for n in left if n.endswith(".tmp")], left
    assert len([n for n in left if files._SET.match(n)]) <= 2  # current and previous


def test_plain_reports_of_an_earlier_version_become_the_first_set(tmp_path: Path) -> None:
    for name in ("report.json", "junit.xml", "summary.md"):
        (tmp_path / name).write_text(f"old {name}")
    files.write_set(tmp_path, {"report.json": "new report.json", "junit.xml": "new junit.xml"})
    assert (tmp_path / "report.json").read_text() == "new report.json"
    assert (tmp_path / "summary.md").read_text() == "old summary.md"  # not in this set: untouched
    previous = tmp_path / files.SETS / "previous"
    assert (previous / "report.json").read_text() == "old report.json"  # adopted, then kept one run


def test_temporaries_of_killed_runs_are_removed_and_a_live_writers_are_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    orphan = tmp_path / f".junit.xml.{dead_pid}.0123abcd.tmp"
    live = tmp_path / f".junit.xml.{os.getpid()}.0123abcd.tmp"
    orphan.write_text("half")
    live.write_text("being written")
    files.write_all({tmp_path / "junit.xml": "whole"})
    assert not orphan.exists() and live.exists()


def test_a_projection_failure_is_reported_along_its_direction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a numpy layer with no [reference] is checked two ways, so the worst pair involves numeric
    # and, in projection mode, its worst is a direction, not an element
    pkg = tmp_path / "projpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "def lin(x, w):\n    return x @ w\n\n\ndef lin_bwd(dout, x, w):\n    return dout @ w.T, x.T @ dout * 1.01\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lin.toml").write_text(
        'name = "lin"\noutput = "out"\nupstream = { random = "normal", shape = [4, 3], seed = 5 }\n'
        '[inputs]\nx = { random = "normal", shape = [4, 5], seed = 0 }\n'
        'w = { random = "normal", shape = [5, 3], seed = 1 }\n'
        '[forward]\ncallable = "projpkg.mod:lin"\n[backward]\ncallable = "projpkg.mod:lin_bwd"\n'
    )
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "lin.toml"), "--mode", "projection", "--report-dir", str(out), "-v"]
    assert main([*args, "--allow-callable", "projpkg.*"]) == 1
    assert "manual vs numeric: 4 direction(s) disagree" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, json_report.load_schema())
    (w,) = [i for i in data["cases"][0]["inputs"] if i["name"] == "w"]
    assert w["worst"]["pair"] == "manual-numeric" and isinstance(w["worst"]["direction"], int)
    assert w["pairs"][0]["unit"] == "direction"
    failure = ET.parse(out / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None
    assert re.match(r"the sources disagree at w along direction \d: manual=\S+ numeric=\S+", failure.get("message", ""))
