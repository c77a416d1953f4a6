"""Issue 16: a Python callable's evaluations, batched where it takes a batch, spread over
worker processes where its calls are slow, with progress chunk by chunk."""

from __future__ import annotations

import io
import os
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._progress import eta, progress_bar
from gradcheck_suite._sources.numeric import calls
from gradcheck_suite._sources.numeric.calls import Rows

from .conftest import CASES
from .speedpkg import calls_made, evaluations, speed_case


def _single_call_values(monkeypatch: pytest.MonkeyPatch, path: Path, options: RunOptions):
    """The same check with batching made impossible: every perturbation its own call."""
    with monkeypatch.context() as m:
        m.setattr(calls.CallEvaluator, "_batched", lambda *a, **k: (_ for _ in ()).throw(ValueError("no batches")))
        return check_case(load_case(path), options)


def test_a_callable_that_takes_a_batch_is_called_in_batches_with_the_same_results(
    speedpkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = speed_case(speedpkg, "batched", "layer", "layer_backward")
    result = check_case(load_case(path), RunOptions(jobs=1))
    assert result.verdict == "pass"
    assert any("takes a batch of `x`" in n for n in result.notes)
    assert any("takes a batch of `W`" in n for n in result.notes)
    made = calls_made(speedpkg)
    assert len(made) < evaluations(result) / 4  # far fewer calls than evaluations
    assert any(rows > 6 for _, rows in made)  # some calls held many copies
    single = _single_call_values(monkeypatch, path, RunOptions(jobs=1))
    for name in ("x", "W"):
        # bit for bit: a batch is used only where it gives exactly the single calls' phi
        assert np.array_equal(result.sources["numeric"].values[name], single.sources["numeric"].values[name])


def test_a_callable_that_mixes_rows_is_called_one_perturbation_at_a_time(speedpkg: Path) -> None:
    path = speed_case(speedpkg, "centred", "centred", "centred_backward")
    result = check_case(load_case(path), RunOptions(jobs=1))
    assert result.verdict == "pass", result.reason
    assert not any("takes a batch" in n for n in result.notes)
    # beyond the probe (a stack and a row batch tried once per input), one call per row
    assert sum(rows != 6 for _, rows in calls_made(speedpkg)) <= 4


def test_a_batch_that_broadcasts_only_by_coincidence_is_never_used(
    speedpkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x @ w + b with 3 rows: stacking b over 3 copies would broadcast against the rows. The
    probe holds as many copies as no axis is long, the sweep's points differ, and every value
    equals the single calls'."""
    text = textwrap.dedent(
        """
        name = "affine"
        output = "y"
        upstream = { random = "normal", shape = [3, 2], seed = 3 }
        [inputs]
        x = { random = "normal", shape = [3, 4], seed = 1 }
        w = { random = "normal", shape = [4, 2], seed = 2 }
        b = { random = "normal", shape = [2], seed = 4 }
        [forward]
        callable = "speedpkg:affine"
        [backward]
        callable = "speedpkg:affine_backward"
        """
    )
    path = speedpkg / "affine.toml"
    path.write_text(text)
    options = RunOptions(jobs=1, samples=5)
    result = check_case(load_case(path), options)
    assert result.verdict == "pass", result.reason
    assert result.samples is not None and result.samples.counts["pass"] == 6
    single = _single_call_values(monkeypatch, path, options)
    for name in ("x", "w", "b"):
        assert np.array_equal(result.sources["numeric"].values[name], single.sources["numeric"].values[name])


def test_a_batch_that_raises_later_falls_back_to_single_calls(speedpkg: Path) -> None:
    path = speed_case(speedpkg, "fragile", "fragile", "layer_backward", shape_x=(6, 30))
    result = check_case(load_case(path), RunOptions(jobs=1))
    assert result.verdict == "pass", result.reason
    assert any("batched calls of `x` stopped" in n and "MemoryError" in n for n in result.notes)


# -- worker processes -------------------------------------------------------------------------


def test_slow_single_calls_are_spread_over_worker_processes_with_the_same_results(speedpkg: Path) -> None:
    path = speed_case(speedpkg, "slow", "slow", "layer_backward", shape_x=(6, 20))
    parallel = check_case(load_case(path), RunOptions(jobs=2))
    assert parallel.verdict == "pass", parallel.reason
    assert any("2 worker processes" in n for n in parallel.notes)
    pids = {pid for pid, _ in calls_made(speedpkg)}
    assert len(pids - {os.getpid()}) == 2  # two workers besides this process
    (speedpkg / "calls.txt").unlink()
    alone = check_case(load_case(path), RunOptions(jobs=1))
    assert not any("worker" in n for n in alone.notes)
    assert {pid for pid, _ in calls_made(speedpkg)} == {os.getpid()}
    for name in ("x", "W"):
        assert np.array_equal(parallel.sources["numeric"].values[name], alone.sources["numeric"].values[name])


def test_workers_run_a_callable_that_cannot_be_pickled(speedpkg: Path) -> None:
    """The workers are forked after the callable was imported: nothing is pickled but numbers."""
    import speedpkg as module  # type: ignore[import-not-found]

    with pytest.raises(Exception):  # noqa: B017 - whichever pickling error this Python raises
        pickle.dumps(module.lam)
    path = speed_case(speedpkg, "lam", "lam", "layer_backward", shape_x=(6, 20))
    result = check_case(load_case(path), RunOptions(jobs=2))
    assert result.verdict == "pass", result.reason
    assert any("2 worker processes" in n for n in result.notes)


def test_tasks_sent_to_workers_hold_numbers_and_no_code() -> None:
    rows = Rows("x", np.arange(3), np.ones(3), element=np.arange(3), directions=np.ones((2, 3)))
    task = pickle.dumps((rows, "single"))
    found: set[tuple[str, str]] = set()

    class Watch(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            found.add((module, name))
            return super().find_class(module, name)

    Watch(io.BytesIO(task)).load()
    assert found and all(m.split(".")[0] == "numpy" or (m, n) == (calls.__name__, "Rows") for m, n in found), found


def _children() -> list[int]:
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        text = (task / "children").read_text().split()
        pids += [int(p) for p in text]
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_a_timeout_stops_a_case_evaluated_by_workers_and_leaves_no_process(speedpkg: Path, cli) -> None:
    before = set(_children())
    speed_case(speedpkg, "sluggish", "sluggish", "layer_backward")
    code, _, err = cli("run", str(speedpkg / "sluggish.toml"), "--no-reports", "--timeout", "1.5", "--jobs", "2")
    assert code == 2 and "over --timeout 1.5 s" in err
    assert set(_children()) <= before


def test_without_a_safe_fork_the_calls_stay_in_one_process_with_a_note(
    speedpkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "parallel_refusal", lambda: "no safe fork on testos")
    path = speed_case(speedpkg, "slow", "slow", "layer_backward", shape_x=(6, 20))
    result = check_case(load_case(path), RunOptions(jobs=2))
    assert result.verdict == "pass"
    assert any("one process (no safe fork on testos)" in n for n in result.notes)
    assert {pid for pid, _ in calls_made(speedpkg)} == {os.getpid()}


# -- progress, threads, options ---------------------------------------------------------------


def test_progress_moves_during_a_callable_case_chunk_by_chunk(speedpkg: Path) -> None:
    """main reported a callable's evaluations once per chunk of up to hundreds of calls."""
    seen: list[tuple[int, int]] = []
    result = check_case(
        load_case(speed_case(speedpkg, "slow", "slow", "layer_backward")),
        RunOptions(jobs=1),
        lambda done, planned: seen.append((done, planned)),
    )
    assert result.verdict == "pass"
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == evaluations(result)
    # 2 ms calls in chunks of about 0.1 s: no report waits for more than about 50 calls
    gaps = np.diff([0, *dones])
    assert len(seen) >= 8 and gaps.max() <= 80


def test_progress_moves_through_a_sweep_against_the_whole_sweep_plan(speedpkg: Path) -> None:
    """A sweep's evaluations are counted against one plan for all its points, chunk by chunk."""
    seen: list[tuple[int, int]] = []
    result = check_case(
        load_case(speed_case(speedpkg, "slow", "slow", "layer_backward")),
        RunOptions(jobs=1, samples=2),
        lambda done, planned: seen.append((done, planned)),
    )
    assert result.verdict == "pass" and result.samples is not None and result.samples.points == 3
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and len({p for _, p in seen}) == 1
    gaps = np.diff([0, *dones])
    assert len(seen) >= 8 and gaps.max() <= 80


def test_the_bar_shows_the_case_eta(capsys: pytest.CaptureFixture[str]) -> None:
    assert eta(0, 10, 1.0) == "?"
    assert eta(5, 10, 10.0) == "0:10"
    assert eta(1, 7201, 1.0) == "2:00:00"
    assert eta(12, 10, 3.0) == "0:00"
    bar = progress_bar(2, enabled=True, delay=0.0)
    bar.next_case(load_case(CASES / "matmul.toml"))
    bar._bar.mininterval = 0  # draw at once, not 0.1 s after the last drawing
    bar.evaluations(5, 10)
    bar.close()
    assert "5/10 evaluations, case ETA" in capsys.readouterr().err


def test_jobs_is_an_option_of_the_cli_and_the_plugin(cli, pytester: pytest.Pytester) -> None:
    code, _, err = cli("run", str(CASES / "product.toml"), "--jobs", "0", "--no-reports")
    assert code == 2 and "--jobs" in err
    code, _, _ = cli("run", str(CASES / "product.toml"), "--jobs", "1", "--no-reports")
    assert code == 0
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "product.toml").write_text((CASES / "product.toml").read_text())
    done = pytester.runpytest("--gradcheck", "cases", "--gradcheck-jobs", "2", "-p", "no:cacheprovider")
    done.assert_outcomes(passed=1)
