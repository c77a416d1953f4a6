"""Evaluating phi through a Python callable: batched where the callable takes a batch, across
processes where it is slow, and in float64 numpy arrays throughout.

A program runs under ``torch.func.vmap``; a callable (cs231n-style numpy code, a custom
Function) in general does not, so each perturbed input is one call. Three things make that
cheaper here, each only where it is safe:

* **Batched calls.** Many numpy callables take a batch: a new leading axis on every input
  (``np.tanh(x @ W)`` broadcasts over it: *stack*), or more rows along one input's own
  leading axis, each row's output independent of the others (cs231n's ``(N, C, H, W)``
  layers: *rows*). That the callable does is never assumed: the first rows of the first run
  of each input are evaluated one call at a time and then as one batched call, and a
  convention is used only when its outputs are bit for bit those of the single calls. A batch
  norm over rows, a shape it does not expect or an exception rules it out; the rows are then
  evaluated one call each.
* **Processes.** Where the single calls left would take more than ``POOL_SECONDS``, they are
  spread over ``jobs`` worker processes forked from this one (:class:`Workers`). The workers
  inherit the callable this process already imported, after the allow-list let it through
  (docs/trust.md): they import nothing by name and unpickle no code, only rows of numbers
  (which point, which element, which offset), and they send back values of phi. On a
  platform without a safe ``fork`` the calls stay in this process, with a note.
* **No torch on the way.** phi is summed in numpy from the callable's outputs; a torch
  callable gets tensors made from the numpy inputs, as the other sources give it.

Each chunk of rows tells the progress bar its evaluations as it completes; the measured time
of one call sizes the chunks (``TASK_SECONDS``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._backends import NumpyBackend
from ..._case import Case

__all__ = [
    "MAX_BATCH",
    "POOL_SECONDS",
    "PROBE_ROWS",
    "TASK_SECONDS",
    "CallEvaluator",
    "Rows",
    "Workers",
    "default_jobs",
    "parallel_refusal",
]

# Rows of the first run of an input that are evaluated both ways to decide on batching.
PROBE_ROWS = 3
# The most perturbed copies one batched call holds (fewer where the arrays are large).
MAX_BATCH = 512
BATCH_BYTES = 64 << 20
# Spread single calls over processes only when they would take longer than this in one: a
# fork costs a few milliseconds per worker.
POOL_SECONDS = 0.25
# About how long one chunk of single calls runs before the progress bar hears of it.
TASK_SECONDS = 0.1
# How often a waiting parent wakes up: a --timeout raised into it gets through in between.
WAIT_SECONDS = 0.05


def default_jobs() -> int:
    """The cores this process may run on (--jobs by default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_refusal() -> str | None:
    """None where worker processes can be forked, else why not."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        # macOS forbids fork after some system frameworks start; Windows has none
        return f"no safe fork on {sys.platform}"
    return None


@dataclass(frozen=True)
class Rows:
    """Which perturbations to evaluate: row r is phi at base[point[r]] + offset[r] times
    e_element[r] (or times directions[direction[r]]) in input ``name`` (None: unperturbed)."""

    name: str | None
    point: np.ndarray
    offset: np.ndarray
    element: np.ndarray | None = None
    direction: np.ndarray | None = None
    directions: np.ndarray | None = None  # (K, n) float64

    def __len__(self) -> int:
        return len(self.point)

    def take(self, idx: np.ndarray | slice) -> Rows:
        return Rows(
            self.name,
            self.point[idx],
            self.offset[idx],
            None if self.element is None else self.element[idx],
            None if self.direction is None else self.direction[idx],
            self.directions,
        )


class CallEvaluator:
    """phi of one case's callable forward at rows of perturbations of its points."""

    def __init__(
        self,
        case: Case,
        points: Sequence[Mapping[str, np.ndarray]],
        jobs: int,
        tick: Callable[[int], None],
        note: Callable[[str], None],
    ) -> None:
        self.case = case
        self.names = list(points[0])
        self.base = {k: np.stack([np.asarray(p[k], dtype=np.float64) for p in points]) for k in self.names}
        self.upstreams = {o: None if u is None else np.asarray(u, dtype=np.float64) for o, u in case.upstreams.items()}
        self.backend = NumpyBackend("float64")
        self.jobs = max(1, jobs)
        self.tick = tick
        self.note = note
        self.batching: dict[str, str] = {}  # per input: "stack", "rows" or "single"
        self.seconds: float | None = None  # one single call, as last measured
        self.largest_batch = 0
        self.workers: Workers | None = None
        self._refused = False
        self._shapes: list[tuple[int, ...]] = []
        self._label = f"`{case.forward.label}`"

    # -- calls ------------------------------------------------------------------------------

    def _inputs(self, rows: Rows) -> np.ndarray:
        """The perturbed copies of ``rows.name``, shaped (rows, *shape)."""
        assert rows.name is not None
        x = self.base[rows.name][rows.point]  # a fresh copy
        flat = x.reshape(len(rows), -1)
        if rows.element is not None:
            flat[np.arange(len(rows)), rows.element] += rows.offset
        else:
            assert rows.direction is not None and rows.directions is not None
            flat += rows.directions[rows.direction] * rows.offset[:, None]
        return x

    def _outputs(self, env: Mapping[str, Any]) -> list[np.ndarray]:
        values = self.case.forward.run(env, self.backend)
        return [np.asarray(values[o], dtype=np.float64) for o in self.upstreams]

    def _phi(self, outs: Sequence[np.ndarray], batch: int) -> tuple[np.ndarray, np.ndarray]:
        """phi and the absolute sum of its terms per row, from outputs shaped (batch, ...): the
        same reduction for a batch and for one call, so that both give the same bits."""
        phi = np.zeros(batch)
        size = np.zeros(batch)
        for out, up in zip(outs, self.upstreams.values(), strict=True):
            terms = (out if up is None else up * out).reshape(batch, -1)
            phi = phi + np.sum(terms, axis=1)
            size = size + np.sum(np.abs(terms), axis=1)
        return phi, size

    def _single(self, rows: Rows) -> tuple[np.ndarray, np.ndarray, list[list[np.ndarray]]]:
        """One call per row: phi, its terms' size, and each row's outputs."""
        phi, size, outs = np.empty(len(rows)), np.empty(len(rows)), []
        x = None if rows.name is None else self._inputs(rows)
        for r in range(len(rows)):
            env = {k: self.base[k][int(rows.point[r])] for k in self.names}
            if x is not None and rows.name is not None:
                env[rows.name] = x[r]
            start = time.perf_counter()
            out = self._outputs(env)
            self.seconds = time.perf_counter() - start
            phi[r : r + 1], size[r : r + 1] = self._phi([o[None] for o in out], 1)
            outs.append(out)
        return phi, size, outs

    def _batched(self, rows: Rows, how: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """One call for all ``rows``; its outputs reshaped to (rows, *one call's shape).

        ``stack``: every input gets a leading axis (each row at its own point); ``rows``: the
        copies of the perturbed input go end to end along its first axis (one point only)."""
        assert rows.name is not None
        B = len(rows)
        x = self._inputs(rows)
        if how == "stack":
            env = {k: self.base[k][rows.point] for k in self.names}
            env[rows.name] = x
        else:
            env = {k: self.base[k][int(rows.point[0])] for k in self.names}
            env[rows.name] = x.reshape(B * x.shape[1], *x.shape[2:])
        shaped = []
        for o, one in zip(self._outputs(env), self._shapes, strict=True):
            want = (B, *one) if how == "stack" else ((B * one[0], *one[1:]) if one else None)
            if o.shape != want:
                raise ValueError(f"a batched call returned shape {o.shape}, not {want}")
            shaped.append(o.reshape(B, *one))
        self.largest_batch = max(self.largest_batch, B)
        phi, size = self._phi(shaped, B)
        return phi, size, shaped

    # -- batching ---------------------------------------------------------------------------

    def _dims(self) -> set[int]:
        """Every axis length of the inputs, array constants and outputs of one call: a batch of
        that many copies could line up with such an axis and broadcast where it should not."""
        dims = {1}
        arrays = [v[0] for v in self.base.values()] + [
            v for v in self.case.constants.values() if isinstance(v, np.ndarray)
        ]
        for shape in [np.shape(a) for a in arrays] + self._shapes:
            dims.update(int(d) for d in shape)
        return dims

    def _decide(self, rows: Rows) -> tuple[int, np.ndarray, np.ndarray]:
        """Evaluate the first rows of ``rows`` one call each and decide against them whether
        and how this input is batched; return how many rows that was, and their phi and size.

        The probe is as many rows as no axis of the call is long (at least 3), so a batch
        axis cannot pass for another one by having its length."""
        assert rows.name is not None
        self.batching[rows.name] = "single"
        first = rows.take(slice(0, 1))
        phi, size, outs = self._single(first)
        self._shapes = [tuple(o.shape) for o in outs[0]]
        dims = self._dims()
        n = PROBE_ROWS
        while n in dims:
            n += 1
        if len(rows) < n or not np.all(rows.point[:n] == rows.point[0]):
            return 1, phi, size
        probe = rows.take(slice(0, n))
        more_phi, more_size, more = self._single(rows.take(slice(1, n)))
        phi, size, outs = np.concatenate([phi, more_phi]), np.concatenate([size, more_size]), outs + more
        conventions = ["stack"] + (["rows"] if np.ndim(self.base[rows.name][0]) >= 1 else [])
        for how in conventions:
            try:
                with np.errstate(all="ignore"):
                    bphi, _, bouts = self._batched(probe, how)
            except Exception:  # noqa: BLE001 - any failure rules this convention out
                continue
            same = np.array_equal(bphi, phi) and all(
                np.array_equal(bouts[k][r], outs[r][k]) for r in range(n) for k in range(len(bouts))
            )
            if same:
                self.batching[rows.name] = how
                axis = "a leading batch axis on every input" if how == "stack" else "more rows along its first axis"
                self.note(
                    f"{self._label} takes a batch of `{rows.name}` ({axis}; checked bit for bit against single"
                    " calls): its perturbations were evaluated in batched calls"
                )
                break
        return n, phi, size

    def _batch_size(self, name: str) -> int:
        per = self.base[name][0].size + sum(int(np.prod(s)) for s in self._shapes)
        return max(1, min(MAX_BATCH, BATCH_BYTES // (8 * 4 * max(per, 1))))

    def _give_up(self, name: str, why: str) -> None:
        if self.batching.get(name) != "single":
            self.batching[name] = "single"
            self.note(
                f"{self._label}: batched calls of `{name}` stopped ({why}); one call per perturbation from then on"
            )

    # -- chunks, processes and progress -----------------------------------------------------

    def evaluate(self, rows: Rows, batching: str) -> tuple[np.ndarray, np.ndarray]:
        """phi (and its terms' size) at every row: batched, or one call per row.

        Every batch is checked once more on its last row against a single call; a batch that
        raises or differs is evaluated one call per row instead, and batching stops."""
        if batching == "single" or rows.name is None:
            phi, size, _ = self._single(rows)
            return phi, size
        phi, size = np.empty(len(rows)), np.empty(len(rows))
        if batching == "stack":  # each row carries its own point
            groups = [np.arange(len(rows))]
        else:
            groups = [np.flatnonzero(rows.point == p) for p in np.unique(rows.point)]
        for mine in groups:
            for idx in _chunks(mine, self._batch_size(rows.name), self._dims()):
                part = rows.take(idx)
                if len(idx) > 1 and self.batching.get(rows.name, batching) == batching:
                    try:
                        with np.errstate(all="ignore"):
                            bphi, bsize, _ = self._batched(part, batching)
                        last, _, _ = self._single(part.take(slice(-1, None)))
                    except Exception as exc:  # noqa: BLE001 - the single calls below decide
                        cause = exc.__cause__ or exc  # the callable's own, under its CaseError
                        self._give_up(rows.name, f"a batch of {len(idx)} raised {type(cause).__name__}")
                    else:
                        if np.array_equal(last, bphi[-1:]):
                            phi[idx], size[idx] = bphi, bsize
                            continue
                        self._give_up(rows.name, f"a batch of {len(idx)} differed from a single call")
                phi[idx], size[idx], _ = self._single(part)
        return phi, size

    def _tasks(self, rows: Rows, batching: str) -> list[Rows]:
        """Chunks of rows: a few batches each, or single calls of about TASK_SECONDS each."""
        if batching != "single" and rows.name is not None:
            step = self._batch_size(rows.name) * 4
        else:
            step = max(1, int(TASK_SECONDS / max(self.seconds or TASK_SECONDS, 1e-6)))
        return [rows.take(slice(s, s + step)) for s in range(0, len(rows), step)]

    def run(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """phi and its terms' size at every row, reporting progress chunk by chunk."""
        phi, size = np.empty(len(rows)), np.empty(len(rows))
        done = 0
        if rows.name is not None and rows.name not in self.batching and len(rows):
            done, first_phi, first_size = self._decide(rows)
            phi[:done], size[:done] = first_phi, first_size
            self.tick(done)
        batching = "single" if rows.name is None else self.batching[rows.name]
        rest = rows.take(slice(done, None))
        if not len(rest):
            return phi, size
        tasks = self._tasks(rest, batching)
        workers = self._workers_for(rest, batching, len(tasks))
        starts = np.cumsum([done] + [len(t) for t in tasks])
        if workers is None:
            for task, at in zip(tasks, starts, strict=False):
                phi[at : at + len(task)], size[at : at + len(task)] = self.evaluate(task, batching)
                self.tick(len(task))
            return phi, size
        for k, result in workers.map([(t, batching) for t in tasks]):
            task, at = tasks[k], starts[k]
            # a worker whose call raised sends nothing: the same call here raises the same error
            p, s = result if result is not None else self.evaluate(task, batching)
            phi[at : at + len(task)], size[at : at + len(task)] = p, s
            self.tick(len(task))
        return phi, size

    def _workers_for(self, rows: Rows, batching: str, tasks: int) -> Workers | None:
        if self.workers is not None:
            return self.workers
        if self.jobs < 2 or tasks < 2 or batching != "single" or self.seconds is None:
            return None
        if self.seconds * len(rows) < POOL_SECONDS:
            return None
        why = parallel_refusal()
        if why is not None:
            if not self._refused:
                self._refused = True
                self.note(f"{self._label} was evaluated in one process ({why}); --jobs {self.jobs} went unused")
            return None
        self.workers = Workers(self, min(self.jobs, tasks))
        self.note(f"{self._label} was evaluated in {self.workers.size} worker processes (--jobs {self.jobs})")
        return self.workers

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
            self.workers = None


class Workers:
    """Forked processes that evaluate chunks of rows of one CallEvaluator.

    Each gets tasks over a pipe (rows of numbers, pickled) and answers with phi (or None
    where the callable raised). The parent waits in slices of WAIT_SECONDS, and ``close``
    kills what is left: a check stopped by --timeout or Ctrl-C leaves no process behind.
    """

    def __init__(self, evaluator: CallEvaluator, size: int) -> None:
        from multiprocessing.connection import Pipe  # only a run that forks pays for it

        self.size = size
        self.children: list[tuple[int, Any]] = []
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else a child could write the parent's buffered text again
        try:
            for _ in range(size):
                mine, theirs = Pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child; its coverage is not collected
                    mine.close()
                    _child(evaluator, theirs)
                theirs.close()
                self.children.append((pid, mine))
        except BaseException:
            self.close()
            raise

    def map(self, tasks: list[tuple[Rows, str]]) -> Any:
        """Yield (index, result) as the workers finish them, in any order."""
        from multiprocessing.connection import wait

        queue = list(enumerate(tasks))[::-1]
        busy: dict[Any, int] = {}
        for _, conn in self.children:
            if queue:
                k, task = queue.pop()
                conn.send(task)
                busy[conn] = k
        while busy:
            ready: list[Any] = wait(list(busy), timeout=WAIT_SECONDS)
            for conn in ready:
                k = busy.pop(conn)
                try:
                    result = conn.recv()
                except EOFError:  # the worker died (killed, out of memory): redo it here
                    result = None
                if queue and not conn.closed:
                    j, task = queue.pop()
                    conn.send(task)
                    busy[conn] = j
                yield k, result

    def close(self) -> None:
        for pid, conn in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            conn.close()
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.children = []


def _child(evaluator: CallEvaluator, conn: Any) -> None:  # pragma: no cover - runs in the child
    """A worker's life: evaluate tasks until the pipe closes; never return to the caller."""
    try:
        # One thread each: the workers already fill the cores, and an OpenMP pool the parent
        # started is not usable after a fork. Ctrl-C and the deadline are the parent's.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        evaluator.tick = lambda n: None
        evaluator.note = lambda text: None
        while True:
            try:
                rows, batching = conn.recv()
            except EOFError:
                break
            try:
                result: Any = evaluator.evaluate(rows, batching)
            except Exception:  # noqa: BLE001 - the parent redoes the task and reports the error
                result = None
            conn.send(result)
    finally:
        os._exit(0)


def _chunks(rows: np.ndarray, step: int, avoid: set[int]) -> list[np.ndarray]:
    """``rows`` in chunks of at most ``step``, no chunk as long as an axis in ``avoid`` (such a
    chunk shrinks until it is not; a chunk of one is a single call)."""
    out = []
    at = 0
    while at < len(rows):
        n = min(step, len(rows) - at)
        while n > 1 and n in avoid:
            n -= 1
        out.append(rows[at : at + n])
        at += n
    return out
