"""Every resource a case file can ask for is bounded before it is spent, with a flag and a
located error (docs/limits.md): no input hangs a run or takes the machine's memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gradcheck_suite import CaseError, RunOptions, _engine, check_case, load_case

from .conftest import CASES

Cli = Callable[..., tuple[int, str, str]]


def _program_case(folder: Path, forward: str, *, name: str = "p", inputs: str = "x = [1.0, 2.0]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    # the program's first statement is on line 7
    path.write_text(f'name = "{name}"\noutput = "f"\n[inputs]\n{inputs}\n[forward]\nprogram = """\n{forward}\n"""\n')
    return path


def _child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: a finding that hangs on the old code fails the test
    by its timeout instead of hanging the suite."""
    # whole lines: no terminal width from the session's environment
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_a_tower_of_powers_is_refused_not_computed(tmp_path: Path) -> None:
    path = _program_case(tmp_path, "q = 10 ** 10 ** 10\nf = sum(x) * 2")
    done = _child(
        f"""
        from gradcheck_suite._cli import main
        raise SystemExit(main(["run", {str(path)!r}, "--no-reports"]))
        """
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:7:" in done.stderr and "--max-exponent" in done.stderr


@pytest.mark.parametrize(
    ("program", "line", "words"),
    [
        ("f = sum(x) * 10.0 ** 400", 7, "Numerical result out of range"),  # OverflowError of a Python float
        ("f = sum(x, axis=9223372036854775808)", 7, "--max-integer"),
        ("a = 4503599627370496\nb = a * a * a\nf = sum(x)", 8, "--max-integer"),
        ("f = sum(x ** 5000)", 7, "--max-exponent"),
        ("f = " + "exp(" * 120 + "sum(x)" + ")" * 120, 7, "--max-depth"),
        ("f = " + "-" * 3000 + "sum(x)", 7, "--max-depth"),  # RecursionError inside ast.parse
        ("f = " + " + ".join(["sum(x)"] * 120), 7, "--max-depth"),
    ],
)
def test_programs_that_overflowed_or_recursed_are_located_errors(
    program: str, line: int, words: str, tmp_path: Path, cli: Cli
) -> None:
    path = _program_case(tmp_path, program)
    code, _, err = cli("run", str(path), "--no-reports")
    assert code == 2 and "Traceback" not in err
    assert f"{path}:{line}:" in err and words in err, err


def test_program_length_is_bounded(tmp_path: Path, cli: Cli) -> None:
    path = _program_case(tmp_path, "\n".join(f"a{i} = x" for i in range(30)) + "\nf = sum(a29)")
    code, _, err = cli("run", str(path), "--no-reports", "--max-statements", "20")
    assert code == 2 and f"{path}:27:" in err and "31 statements, over --max-statements 20" in err
    assert cli("run", str(path), "--no-reports")[0] == 0


def test_an_intermediate_is_sized_from_static_shapes_before_it_is_allocated(tmp_path: Path, cli: Cli) -> None:
    # 2^20 x 2^20 float64 would be 8 TiB: refused on meta tensors, never allocated
    path = _program_case(
        tmp_path,
        "n = size(x, 0)\nouter = reshape(x, (n, 1)) @ reshape(x, (1, n))\nf = sum(outer)",
        inputs='x = { random = "normal", shape = [1048576] }',
    )
    code, _, err = cli("run", str(path), "--no-reports")
    assert code == 2 and f"{path}:8:" in err and "1099511627776 elements, over --max-elements" in err
    big = _program_case(tmp_path, "h = one_hot(arange(3), 100000000)\nf = sum(x)", name="onehot")
    code, _, err = cli("run", str(big), "--no-reports")
    assert code == 2 and f"{big}:7:" in err and "over --max-elements" in err


def test_a_drawn_input_is_sized_before_it_is_drawn(tmp_path: Path) -> None:
    from gradcheck_suite import Limits  # new in this version

    # 2^28 float64 elements (2 GiB) peaked near 10 GiB before: now refused on load
    path = _program_case(tmp_path, "f = sum(x)", inputs='x = { random = "normal", shape = [16384, 16384] }')
    with pytest.raises(CaseError, match=r"268435456 elements, over --max-elements 16777216") as caught:
        load_case(path)
    assert caught.value.line == 4
    assert load_case(path, limits=Limits(max_elements=1 << 28)).inputs["x"].shape == (16384, 16384)


def test_a_sweep_asking_for_a_billion_points_is_refused_on_load(tmp_path: Path) -> None:
    path = _program_case(tmp_path, "f = sum(x)")
    path.write_text(path.read_text() + "[sweep]\nsamples = 1000000000\n")
    with pytest.raises(CaseError, match="over --max-samples 100000") as caught:
        load_case(path)
    assert caught.value.line == 10


def test_samples_on_the_command_line_are_bounded_per_case(cli: Cli) -> None:
    code, out, err = cli("run", str(CASES / "product.toml"), "--no-reports", "--samples", "1000000")
    assert code == 2 and "1000000 sample points are over --max-samples 100000" in err
    assert "product.toml" in err


def test_points_are_streamed_in_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = _engine.numeric_gradients_at

    def spy(case, points, settings, rounding=None):  # type: ignore[no-untyped-def]
        seen.append(len(points))
        return real(case, points, settings, rounding)

    monkeypatch.setattr(_engine, "numeric_gradients_at", spy)
    result = check_case(load_case(CASES / "product.toml"), RunOptions(samples=150))
    assert sum(seen) == 151 and max(seen) <= _engine.POINT_BATCH and len(seen) == 3
    assert result.samples is not None and result.samples.points == 151
    assert sum(result.samples.counts.values()) == 151


def test_streamed_points_give_the_verdicts_all_points_at_once_gave() -> None:
    # one batch (<= 64 points) and three batches see the same points in the same order
    case = load_case(CASES / "sigmoid_neuron.toml")
    one = check_case(case, RunOptions(samples=40))
    many = check_case(case, RunOptions(samples=150))
    assert one.samples is not None and many.samples is not None
    assert one.samples.points == 41 and many.samples.points == 151
    assert (one.verdict, many.verdict) == ("pass", "pass")
    points = list(_engine.iter_sample_points(case, 150))
    np.testing.assert_array_equal(points[10]["w"], _engine.sample_points(case, 40)[10]["w"])


def test_total_evaluations_are_bounded(cli: Cli) -> None:
    code, _, err = cli("run", str(CASES / "matmul.toml"), "--no-reports", "--max-evaluations", "50")
    assert code == 2 and "plans 81 evaluations of the forward, over --max-evaluations 50" in err


SLOW = """
import time

def slow(x):
    time.sleep(60)
    return 2.0 * x

def busy(x):
    while True:
        try:
            sum(range(1000))
        except Exception:  # a callable that swallows what it can must still stop
            pass
"""


@pytest.fixture
def slowpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "slowpkg.py").write_text(SLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("slow", "busy"):
        (cases / f"{name}.toml").write_text(
            f'name = "{name}"\noutput = "y"\n[inputs]\nx = [1.0]\n[forward]\ncallable = "slowpkg:{name}"\n'
        )
    (cases / "product.toml").write_text((CASES / "product.toml").read_text())
    return cases


def test_a_case_over_its_timeout_is_an_error_with_the_time_and_the_others_go_on(slowpkg: Path, cli: Cli) -> None:
    code, out, err = cli("run", str(slowpkg), "--no-reports", "--timeout", "3", "--allow-callable", "slowpkg.*")
    assert code == 2 and "product" in out and "1 pass" in out and "2 error" in out
    for name in ("slow", "busy"):
        line = next(x for x in err.splitlines() if f"case '{name}'" in x)
        assert f"{slowpkg / name}.toml" in line and "over --timeout 3 s" in line
        assert "stopped after 3." in line or "stopped after 4." in line


def test_the_plugin_stops_a_case_at_its_timeout(slowpkg: Path, pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(slowpkg.parent)
    done = pytester.runpytest(
        "--gradcheck",
        str(slowpkg),
        "--gradcheck-timeout",
        "0.5",
        "--gradcheck-allow-callable",
        "slowpkg.*",
        "-p",
        "no:cacheprovider",
    )
    done.assert_outcomes(passed=1, failed=2)
    text = done.stdout.str()
    # Counted in the failure sections only: pytest's short summary repeats each message or
    # truncates it, depending on the terminal's width.
    stopped = [x for x in text.splitlines() if x.startswith("gradcheck:") and "over --timeout 0.5 s" in x]
    assert len(stopped) == 2 and "Traceback" not in text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_as_a_case_file_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    done = _child(
        f"""
        from gradcheck_suite._cli import main
        raise SystemExit(main(["run", {str(fifo)!r}, "--no-reports"]))
        """,
        timeout=60,
    )
    assert done.returncode == 2 and f"{fifo}: cannot read: not a regular file" in done.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_dev_zero_is_refused_not_read_until_memory_runs_out(cli: Cli) -> None:
    code, _, err = cli("run", "/dev/zero", "--no-reports")
    assert code == 2 and "/dev/zero: cannot read: not a regular file" in err


def test_a_file_over_the_size_cap_is_refused(tmp_path: Path, cli: Cli) -> None:
    path = _program_case(tmp_path, "f = sum(x)")
    path.write_text(path.read_text() + "# padding\n" * 20000)
    code, _, err = cli("run", str(path), "--no-reports", "--max-file-size", "64k")
    assert code == 2 and "over --max-file-size 65536" in err


def test_a_table_header_with_thousands_of_spaces_loads_in_linear_time(tmp_path: Path) -> None:
    # the old header pattern backtracked cubically: 19 s for 4,000 spaces, 8,000 never ended
    path = _program_case(tmp_path, "f = sum(x)")
    path.write_text(path.read_text().replace("[inputs]", "[" + " " * 8000 + '"inputs"]'))  # valid TOML
    done = _child(
        f"""
        from gradcheck_suite._case import load_case
        print(load_case({str(path)!r}).inputs)
        """,
        timeout=60,
    )
    assert "{'x': array([1., 2.])}" in done.stdout, done.stdout + done.stderr


def test_integer_constants_and_seeds_are_bounded(tmp_path: Path) -> None:
    path = _program_case(tmp_path, "f = sum(x)")
    path.write_text(path.read_text().replace("[forward]", "[constants]\nN = 9007199254740993\n[forward]"))
    with pytest.raises(CaseError, match="past --max-integer"):
        load_case(path)


def test_limits_are_plugin_options_too(pytester: pytest.Pytester) -> None:
    (pytester.path / "cases").mkdir()
    _program_case(pytester.path / "cases", "\n".join(["a = x"] * 5) + "\nf = sum(a)")
    done = pytester.runpytest("--gradcheck", "cases", "--gradcheck-max-statements", "3", "-p", "no:cacheprovider")
    done.stdout.fnmatch_lines(["*p.toml:10: *6 statements, over --max-statements 3*"])
    assert "Traceback" not in done.stdout.str()


def test_the_timeout_works_from_a_thread_and_leaves_anothers_timer_alone(slowpkg: Path) -> None:
    import signal
    import threading

    from gradcheck_suite import Limits, Trust

    case = load_case(slowpkg / "busy.toml", trust=Trust.from_settings(["slowpkg.*"]))
    options = RunOptions(limits=Limits(timeout=1.0))
    caught: list[BaseException] = []

    def check() -> None:
        try:
            check_case(case, options)
        except CaseError as exc:
            caught.append(exc)

    worker = threading.Thread(target=check)
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and "over --timeout 1 s" in str(caught[0])
    # in the main thread with another timer pending (pytest-timeout's), that timer is kept
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 120)
    try:
        with pytest.raises(CaseError, match="over --timeout 1 s"):
            check_case(case, options)
        assert 100 < signal.getitimer(signal.ITIMER_REAL)[0] <= 120
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_timeout_from_the_watchdog_leaves_tracing_working() -> None:
    # the watchdog (used in the main thread while another timer is pending) once cleared its
    # last exception with PyThreadState_SetAsyncExc(id, NULL): the next sys.settrace tracer
    # (gradcheck mutate's) then spun forever
    done = _child(
        f"""
        import signal, sys
        from gradcheck_suite import load_case
        from gradcheck_suite._guard import deadline
        case = load_case({str(CASES / "product.toml")!r})
        previous = signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 120)
        try:
            with deadline(0.5, case):
                while True:
                    try:
                        sum(range(1000))
                    except Exception:
                        pass
        except Exception as exc:
            print("stopped:", exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        sys.settrace(lambda frame, event, arg: None)
        (lambda: 1)()
        sys.settrace(None)
        print("traced")
        """,
        timeout=60,
    )
    assert "over --timeout" in done.stdout and "traced" in done.stdout, done.stdout + done.stderr
