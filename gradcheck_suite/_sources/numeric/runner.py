"""Evaluating phi, the scalar every source differentiates, over batches of perturbed inputs.

Every evaluation is batched: the perturbed copies of an input (for every element, offset,
direction and sample point) go through the forward as one ``torch.func.vmap`` call per chunk,
and chunks are sized from a measured per-evaluation memory cost so that one chunk stays within
the memory budget. Evaluation is in float64 (complex128 for the complex step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from torch.func import vmap
from torch.overrides import TorchFunctionMode

from ..._backends import TorchBackend
from ..._case import Case
from .calls import CallEvaluator, Rows

__all__ = [
    "CHUNK_BYTES",
    "Fallback",
    "Objective",
    "Progress",
    "Runner",
    "collect_notes",
    "evaluation_cost",
    "looped",
    "note",
    "vmap_or_loop",
]

# A chunk never holds more than this, whatever the budget: past it batching amortises no more
# per-call overhead, and the chunk's tensors spill the caches (64x64 complex matmuls, 8192
# evaluations on two cores: 0.22 s in chunks of 16 MiB per tensor, 0.6 s in chunks of 64 MiB).
# The whole 64x64 full check, measured again after round two (median of 5, twice): 0.257 s at
# a 16 MiB cap, 0.254 and 0.26 at 32, 0.31 and 0.30 at 128, 0.35 at 256.
CHUNK_BYTES = 32 << 20

Progress = Callable[[int, int], None]  # (evaluations done, evaluations planned)


class Counter(TorchFunctionMode):
    """Adds up the bytes of every tensor each torch call takes and returns.

    Inputs count too: under vmap an operation may materialise a batched copy of an operand
    that only one side of it varies (matmul expands the unbatched one for bmm), so the sum
    of operands and results bounds what one evaluation can hold at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in (*args, *(out if isinstance(out, (tuple, list)) else (out,))):
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


class Objective:
    """phi(inputs) = sum over outputs of sum(upstream * output): the scalar whose gradient
    every source reports.

    Holds the inputs at every point as tensors of shape (points, *shape).
    """

    def __init__(self, case: Case, points: Sequence[Mapping[str, np.ndarray]], device: str, complex_: bool) -> None:
        self.complex = complex_
        self.case = case
        self.be = TorchBackend(torch.complex128 if complex_ else torch.float64, device)
        self.names = list(points[0])
        self.base = {
            k: self.be.asarray(np.stack([np.asarray(p[k], dtype=np.float64) for p in points])) for k in self.names
        }
        self.points = len(points)
        # one upstream per output (None: ones)
        self.upstreams = {o: None if u is None else self.be.asarray(u) for o, u in case.upstreams.items()}

    def __call__(self, inputs: Mapping[str, torch.Tensor], magnitudes: bool = True) -> tuple[torch.Tensor, ...]:
        """phi, and (``magnitudes``) the absolute sums of the real and imaginary parts of its terms."""
        values = self.case.forward.run(inputs, self.be)
        outs = [self.be._t(values[o]) for o in self.upstreams]
        terms = [out if up is None else up * out for out, up in zip(outs, self.upstreams.values(), strict=True)]
        phi = torch.sum(terms[0])
        for t in terms[1:]:
            phi = phi + torch.sum(t)
        if not magnitudes:  # most evaluations need phi alone: skip two passes over the output
            return (phi,)

        def total(parts: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.stack([torch.sum(torch.abs(t)) for t in parts]).sum()

        if self.complex:
            return phi, total([t.real for t in terms]), total([t.imag for t in terms])
        size = total(terms)
        return phi, size, torch.zeros((), dtype=phi.dtype, device=phi.device)

    def probe(self) -> tuple[float, float, int]:
        """phi and its scale at the first point, and the bytes one evaluation touches.

        The probe runs in float64 even for the complex step: at the unperturbed point the
        imaginary parts are zero, and a complex evaluation holds the same tensors at twice
        the bytes, for up to four times the work (a 1024 matmul: 16 ms real, 60 ms complex).
        """
        real = Objective.__new__(Objective)
        real.complex, real.case = False, self.case
        real.be = TorchBackend(torch.float64, self.be.device)
        real.upstreams = {o: None if u is None else u.real.contiguous() for o, u in self.upstreams.items()}
        inputs = {k: v[0].real.contiguous() for k, v in self.base.items()}
        with Counter() as counter:
            phi, scale, _ = real(inputs)
        return float(phi), float(scale), counter.bytes * (2 if self.complex else 1)

    def input_bytes(self, name: str) -> int:
        v = self.base[name]
        return int(v[0].numel() * v.element_size())


def evaluation_cost(obj: Objective, name: str | None, forward_bytes: int, direction: bool = False) -> int:
    """Bytes one evaluation in a vmapped chunk holds: the forward's tensors (operands and
    results of every call), the perturbed copy of ``name`` (twice for a direction, whose
    scaled copy is a temporary), and the gathered other inputs when points differ."""
    cost = forward_bytes + 64
    if name is not None:
        cost += obj.input_bytes(name) * (2 if direction else 1)
    if obj.points > 1:
        cost += sum(obj.input_bytes(k) for k in obj.names if k != name)
    return cost


class Runner:
    """Evaluates phi over rows of perturbations in chunks within the memory budget."""

    def __init__(
        self,
        obj: Objective,
        forward_bytes: int,
        budget: int,
        progress: Progress | None,
        planned: int,
        calls: CallEvaluator | None = None,
    ):
        self.obj = obj
        self.forward_bytes = forward_bytes
        self.budget = budget
        self.progress = progress
        self.planned = planned
        self.done = 0
        self.largest_chunk = 0
        self.fallback = Fallback(_label(obj.case))
        # a callable that does not run under vmap: its own evaluator (.calls)
        self.calls = calls

    def close(self) -> None:
        """Stop any worker processes (a no-op for programs)."""
        if self.calls is not None:
            self.calls.close()

    def chunk(self, name: str | None, direction: bool = False) -> int:
        cost = evaluation_cost(self.obj, name, self.forward_bytes, direction)
        return max(1, min(self.budget, CHUNK_BYTES) // cost)

    def _tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.planned)

    def run(
        self,
        name: str | None,
        point: np.ndarray,
        offset: np.ndarray,
        element: np.ndarray | None = None,
        direction: np.ndarray | None = None,
        directions: torch.Tensor | None = None,
        magnitudes: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """phi at base[point[r]] + offset[r] * (e_element[r] or directions[direction[r]]) for each row r.

        ``offset`` is real; the complex step passes it as the imaginary part. Returns phi and
        the absolute sums of the real and imaginary parts of its terms (``magnitudes``; else
        zeros), one per row.
        """
        obj = self.obj
        rows = len(point)
        if self.calls is not None:
            spec = Rows(
                name,
                np.asarray(point),
                np.asarray(offset, dtype=np.float64),
                None if element is None else np.asarray(element),
                None if direction is None else np.asarray(direction),
                None if directions is None else directions.detach().cpu().numpy().reshape(len(directions), -1),
            )
            phi, terms = self.calls.run(spec)
            self.largest_chunk = max(self.largest_chunk, self.calls.largest_batch, 1)
            return phi, (terms if magnitudes else np.zeros(rows)), np.zeros(rows)
        out = [np.empty(rows, dtype=np.complex128 if obj.complex else np.float64), np.zeros(rows), np.zeros(rows)]
        size = self.chunk(name, directions is not None)
        self.largest_chunk = max(self.largest_chunk, min(size, rows))
        others = [k for k in obj.names if k != name]
        batched_others = obj.points > 1
        scale = 1j if obj.complex else 1.0

        def one(x: torch.Tensor | None, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
            env = dict(zip(others, rest, strict=True)) if batched_others else {k: obj.base[k][0] for k in others}
            if name is not None and x is not None:
                env[name] = x
            return obj(env, magnitudes)

        in_dims = (0 if name is not None else None, *([0] * len(others) if batched_others else []))
        f = vmap_or_loop(one, in_dims, self.fallback) if obj.case.forward.vmap else looped(one, in_dims)
        for start in range(0, rows, size):
            stop = min(rows, start + size)
            p = torch.as_tensor(point[start:stop], device=obj.be.device)
            x = None
            if name is not None:
                x = obj.base[name][p]  # a fresh (chunk, *shape) copy: the only big allocation made here
                flat = x.view(stop - start, -1)
                off = torch.as_tensor(offset[start:stop], device=obj.be.device) * scale
                if element is not None:
                    # one element per row: an index_put on the copy, no dense (rows, n) delta
                    flat[torch.arange(stop - start), torch.as_tensor(element[start:stop])] += off
                else:
                    assert direction is not None and directions is not None
                    for r in range(stop - start):
                        flat[r].add_(directions[int(direction[start + r])].view(-1) * off[r])
            rest = [obj.base[k][p] for k in others] if batched_others else []
            if name is None and not batched_others:
                # nothing varies between rows: one evaluation serves them all
                vals = [v.expand(stop - start) for v in obj({k: obj.base[k][0] for k in others}, magnitudes)]
            else:
                vals = list(f(x, *rest))
            for dst, v in zip(out, vals, strict=False):  # phi alone fills only the first
                v = v.detach().cpu()
                dst[start:stop] = v.numpy() if dst.dtype == np.complex128 else v.real.numpy()
            # drop this chunk's copies before the next chunk allocates its own
            del x, rest, vals
            self._tick(stop - start)
        return out[0], out[1], out[2]


def looped(one: Callable[..., tuple[torch.Tensor, ...]], in_dims: tuple[int | None, ...]) -> Callable[..., Any]:
    """vmap's contract, one row at a time: callables (numpy code, custom Functions) may not
    run under vmap."""

    def f(*args: Any) -> tuple[torch.Tensor, ...]:
        rows = next(len(a) for a, d in zip(args, in_dims, strict=True) if d == 0)
        results = [one(*(a[r] if d == 0 else a for a, d in zip(args, in_dims, strict=True))) for r in range(rows)]
        return tuple(torch.stack(parts) for parts in zip(*results, strict=True))

    return f


# Notes for the report, gathered by whoever runs a source inside collect_notes(): the numeric
# source's result type is built elsewhere, and a note must not need a change there.
_NOTES: ContextVar[list[str] | None] = ContextVar("gradcheck_numeric_notes", default=None)


@contextmanager
def collect_notes() -> Iterator[list[str]]:
    """The notes (one line each) that evaluations made inside the block left for the report."""
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


def note(text: str) -> None:
    """Leave a line for the report, where a collect_notes() block listens."""
    notes = _NOTES.get()
    if notes is not None and text not in notes:
        notes.append(text)


def _label(case: Case) -> str:
    call = case.forward.call
    return f"`{call.target}`" if call is not None else "the forward program"


class Fallback:
    """Whether one case's forward has been found not to run under vmap, and why.

    Shared by every batch of a case, so vmap is tried once (on the first chunk) rather than
    on every input."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.reason: str | None = None

    def give_up(self, exc: BaseException) -> None:
        # a CaseError wraps the user's exception; its first line says why
        exc = exc.__cause__ or exc
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.reason = f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
        note(
            f"{self.label} does not run under torch.func.vmap ({self.reason}):"
            " evaluated one perturbation at a time instead"
        )


def vmap_or_loop(
    one: Callable[..., tuple[torch.Tensor, ...]], in_dims: tuple[int | None, ...], fallback: Fallback
) -> Callable[..., Any]:
    """``vmap(one)``, or where the function cannot run under vmap (a classic autograd.Function,
    ``.item()``, in-place writes, control flow on values) the same rows one at a time."""
    batched = vmap(one, in_dims=in_dims)
    loop = looped(one, in_dims)

    def f(*args: Any) -> Any:
        if fallback.reason is None:
            try:
                return batched(*args)
            except Exception as exc:  # noqa: BLE001 - any failure under vmap: the loop decides
                fallback.give_up(exc)
        return loop(*args)

    return f
