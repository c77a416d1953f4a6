"""Numpy callables for the tests of issue 16 (tests/test_first_pass.py, test_callable_calls.py,
test_time_budget.py): a package written to a temporary folder, allowed there, and case files
that name its functions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

__all__ = ["MODULE", "calls_made", "evaluations", "install", "speed_case"]

# A module of numpy callables, each forward with its hand-written backward. `calls.txt` gets
# one line per call: the process id and the leading shape of the first argument.
MODULE = '''
import os, time
import numpy as np

LOG = os.environ.get("SPEEDPKG_LOG")

def _log(x):
    if LOG:
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()} {np.shape(x)[0] if np.ndim(x) else 0}\\n")

def layer(x, W):
    """Takes a batch: np.tanh(x @ W) broadcasts over a leading axis."""
    _log(x)
    return np.tanh(x @ W)

def layer_backward(dout, x, W):
    d = dout * (1 - np.tanh(x @ W) ** 2)
    return d @ W.T, x.T @ d

def layer_backward_scaled(dout, x, W):
    dx, dW = layer_backward(dout, x, W)
    return dx * (1 + SCALE), dW * (1 + SCALE)

SCALE = float(os.environ.get("SPEEDPKG_SCALE", "0"))

def single(x, W):
    """Refuses a batch: one call per perturbation."""
    if np.ndim(x) != 2:
        raise ValueError("one matrix at a time")
    _log(x)
    return np.tanh(x @ W)

def slow(x, W):
    """A call that takes a while and refuses batches of any kind."""
    if np.ndim(x) != 2 or np.shape(x)[0] != 6:
        raise ValueError("one matrix at a time")
    _log(x)
    time.sleep(0.002)
    return np.tanh(x @ W)

def sluggish(x, W):
    if np.ndim(x) != 2 or np.shape(x)[0] != 6:
        raise ValueError("one matrix at a time")
    time.sleep(0.05)
    return np.tanh(x @ W)

def centred(x, W):
    """Mixes rows (a batch norm's mean over them): no batch of rows may be trusted."""
    _log(x)
    return np.tanh((x - x.mean(axis=0)) @ W)

def centred_backward(dout, x, W):
    n = x.shape[0]
    c = x - x.mean(axis=0)
    d = dout * (1 - np.tanh(c @ W) ** 2)
    dc = d @ W.T
    return dc - dc.mean(axis=0), c.T @ d

def affine(x, w, b):
    """x @ w + b: a stacked b broadcasts against x's rows only when their counts match."""
    _log(x)
    return x @ w + b

def affine_backward(dout, x, w, b):
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)

def fragile(x, W):
    """Batches of a few copies work; larger ones raise."""
    if np.ndim(x) == 3 and x.shape[0] > 10:
        raise MemoryError("too many copies at once")
    return np.tanh(x @ W)

lam = lambda x, W: (time.sleep(0.002), np.tanh(x @ W))[1] if np.ndim(x) == 2 and np.shape(x)[0] == 6 else 1 / 0
'''


def speed_case(folder: Path, name: str, forward: str, backward: str | None, shape_x: tuple[int, int] = (6, 5)) -> Path:
    n, d = shape_x
    lines = [
        f'name = "{name}"',
        'output = "y"',
        f'upstream = {{ random = "normal", shape = [{n}, 3], seed = 3 }}',
        "[inputs]",
        f'x = {{ random = "normal", shape = [{n}, {d}], seed = 1 }}',
        f'W = {{ random = "normal", shape = [{d}, 3], seed = 2 }}',
        "[forward]",
        f'callable = "speedpkg:{forward}"',
    ]
    if backward:
        lines += ["[backward]", f'callable = "speedpkg:{backward}"']
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package in ``tmp_path``, importable and allowed (conftest's ``speedpkg`` fixture)."""
    (tmp_path / "speedpkg.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPEEDPKG_LOG", str(tmp_path / "calls.txt"))
    sys.modules.pop("speedpkg", None)
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ncallables = ["speedpkg.*"]\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def calls_made(folder: Path) -> list[tuple[int, int]]:
    log = folder / "calls.txt"
    if not log.exists():
        return []
    return [tuple(int(v) for v in line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def evaluations(result) -> int:
    note = next(n for n in result.sources["numeric"].notes if "evaluations of phi" in n)
    return int(note.split()[0])
