"""`gradcheck show` on callable cases: the call, its arguments and results, not empty sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CASES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def section(out: str, name: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index(f"{name}:") + 1
    end = next((k for k in range(start, len(lines)) if not lines[k].startswith(" ")), len(lines))
    return lines[start:end]


def test_show_a_cs231n_pair(cli) -> None:
    code, out, _ = cli("show", "max_pool_naive", str(CASES / "layers"))
    assert code == 0
    forward = section(out, "forward")
    assert forward[0] == "  out, cache = gradcheck_suite.naive_layers:max_pool_forward_naive(x, pool_param)"
    assert forward[1].startswith("      x = [2x3x5x7] float64 min -2.352 max 2.601 mean ")
    assert forward[2] == "      pool_param = {'pool_height': 3, 'pool_width': 3, 'stride': 2}"
    assert forward[3].startswith("   -> out = [2x3x2x3] float64 min 0.4727 max 2.601")
    assert forward[4] == "   -> cache = tuple of 2: ([2x3x5x7], dict)"
    backward = section(out, "backward")
    assert backward[0] == "  dx = gradcheck_suite.naive_layers:max_pool_backward_naive(dout, cache)"
    assert backward[1].startswith("      dout = [2x3x2x3] float64 ")
    assert backward[-1].startswith("   -> dx = [2x3x5x7] float64 ")


def test_show_an_autograd_function(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    code, out, _ = cli("show", "mylayers_swish", str(EXAMPLES / "cases"))
    assert code == 0
    assert section(out, "forward")[0] == "  out = mylayers.torch_layers:Swish.apply(x)"
    backward = section(out, "backward")
    assert backward[0] == "  dx = mylayers.torch_layers:Swish.backward(ctx, dout)  (through autograd)"
    assert backward[-1].startswith("   -> dx = [3x4] float64 min ")


def test_show_a_program_still_shows_its_lines(cli) -> None:
    code, out, _ = cli("show", "product", str(CASES))
    assert code == 0
    assert section(out, "forward") == ["    11  z = x * y                                 # -12.0"]
