"""The perturbation engine: check modes, chunking within the memory budget, projections, progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._compare import gradient_scale, judge_input
from gradcheck_suite._progress import progress_bar
from gradcheck_suite._sources import Gradients
from gradcheck_suite._sources.autograd import autograd_gradients
from gradcheck_suite._sources.manual import manual_gradients
from gradcheck_suite._sources.numeric import (
    AUTO_FULL_ELEMENTS,
    NumericSettings,
    Objective,
    Runner,
    evaluation_cost,
    numeric_gradients,
    numeric_gradients_at,
    resolve_mode,
)

from .conftest import CASES

MATMUL = """
name = "mm{n}"
output = "D"
upstream = {{ random = "normal", shape = [{n}, {n}], seed = 3 }}

[inputs]
W = {{ random = "normal", shape = [{n}, {n}], seed = 1 }}
X = {{ random = "normal", shape = [{n}, {n}], seed = 2 }}

[forward]
program = "D = W @ X"

[backward]
program = '''
dW = dD @ X.T
dX = W.T @ dD
'''
"""

# maximum() makes the program non-analytic: Richardson differences with kink detection
RELU = """
name = "relu_layer"
output = "h"

[inputs]
W = { random = "normal", shape = [6, 5], seed = 4 }
x = { random = "normal", shape = [5], seed = 5 }

[forward]
program = '''
z = W @ x
h = maximum(z, 0.1 * z)
'''
"""


@pytest.fixture
def matmul(tmp_path: Path):
    def make(n: int):
        path = tmp_path / f"mm{n}.toml"
        path.write_text(MATMUL.format(n=n))
        return load_case(path)

    return make


@pytest.fixture
def relu(tmp_path: Path):
    path = tmp_path / "relu.toml"
    path.write_text(RELU)
    return load_case(path)


def judged(case, numeric: Gradients, manual: Gradients | None = None):
    manual = manual or manual_gradients(case, case.inputs, "float64")
    results = [manual, autograd_gradients(case, case.inputs, "float64", "cpu"), numeric]
    scale = gradient_scale(results)
    return {name: judge_input(name, results, "float64", scale) for name in case.inputs}


def plant(manual: Gradients, name: str, index: tuple[int, ...], factor: float) -> Gradients:
    values = {k: v.copy() for k, v in manual.values.items()}
    values[name][index] *= factor
    reference = {k: v.copy() for k, v in manual.reference.items()} if manual.reference else None
    if reference is not None:
        reference[name][index] *= factor  # the bug is in the program, so its rerun has it too
    return Gradients("manual", values, manual.dtype, reference=reference, reference_dtype=manual.reference_dtype)


# --- modes ------------------------------------------------------------------------------


def test_auto_is_full_up_to_the_documented_size_and_projection_above() -> None:
    assert resolve_mode("auto", {"W": AUTO_FULL_ELEMENTS // 2, "X": AUTO_FULL_ELEMENTS // 2}) == "full"
    assert resolve_mode("auto", {"W": AUTO_FULL_ELEMENTS // 2, "X": AUTO_FULL_ELEMENTS // 2 + 1}) == "projection"
    assert resolve_mode("sample", {"W": 10**9}) == "sample"


def test_full_mode_computes_every_element(matmul) -> None:
    case = matmul(8)
    g = numeric_gradients(case, case.inputs, NumericSettings(mode="full"))
    assert g.mode == "full" and g.checked is None and g.projections is None
    auto = autograd_gradients(case, case.inputs, "float64", "cpu").values
    for name in case.inputs:
        np.testing.assert_allclose(g.values[name], auto[name], rtol=1e-13, atol=1e-13)


def test_sample_mode_computes_exactly_k_random_elements_reproducibly(matmul) -> None:
    case = matmul(8)
    a = numeric_gradients(case, case.inputs, NumericSettings(mode="sample", elements=5, seed=7))
    b = numeric_gradients(case, case.inputs, NumericSettings(mode="sample", elements=5, seed=7))
    c = numeric_gradients(case, case.inputs, NumericSettings(mode="sample", elements=5, seed=8))
    auto = autograd_gradients(case, case.inputs, "float64", "cpu").values
    assert a.checked is not None and b.checked is not None and c.checked is not None
    for name in case.inputs:
        mask = a.checked[name]
        assert mask.sum() == 5
        assert np.array_equal(np.isfinite(a.values[name]), mask)  # only the sampled elements are computed
        np.testing.assert_allclose(a.values[name][mask], auto[name][mask], rtol=1e-13)
        assert np.array_equal(mask, b.checked[name])
    assert any(not np.array_equal(a.checked[k], c.checked[k]) for k in case.inputs)


def test_sample_mode_judges_only_the_sampled_elements(matmul) -> None:
    case = matmul(8)
    numeric = numeric_gradients(case, case.inputs, NumericSettings(mode="sample", elements=5))
    assert numeric.checked is not None
    inside = tuple(int(i) for i in np.argwhere(numeric.checked["W"])[0])
    outside = tuple(int(i) for i in np.argwhere(~numeric.checked["W"])[0])
    manual = manual_gradients(case, case.inputs, "float64")
    ok = judged(case, numeric)["W"]
    assert ok.verdict == "pass"
    assert ok.pair("autograd", "numeric").compared == 5
    hit = judged(case, numeric, plant(manual, "W", inside, 1.001))["W"]
    assert hit.verdict == "fail" and hit.odd_one_out == "manual"
    # outside the sample only manual-vs-autograd sees it: two against one cannot be attributed to numeric
    miss = judged(case, numeric, plant(manual, "W", outside, 1.001))["W"]
    assert miss.verdict == "fail"
    assert miss.pair("manual", "numeric").disagree == 0


def test_projection_directions_are_signed_powers_of_two(matmul) -> None:
    case = matmul(8)
    g = numeric_gradients(case, case.inputs, NumericSettings(mode="projection", directions=3))
    assert g.mode == "projection" and g.projections is not None
    auto = autograd_gradients(case, case.inputs, "float64", "cpu").values
    for name, p in g.projections.items():
        w = p.directions
        assert w.shape == (3, 8, 8)
        mag = np.abs(w)
        assert np.all(mag >= 1) and np.array_equal(np.exp2(np.round(np.log2(mag))), mag)
        assert 0.3 < np.mean(w > 0) < 0.7
        exact = np.array([np.sum(auto[name] * wk) for wk in w])
        np.testing.assert_allclose(p.values, exact, rtol=1e-12)
        assert np.all(p.error < 1e-9 * np.abs(exact).max())


# --- projection catches one wrong element ----------------------------------------------


@pytest.mark.parametrize("method", ["complex-step", "richardson"])
def test_projection_catches_one_wrong_element_among_8192_and_passes_the_right_gradient(matmul, method) -> None:
    case = matmul(64)
    numeric = numeric_gradients(case, case.inputs, NumericSettings(method=method, mode="projection", directions=2))
    ok = judged(case, numeric)
    assert all(r.verdict == "pass" for r in ok.values()), {k: r.reason for k, r in ok.items()}
    manual = manual_gradients(case, case.inputs, "float64")
    bad = judged(case, numeric, plant(manual, "X", (17, 42), 1.01))
    assert bad["W"].verdict == "pass"
    assert bad["X"].verdict == "fail"
    assert bad["X"].odd_one_out == "manual"
    assert bad["X"].pair("manual", "numeric").disagree == 2  # every direction sees it
    assert bad["X"].pair("autograd", "numeric").disagree == 0


def test_projection_on_a_kinked_program_passes_the_right_gradient(relu) -> None:
    r = check_case(relu, RunOptions(mode="projection", directions=3))
    assert r.mode == "projection"
    assert r.verdict == "pass", r.reason


# --- chunking and the memory budget ------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "sample", "projection"])
@pytest.mark.parametrize("name", ["matmul", "compound_sigmoid"])
def test_chunking_gives_identical_results_for_tiny_and_large_budgets(name: str, mode: str) -> None:
    case = load_case(CASES / f"{name}.toml")
    tiny = numeric_gradients(case, case.inputs, NumericSettings(mode=mode, elements=7, max_memory=1))
    large = numeric_gradients(case, case.inputs, NumericSettings(mode=mode, elements=7, max_memory=1 << 30))
    assert "chunks of at most 1\n" in tiny.notes[-1] + "\n"
    assert tiny.error is not None and large.error is not None
    for k in case.inputs:
        np.testing.assert_array_equal(tiny.values[k], large.values[k])
        np.testing.assert_array_equal(tiny.error[k], large.error[k])
    if mode == "projection":
        assert tiny.projections is not None and large.projections is not None
        for k in case.inputs:
            np.testing.assert_array_equal(tiny.projections[k].values, large.projections[k].values)


def test_chunking_agrees_within_the_estimate_for_differences_with_kink_detection(relu) -> None:
    # A batched W @ x runs as one gemm whose summation order depends on the batch size, so
    # phi differs in the last bit; divided by the step that is visible, and well inside the
    # error estimate the differences carry for exactly that rounding.
    tiny = numeric_gradients(relu, relu.inputs, NumericSettings(max_memory=1))
    large = numeric_gradients(relu, relu.inputs, NumericSettings())
    assert large.error is not None and tiny.kinks is not None and large.kinks is not None
    for k in relu.inputs:
        assert np.all(np.abs(tiny.values[k] - large.values[k]) <= large.error[k])
        np.testing.assert_array_equal(tiny.kinks[k], large.kinks[k])


def test_a_sweep_batched_over_points_equals_one_point_at_a_time() -> None:
    case = load_case(CASES / "compound_sigmoid.toml")
    rng = np.random.default_rng(0)
    points = [{k: rng.uniform(-5, 5, size=np.shape(v)) for k, v in case.inputs.items()} for _ in range(6)]
    together = numeric_gradients_at(case, points, NumericSettings())
    for p, g in zip(points, together, strict=True):
        alone = numeric_gradients(case, p, NumericSettings())
        for k in case.inputs:
            np.testing.assert_allclose(g.values[k], alone.values[k], rtol=1e-15, atol=0)


class _Allocations(TorchDispatchMode):
    """Bytes of every new storage an operation returns (views of existing ones excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                ptr = t.untyped_storage().data_ptr()
                if ptr not in self.seen:
                    self.seen.add(ptr)
                    self.bytes += t.untyped_storage().nbytes()
        return out


@pytest.mark.parametrize("mode", ["full", "projection"])
def test_the_memory_estimate_bounds_what_a_chunk_allocates(matmul, mode: str) -> None:
    case = matmul(24)
    obj = Objective(case, [case.inputs], "cpu", complex_=True)
    _, _, forward_bytes = obj.probe()
    per_eval = evaluation_cost(obj, "X", forward_bytes, direction=mode == "projection")
    budget = 20 * per_eval
    runner = Runner(obj, forward_bytes, budget, None, 0)
    assert runner.chunk("X", mode == "projection") == 20
    rows = 20
    with _Allocations() as alloc:
        if mode == "full":
            runner.run("X", np.zeros(rows, dtype=int), np.full(rows, 2.0**-60), element=np.arange(rows))
        else:
            w = torch.ones((rows, 24, 24), dtype=torch.complex128)
            runner.run("X", np.zeros(rows, dtype=int), np.full(rows, 2.0**-60), direction=np.arange(rows), directions=w)
    # everything the chunk allocated, even had nothing been freed, fits the budget
    assert 0 < alloc.bytes <= budget
    # and the estimate is not wildly pessimistic (which would waste the budget)
    assert alloc.bytes > budget / 8


def test_a_check_runs_within_a_budget_smaller_than_one_chunk(matmul) -> None:
    case = matmul(16)
    r = check_case(case, RunOptions(mode="full", max_memory=1))
    assert r.verdict == "pass"


# --- the report and progress ---------------------------------------------------------------


def test_the_report_says_which_mode_ran(cli, matmul, tmp_path: Path) -> None:
    matmul(64)
    code, out, err = cli("run", str(tmp_path), "--mode", "projection", "--directions", "3")
    assert code == 0, out + err
    assert "projection x3" in out and "mode projection" in out
    code, out, _ = cli("run", str(CASES / "matmul.toml"), "--mode", "sample", "--elements", "4")
    assert code == 0
    assert "sample 4/50" in out and "sample 4/30" in out
    code, out, _ = cli("run", str(CASES / "matmul.toml"))
    assert " full " in out


def test_auto_mode_recorded_on_the_case_result(matmul) -> None:
    assert check_case(matmul(8), RunOptions()).mode == "full"
    assert check_case(matmul(100), RunOptions()).mode == "projection"


def test_progress_is_silent_when_stderr_is_not_a_terminal(cli) -> None:
    code, _, err = cli("run", str(CASES), "--samples", "20")
    assert code == 0
    assert err == ""


def test_progress_shows_on_a_terminal_once_the_delay_has_passed(capsys) -> None:
    bar = progress_bar(2, enabled=True, delay=0.0)
    bar.next_case(load_case(CASES / "matmul.toml"))
    bar.evaluations(5, 10)
    bar.close()
    assert "0/2 [" in capsys.readouterr().err  # tqdm drew the bar
    quiet = progress_bar(2, enabled=True, delay=3600.0)
    quiet.next_case(load_case(CASES / "matmul.toml"))
    quiet.evaluations(5, 10)
    quiet.close()
    assert capsys.readouterr().err == ""
