"""Line blame and hints (issue 14), each on a bug planted in a bundled case.

The blamed line is found in the planted file's own text, so a test cannot pass by a fixed
number: the line holding the planted text (or, for a dropped line, the line the missing term
belongs to) must be the one the diagnosis names.
"""

from __future__ import annotations

import json
import shutil
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

import gradcheck_suite.naive_layers
from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._check import explain
from gradcheck_suite._report import json_report

from .conftest import CASES, allow_callables

LAYERS = CASES / "layers"
DROPPED = "dx += ((1 - sigx) * sigx) * dsigx\n"


def plant(tmp_path: Path, path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert text.count(old) == 1, f"`{old}` must occur once in {path}"
    out = tmp_path / path.name
    out.write_text(text.replace(old, new))
    return out


def line_of(path: Path, text: str) -> int:
    (n,) = [k for k, line in enumerate(path.read_text().splitlines(), start=1) if text.strip() in line]
    return n


def failing(path: Path, dtype: str = "float64"):
    result = check_case(load_case(path), RunOptions(dtype=dtype))
    assert result.verdict == "fail", result.reason
    assert result.diagnostics is not None
    return result


def test_the_notebooks_dropped_accumulation_is_blamed_where_the_term_belongs(tmp_path: Path) -> None:
    path = plant(tmp_path, CASES / "compound_sigmoid.toml", DROPPED, "")
    d = failing(path).diagnostics
    assert d.blame is not None
    # dx's accumulation ends at `dx += 1 * dnum`: that is where the dropped `+=` belonged
    assert d.blame.line == line_of(path, "dx += 1 * dnum")
    assert d.blame.statement == "dx += 1 * dnum"
    assert "dx misses the term through forward line" in d.blame.message
    assert "`sigx = 1 / (1 + exp(-x))`" in d.blame.message
    assert f"dsigx (line {line_of(path, 'dsigx = 1 * dden')}) is right but never reaches dx" in d.blame.message
    status = {i.name: i.status for i in d.blame.intermediates}
    assert status == {n: "right" for n in status} | {"dx": "wrong"}
    # and the difference is that one term, as a hint for the input
    (hint,) = [h for h in d.hints if h.kind == "missing_term"]
    assert (hint.input, hint.pair) == ("x", "manual-autograd") and "sigx" in hint.message


# (case file, the line as written, the planted bug, what the blame says besides the line)
CS, BN, LN = CASES / "compound_sigmoid.toml", LAYERS / "batchnorm.toml", LAYERS / "layernorm.toml"
PLANTED = {
    "missing_square": (CS, "dden = (-1 / den ** 2) * dinvden", "dden = (-1 / den) * dinvden", "dinvden is right"),
    "overwrite": (CS, "dx += 1 * dnum", "dx = 1 * dnum", "`=` discards its earlier line(s)"),
    "sign": (CS, "dy += ((1 - sigy) * sigy) * dsigy", "dy -= ((1 - sigy) * sigy) * dsigy", "wrong sign"),
    "batchnorm_gamma": (BN, "dxhat = dout * gamma", "dxhat = dout", "dxhat is wrong here"),
    "layernorm_axis": (LN, "dxhat - mean(dxhat, axis=1", "dxhat - mean(dxhat, axis=0", "dxhat is right, dx is wrong"),
    "lstm_gate": (LAYERS / "lstm_step.toml", "dprev_c = dc * f", "dprev_c = dc * i", "dprev_c is wrong here"),
    "rnn_square": (LAYERS / "rnn_step.toml", "(1 - next_h ** 2)", "(1 - next_h)", "da is wrong here"),
    "softmax_mean": (LAYERS / "softmax_cross_entropy.toml", "* (dloss / N)", "* dloss", "extra factor of 5"),
    "affine_swapped": (LAYERS / "affine.toml", "dw = xr.T @ dout", "dw = dout.T @ xr", "last two axes swapped"),
    "neuron_variable": (CASES / "sigmoid_neuron.toml", "dw = x * ddot", "dw = w * ddot", "ddot is right"),
}


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_a_planted_bug_is_blamed_on_its_line(bug: str, tmp_path: Path) -> None:
    source, old, new, words = PLANTED[bug]
    path = plant(tmp_path, source, old, new)
    d = failing(path).diagnostics
    assert d.blame is not None, d.blame_note
    assert d.blame.line == line_of(path, new), d.blame.message
    assert d.blame.message.startswith(f"line {d.blame.line} `")
    assert words in d.blame.message


def test_a_variable_that_breaks_the_naming_convention_is_not_blamed(tmp_path: Path) -> None:
    # lstm's `di` holds the gradient of the input gate's pre-activation, not of `i`: it differs
    # from autograd's gradient of `i` (wrong) and comes before the bug, yet putting autograd's
    # value in its place makes things worse, so the blame goes on to the real line.
    path = plant(tmp_path, LAYERS / "lstm_step.toml", "db = sum(da, axis=0)", "db = mean(da, axis=0)")
    d = failing(path).diagnostics
    status = {i.name: i.status for i in d.intermediates}
    assert status["di"] == "wrong" and status["da"] == "right"
    assert d.blame is not None and d.blame.line == line_of(path, "db = mean(da, axis=0)")


def test_blame_is_unavailable_for_callables_but_hints_are_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _buggy_module_case(
        tmp_path,
        monkeypatch,
        "max_pool_naive",
        "dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]",
        "dx[nn, cc, hs + a, ws + k] = dout[nn, cc, i, j]",
    )
    d = failing(path).diagnostics
    assert d.blame is None
    assert d.blame_note is not None and d.blame_note.startswith("blame unavailable: the backward is a callable")
    assert d.hints


def test_only_a_failing_case_is_diagnosed() -> None:
    for name in ("compound_sigmoid", "matmul"):
        assert check_case(load_case(CASES / f"{name}.toml"), RunOptions()).diagnostics is None


# --- hints, each on a real planted bug --------------------------------------------------


def hint_kinds(path: Path) -> dict[str, str]:
    """kind -> the first hint of that kind (the shape hints come before the program's fixes)."""
    d = failing(path).diagnostics
    found: dict[str, str] = {}
    for h in d.hints:
        found.setdefault(h.kind, h.message)
    return found


def test_hint_constant_ratio_names_the_factor(tmp_path: Path) -> None:
    kinds = hint_kinds(plant(tmp_path, LAYERS / "softmax_cross_entropy.toml", "* (dloss / N)", "* dloss"))
    assert "manual = 5 x autograd everywhere: an extra factor of 5" in kinds["ratio"]
    assert "5 is the length of axis 0 of `scores`" in kinds["ratio"]


def test_hint_sign_flip(tmp_path: Path) -> None:
    kinds = hint_kinds(
        plant(tmp_path, LAYERS / "tanh.toml", "dx = (1 - out ** 2) * dout", "dx = (out ** 2 - 1) * dout")
    )
    assert kinds["sign"] == "dx: manual = -autograd: the sign is flipped"


def test_hint_transposed_match(tmp_path: Path) -> None:
    kinds = hint_kinds(plant(tmp_path, LAYERS / "affine.toml", "dw = xr.T @ dout", "dw = dout.T @ xr"))
    assert "manual is autograd with its last two axes swapped" in kinds["transpose"]


def test_hint_wrong_reduction_axis_of_a_program(tmp_path: Path) -> None:
    path = plant(
        tmp_path,
        LAYERS / "layernorm.toml",
        "mean(dxhat, axis=1, keepdims=True) -",
        "mean(dxhat, axis=0, keepdims=True) -",
    )
    kinds = hint_kinds(path)
    assert "mean(dxhat, axis=1, keepdims=True) - xhat" in kinds["reduction_axis"]
    assert f"line {line_of(path, 'axis=0, keepdims=True) -')} as `dx = " in kinds["reduction_axis"]


NUMPY_LAYER = """
import numpy as np
import torch


def forward(x, w, b):
    return x @ w + b, (x, w)


def backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=1)  # the bias summed over the wrong axis


def reference(x, w, b):
    return x @ w + b
"""

NUMPY_CASE = """
name = "square_affine"
output = "out"
upstream = {{ random = "normal", shape = [4, 4], seed = 3 }}

[inputs]
x = {{ random = "normal", shape = [4, 4], seed = 0 }}
w = {{ random = "normal", shape = [4, 4], seed = 1 }}
b = {{ random = "normal", shape = [4], seed = 2 }}

[forward]
callable = "{module}:forward"
returns = "cache"

[backward]
callable = "{module}:backward"

[reference]
callable = "{module}:reference"
array = "torch"
"""


def test_hint_wrong_reduction_axis_of_a_callable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"square_affine_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(NUMPY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    allow_callables(tmp_path, monkeypatch, f"{module}.*")
    path = tmp_path / "square_affine.toml"
    path.write_text(NUMPY_CASE.format(module=module))
    d = failing(path).diagnostics
    (hint,) = [h for h in d.hints if h.input == "b"]
    assert hint.kind == "reduction_axis"
    assert hint.message == (
        "db: manual is the sum of the upstream gradient `dout` over axes [1], autograd the sum over axes [0]:"
        " a reduction over the wrong axis"
    )


def _buggy_module_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layer: str, old: str, new: str) -> Path:
    """The layer's case with its callables from a copy of naive_layers.py holding one bug
    (the first occurrence of ``old``)."""
    module = f"buggy_layers_{uuid.uuid4().hex[:8]}"
    source = Path(gradcheck_suite.naive_layers.__file__).read_text()
    assert old in source
    (tmp_path / f"{module}.py").write_text(source.replace(old, new, 1))
    monkeypatch.syspath_prepend(str(tmp_path))
    allow_callables(tmp_path, monkeypatch, f"{module}.*")
    path = tmp_path / f"{layer}.toml"
    path.write_text((LAYERS / f"{layer}.toml").read_text().replace("gradcheck_suite.naive_layers:", f"{module}:"))
    return path


def test_hint_overlapping_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _buggy_module_case(
        tmp_path,
        monkeypatch,
        "max_pool_naive",
        "dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]",
        "dx[nn, cc, hs + a, ws + k] = dout[nn, cc, i, j]",
    )
    kinds = hint_kinds(path)
    assert kinds["region"] == (
        "dx: every disagreeing element lies where the 3x3 windows at stride 2 overlap (in 2 or more windows):"
        " an accumulation that overwrites (`=` for `+=`)?"
    )


def test_hint_zeros_where_values_were_expected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _buggy_module_case(  # an off-by-one loop never visits the batch's last image
        tmp_path, monkeypatch, "max_pool_naive", "for nn in range(n):", "for nn in range(n - 1):"
    )
    result = failing(path)
    kinds = {h.kind: h.message for h in result.diagnostics.hints}
    # every element the last image's windows pick (their argmax) is left at 0
    n = int((result.inputs[0].grads["autograd"][1] != 0).sum())
    assert n > 0
    assert kinds["zeros"] == (
        f"dx: manual is 0 at {n} of the {n} disagreeing elements, where autograd is not: never written there"
    )
    assert kinds["region"] == "dx: the disagreement is confined to index(es) [1] of axis 0 (of 2)"


def test_hint_border_of_a_padded_conv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the forward pads with edge values instead of zeros: the numeric source differentiates it,
    # so its dx differs from the other two's only within the padding's reach of the border
    path = _buggy_module_case(
        tmp_path,
        monkeypatch,
        "conv_naive",
        "xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))",
        'xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")',
    )
    result = failing(path)
    x = next(i for i in result.inputs if i.name == "x")
    assert x.odd_one_out == "numeric"
    (hint,) = [h for h in result.diagnostics.hints if h.input == "x"]
    assert (hint.pair, hint.kind) == ("manual-numeric", "region")
    assert hint.message == (
        "dx: the disagreement is confined to the border: within 1 element(s) of the edges of the last two axes"
        " (the padding is 1)"
    )


# --- where the diagnostics are shown ----------------------------------------------------


def test_terminal_one_line_and_verbose_table(tmp_path: Path, cli) -> None:
    path = plant(tmp_path, CASES / "compound_sigmoid.toml", DROPPED, "")
    line = line_of(path, "dx += 1 * dnum")
    code, out, _ = cli("run", str(path), "--no-reports")
    assert code == 1
    assert f"compound_sigmoid: line {line} `dx += 1 * dnum`: dxpy and dnum are right, dx is wrong here" in out
    assert "<- blamed" not in out
    code, out, _ = cli("run", str(path), "--no-reports", "-v")
    rows = [r.split() for r in out.splitlines() if r.split()[:2] in ([str(line), "dx"], ["26", "dsigx"])]
    assert rows == [
        ["26", "dsigx", "sigx", "right", "0.00e+00"],
        [str(line), "dx", "x", "WRONG", "1.71e-02", "<-", "blamed"],
    ]
    assert "hint (manual-autograd, missing_term): dx: autograd - manual is the term through forward line" in out


def test_report_json_and_junit_carry_the_diagnostics(tmp_path: Path, cli) -> None:
    path = plant(tmp_path, CASES / "compound_sigmoid.toml", DROPPED, "")
    shutil.copy(CASES / "product.toml", tmp_path / "product.toml")
    out = tmp_path / "out"
    code, _, _ = cli("run", str(tmp_path), "--report-dir", str(out))
    assert code == 1
    data = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(json_report.load_schema()).validate(data)
    by = {c["case"]: c for c in data["cases"]}
    assert "diagnostics" not in by["product"]  # a passing case carries none
    d = by["compound_sigmoid"]["diagnostics"]
    assert d["blame"]["line"] == line_of(path, "dx += 1 * dnum")
    assert d["blame"]["statement"] == "dx += 1 * dnum"
    assert {
        "name": "dx",
        "line": d["blame"]["line"],
        "status": "wrong",
        "max_rel": pytest.approx(0.01707, rel=1e-3),
    } in d["blame"]["intermediates"]
    assert d["hints"][0] | {"message": ""} == {
        "input": "x",
        "pair": "manual-autograd",
        "kind": "missing_term",
        "message": "",
    }
    # the schema holds the shape: a status outside right/wrong/unknown is refused
    bad = json.loads(json.dumps(data))
    next(c for c in bad["cases"] if c["case"] == "compound_sigmoid")["diagnostics"]["blame"]["intermediates"][0][
        "status"
    ] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_report.load_schema())
    junit = ET.parse(out / "junit.xml").getroot()
    (failure,) = junit.iter("failure")
    assert f"blame: line {d['blame']['line']} `dx += 1 * dnum`" in (failure.text or "")
    assert "hint (manual-autograd, missing_term)" in (failure.text or "")
    # report.html (issue 15) draws the same blame from report.json
    assert "dx misses the term through forward line" in (out / "report.html").read_text()


def test_the_failure_a_test_shows_names_the_line(tmp_path: Path) -> None:
    path = plant(tmp_path, CASES / "compound_sigmoid.toml", DROPPED, "")
    text = explain(failing(path))
    assert f"line {line_of(path, 'dx += 1 * dnum')} `dx += 1 * dnum`" in text
    assert "<- blamed" in text


def test_the_plugin_shows_the_blamed_line(pytester: pytest.Pytester) -> None:
    shutil.copytree(CASES, pytester.path / "cases", ignore=shutil.ignore_patterns("layers"))
    pytester.makefile(".toml", pyproject='[tool.pytest.ini_options]\ngradcheck_paths = ["cases"]\n')
    target = pytester.path / "cases" / "compound_sigmoid.toml"
    target.write_text(target.read_text().replace(DROPPED, ""))
    result = pytester.runpytest("-k", "compound_sigmoid")
    result.assert_outcomes(failed=1)
    line = line_of(target, "dx += 1 * dnum")
    result.stdout.fnmatch_lines(
        [
            f"compound_sigmoid: line {line} `dx += 1 * dnum`: dxpy and dnum are right, dx is wrong here*",
            f"{line}*dx*x*WRONG*<- blamed",
            "hint (manual-autograd, missing_term)*",
        ]
    )


def test_check_api_gets_hints_too() -> None:
    import torch

    from gradcheck_suite import check

    def softplus(x):
        return torch.log1p(torch.exp(x))

    result = check(softplus, {"x": torch.linspace(-3, 3, 7)}, backward=lambda g, x: 2 * g * torch.sigmoid(x))
    assert result.verdict == "fail" and result.diagnostics is not None
    assert result.diagnostics.blame_note.startswith("blame unavailable: the backward is a callable")
    (hint,) = result.diagnostics.hints
    assert (hint.input, hint.pair, hint.kind) == ("x", "manual-autograd", "ratio")
    assert hint.message == "dx: manual = 2 x autograd everywhere: an extra factor of 2"
    assert "hint (manual-autograd, ratio): dx: manual = 2 x autograd everywhere" in result.explain()


def test_a_diagnosis_that_breaks_leaves_the_verdict_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradcheck_suite._diagnose as diagnose

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(diagnose, "Analysis", broken)
    monkeypatch.setattr(diagnose, "array_hints", broken)
    result = failing(plant(tmp_path, CASES / "compound_sigmoid.toml", DROPPED, ""))
    assert result.odd_one_out == "manual"
    assert result.diagnostics.blame is None and result.diagnostics.hints == ()
    assert result.diagnostics.blame_note == "blame failed: RuntimeError: boom"


def test_a_term_dropped_from_batchnorm_is_named_by_its_forward_line(tmp_path: Path) -> None:
    # the mean's path: dx lacks the term that flows through mu = mean(x, axis=0)
    path = plant(tmp_path, LAYERS / "batchnorm.toml", "(dxhat - mean(dxhat, axis=0) - xhat *", "(dxhat - xhat *")
    d = failing(path).diagnostics
    mu = line_of(path, "mu = mean(x, axis=0)")
    assert d.blame is not None and d.blame.line == line_of(path, "dx = (dxhat - xhat *")
    assert f"dx misses the term through forward line {mu} `mu = mean(x, axis=0)`" in d.blame.message
    # the difference is that term, broadcast over the batch: constant along axis 0
    assert "dx - autograd's does not vary along axis 0" in d.blame.message
    assert any(h.kind == "missing_term" and f"forward line {mu}" in h.message for h in d.hints)


def test_hint_zero_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _buggy_module_case(  # the accumulation dropped: dx stays np.zeros_like(x)
        tmp_path,
        monkeypatch,
        "max_pool_naive",
        "dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]",
        "pass",
    )
    assert hint_kinds(path) == {
        "zeros": "dx: manual is zero everywhere and autograd is not: the gradient is never written, or never reaches it"
    }


def test_a_passing_run_imports_none_of_it() -> None:
    # the default path stays as fast as before: diagnostics and mutation load only when used
    import subprocess
    import sys

    code = (
        "import sys; from gradcheck_suite._cli import main; "
        f"rc = main(['run', {str(CASES / 'product.toml')!r}, '--no-reports']); "
        "print(sorted(m for m in sys.modules if m.startswith(('gradcheck_suite._diagnose', "
        "'gradcheck_suite._mutate', 'gradcheck_suite._report.calls', 'gradcheck_suite._report.mutation'))), rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[] 0"
