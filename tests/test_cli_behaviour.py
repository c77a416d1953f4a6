"""The command line as a pytest user expects it: quiet on a closed pipe and on Ctrl-C, tables that
fit the terminal, colour on a terminal, --version and a fast --help, -k expressions, rows in file
order under their folders, one count of a sweep everywhere, no report folder for nothing."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from .conftest import CASES, DATA

GRADCHECK = str(Path(sys.executable).parent / "gradcheck")  # the console script the venv installs
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DROP_SIGX = "dx += ((1 - sigx) * sigx) * dsigx\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    return {**env, **extra}


# --- --help, --version -----------------------------------------------------------------------


def test_help_answers_without_importing_torch_and_shows_examples_and_exit_codes() -> None:
    probe = (
        "import sys\n"
        "from gradcheck_suite._cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', code)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    assert out.rstrip().endswith("NO TORCH 0"), out
    for text in ("examples:", 'gradcheck run -k "matmul or product"', "exit status:", "130  interrupted"):
        assert text in out
    assert re.search(r"^  1\s+the sources disagree", out, re.M) and re.search(r"^  2\s+a usage error", out, re.M)


def test_version(cli) -> None:
    from gradcheck_suite import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"gradcheck-suite {__version__}"


# --- -k expressions ----------------------------------------------------------------------------


def _ran(out: str) -> set[str]:
    names = {p.stem for p in CASES.rglob("*.toml")}
    return {line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in names}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("matmul or product", {"matmul", "product"}),
        ("sig and not neuron", {"compound_sigmoid"}),
        ("not (sig or mat or prod)", {"sum_times"}),
        ("s*m*s or PRODUCT", {"sum_times", "product"}),  # globs and case-insensitive words as before
        ("sig", {"compound_sigmoid", "sigmoid_neuron"}),
    ],
)
def test_k_takes_pytest_expressions(cli, expression: str, expected: set[str]) -> None:
    code, out, err = cli("run", *map(str, sorted(CASES.glob("*.toml"))), "-k", expression, "--no-reports")
    assert code == 0, err
    assert _ran(out) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("matmul or", "expected a name, found the end"),
        ("matmul product", "expected 'and', 'or' or the end, found 'product'"),
        ("(matmul", "expected ')', found the end"),
        ("and", "expected a name, found 'and'"),
    ],
)
def test_a_malformed_k_expression_is_a_usage_error(cli, expression: str, message: str) -> None:
    code, out, err = cli("run", str(CASES), "-k", expression, "--no-reports")
    assert code == 2 and out == ""
    assert err.strip() == f"gradcheck: error: -k {expression!r}: {message}"
    from gradcheck_suite._keyword import KeywordError, compile_keyword

    with pytest.raises(KeywordError):
        compile_keyword(expression)


# --- pipes and Ctrl-C --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["list", str(CASES)], ["show", "matmul", str(CASES)]])
def test_a_closed_pipe_ends_quietly(args: list[str]) -> None:
    """`gradcheck list | head -1`: the reader is gone before the output comes."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([GRADCHECK, *args], stdout=write, stderr=subprocess.PIPE, timeout=120, env=_env())
    finally:
        os.close(write)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, as git reports it


# The child stops inside the first case's check (as a long run would) and says so, so that
# the signal arrives while the engine is working, not while Python starts.
SLOW_CHILD = """
import sys, time
from pathlib import Path
import gradcheck_suite._engine as engine
from gradcheck_suite._cli import main

marker = Path(sys.argv[1])
def slow(*args, **kwargs):
    marker.write_text("checking")
    time.sleep(60)
engine.check_case = slow
sys.exit(main(sys.argv[2:]))
"""


def test_ctrl_c_ends_quietly_with_130(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_CHILD, str(marker), "run", str(CASES), "--no-reports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130
    assert "Traceback" not in err.decode() and err.decode().strip() == "gradcheck: interrupted"


# --- width and colour --------------------------------------------------------------------------


def _broken_seed(tmp_path: Path) -> Path:
    folder = tmp_path / "cases"
    folder.mkdir()
    for p in CASES.glob("*.toml"):
        (folder / p.name).write_text(p.read_text())
    text = (folder / "compound_sigmoid.toml").read_text()
    (folder / "compound_sigmoid.toml").write_text(text.replace(DROP_SIGX, ""))
    return folder


@pytest.mark.parametrize("columns", [80, 60, 100])
def test_every_line_fits_the_terminal(cli, columns: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    broken = _broken_seed(tmp_path)
    outputs = [
        cli("run", str(CASES), "--no-reports"),
        cli("run", str(broken), "-v", "--no-reports"),
        cli("list", str(CASES)),
        cli("show", "matmul", str(CASES)),
        cli("show", "relu", str(CASES)),
        cli("show", "compound_sigmoid", str(broken)),
    ]
    for code, out, err in outputs:
        assert code in (0, 1), err
        too_wide = [line for line in (out + err).splitlines() if len(line) > columns]
        assert not too_wide, too_wide
    # the narrowed table still says what failed and where, and keeps every case
    _, out, _ = outputs[1]
    assert "FAIL: manual is the odd one out" in out and "compound_sigmoid" in out and "sum_times" in out


def test_without_a_terminal_lines_stay_whole(cli) -> None:
    code, out, _ = cli("run", str(CASES), "--no-reports")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) > 120  # grep and CI logs get every digit
    assert "2.0595697955721652" in out


def test_colour_follows_no_color_force_color_and_the_option(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    product = str(CASES / "product.toml")
    _, plain, _ = cli("run", product, "--no-reports")
    assert not ANSI.search(plain)  # not a terminal: no colour
    monkeypatch.setenv("FORCE_COLOR", "1")
    _, forced, _ = cli("run", product, "--no-reports")

    def timeless(text: str) -> str:
        return re.sub(r"in \d+\.\d+ s", "in T s", text)

    assert "\x1b[32mpass\x1b[0m" in forced and timeless(ANSI.sub("", forced)) == timeless(plain)
    monkeypatch.setenv("NO_COLOR", "1")  # NO_COLOR wins, as in pytest
    _, off, _ = cli("run", product, "--no-reports")
    assert not ANSI.search(off)
    _, yes, _ = cli("run", product, "--no-reports", "--color", "yes")
    assert ANSI.search(yes)


def test_on_a_real_terminal_it_colours_and_fits(tmp_path: Path) -> None:
    """A pseudo-terminal 72 columns wide, as a user's shell would give."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 72, 0, 0))
    proc = subprocess.Popen(
        [GRADCHECK, "run", str(CASES), "--no-reports"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(TERM="xterm"),
        cwd=tmp_path,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\x1b[32mpass" in text
    plain = [ANSI.sub("", line) for line in re.split(r"[\r\n]+", text)]  # a progress bar redraws after \r
    assert max(len(line) for line in plain) <= 72


# --- order of rows -----------------------------------------------------------------------------


def test_rows_follow_the_files_under_their_folders(cli) -> None:
    code, out, _ = cli("run", str(CASES), "--no-reports")
    assert code == 0
    lines = out.splitlines()
    top = CASES.as_posix() + "/"
    layers = (CASES / "layers").as_posix() + "/"
    assert lines.count(top) == 1 and lines.count(layers) == 1
    first = lines.index(top)
    seed = [line.split()[0] for line in lines[first + 1 : lines.index(layers)] if line and not line[0].isspace()]
    assert seed == sorted(p.stem for p in CASES.glob("*.toml"))  # a folder's own files, by name
    after = [line.split()[0] for line in lines[lines.index(layers) + 1 :] if line and not line[0].isspace()]
    assert after[: len(list((CASES / "layers").glob("*.toml")))] == sorted(
        p.stem for p in (CASES / "layers").glob("*.toml")
    )


# --- sweeps: one count everywhere --------------------------------------------------------------


def test_a_sweep_is_counted_the_same_in_the_row_the_summary_and_report_json(cli, tmp_path: Path) -> None:
    # the case's own point sits on relu's kink (inconclusive); random points near it are decided
    code, out, _ = cli("run", str(DATA / "kink_relu.toml"), "--samples", "3", "--report-dir", str(tmp_path))
    data = json.loads((tmp_path / "report.json").read_text())
    (case,) = data["cases"]
    counts = case["samples"]["counts"]
    # the scenario of the issue: some points inconclusive (a kink), the others pass
    assert counts["inconclusive"] >= 1 and counts["pass"] >= 1 and counts["fail"] == 0
    assert case["verdict"] == "pass" and code == 0
    row = next(line for line in out.splitlines() if line.startswith("kink_relu"))
    assert row.split()[-1] != "inconclusive" and re.search(r"  pass; point \d+ inconclusive \(kink\)$", row)
    summary = out.strip().splitlines()[-1]
    points = data["summary"]["points"]
    assert points == {"points": case["samples"]["points"], **counts}
    assert summary.startswith("1 case(s): 1 pass, 0 fail, 0 inconclusive, 0 error;")
    assert (
        f"{points['points']} sweep point(s): {points['pass']} pass, {points['fail']} fail,"
        f" {points['inconclusive']} inconclusive" in summary
    )
    note = next(line for line in out.splitlines() if line.startswith("kink_relu: pass over"))
    assert f"{counts['pass']} pass, {counts['fail']} fail, {counts['inconclusive']} inconclusive" in note
    assert data["summary"]["pass"] == 1 and data["summary"]["inconclusive"] == 0


# --- the report folder -------------------------------------------------------------------------


def test_a_run_with_no_case_leaves_no_report_folder(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run")
    assert code == 2 and "no such file or folder" in err
    assert list(tmp_path.iterdir()) == []
    # a case file that does not load is something to report: CI must see it in junit.xml
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "broken.toml").write_text("name = \n")
    assert cli("run")[0] == 2
    assert (tmp_path / "reports" / "junit.xml").exists()


# --- your own modules --------------------------------------------------------------------------


def test_case_file_callables_are_found_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "mylib").mkdir()
    (tmp_path / "mylib" / "__init__.py").write_text("")
    (tmp_path / "mylib" / "ops.py").write_text(
        "def square(x):\n    return x * x\n\n\ndef square_backward(dout, x):\n    return 2 * x * dout\n"
    )
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ncallables = ["mylib.*"]\n')
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "square.toml").write_text(
        'name = "square"\noutput = "y"\n[inputs]\nx = [1.5, -2.0]\n'
        '[forward]\ncallable = "mylib.ops:square"\n[backward]\ncallable = "mylib.ops:square_backward"\n'
    )
    proc = subprocess.run(
        [GRADCHECK, "run", "--no-reports"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env()
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 case(s): 1 pass" in proc.stdout


def test_the_package_exports_its_api_lazily() -> None:
    probe = (
        "import sys, gradcheck_suite as g\n"
        "before = 'torch' in sys.modules\n"
        "names = [n for n in g.__all__ if n != '__version__']\n"
        "missing = [n for n in names if getattr(g, n, None) is None]\n"
        "print(before, sorted(names) == sorted(g._EXPORTS), missing)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "False True []"
