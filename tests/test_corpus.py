"""The adversarial corpus of benchmarks/corpus: well formed, and every backward right (by the referee)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradcheck_suite import load_case
from gradcheck_suite._engine import sample_points
from gradcheck_suite._sources.numeric.referee import referee_backward, referee_gradient

from .conftest import ROOT

CORPUS = sorted((ROOT / "benchmarks" / "corpus").glob("*.toml"))


def test_the_corpus_has_at_least_24_functions_with_programs_domains_and_reasons() -> None:
    assert len(CORPUS) >= 24
    names = set()
    for path in CORPUS:
        case = load_case(path)
        names.add(case.name)
        assert case.forward.program is not None and case.backward is not None and case.backward.program is not None
        assert case.sweep is not None and set(case.sweep.domain) == set(case.inputs), path.name
        assert len(case.description) > 60, f"{path.name}: say what makes it hard"
    assert len(names) == len(CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_backward_is_the_derivative_of_its_forward(path: Path) -> None:
    # At 50 digits the hand-written backward and the forward's differences agree within the
    # differences' error bars wherever there is a derivative: the corpus' gradients are correct,
    # so any fail the checker reports on them is a false alarm.
    case = load_case(path)
    for point in [dict(case.inputs), *sample_points(case, 3)]:
        truth = referee_gradient(case, point)
        formula = referee_backward(case, point)
        for name in case.inputs:
            smooth = ~truth.kinks[name]
            gap = truth.true_error(name, formula.values[name])  # formula rounded to float64
            ulp = np.spacing(np.abs(formula.values[name]))
            assert np.all((gap <= truth.error[name] + formula.error[name] + ulp)[smooth]), (name, point)


def test_the_corpus_figures_run_through_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # benchmarks/numerics.py's corpus section on two points of two functions: it must keep
    # running as the engine changes (the figures themselves are printed, not pinned here)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from _corpus import corpus, measure

    assert [p.stem for p in corpus("relu_near")] == ["relu_near_kink"]
    relu = measure(corpus("relu_near")[0], "float64", 2)
    assert relu.points == 3 and sum(relu.verdicts.values()) == 3
    # its own point has x = 0 exactly: a true kink the referee finds
    assert relu.kinked
    squares = measure(corpus("sum_squares_huge")[0], "float32", 2)
    assert squares.elements == 15 and squares.bugs["flip"][0] == 3  # every point's flip is detectable
