"""What stands between a case file and the machine when a case is checked: its callables are
imported (only now, and only if allowed), its programs' shapes are checked on meta tensors,
its plan is held to the sample and evaluation limits, and it runs under a deadline.

:func:`prepare` and :func:`deadline` wrap the engine's check of one case; every refusal is a
located :class:`LimitError` or :class:`CaseError`, and the other cases still run.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from ._case import Case
from ._errors import CaseError, LimitError
from ._limits import Limits
from ._shapes import check_shapes

__all__ = ["CaseTimeout", "check_plan", "deadline", "prepare"]


def prepare(case: Case, limits: Limits) -> Case:
    """``case`` with its callables imported and its static shapes checked."""
    case = case.resolved()
    check_shapes(case, limits)
    return case


def check_plan(case: Case, samples: int, evaluations: int, limits: Limits) -> None:
    """Refuse, before the first point is drawn, a sweep or a numeric plan past the limits."""
    if samples > limits.max_samples:
        raise LimitError(
            f"{samples} sample points are over --max-samples {limits.max_samples}",
            file=case.file,
            key="sweep",
            case=case.name,
        )
    if evaluations > limits.max_evaluations:
        raise LimitError(
            f"the numeric source plans {evaluations} evaluations of the forward, over --max-evaluations"
            f" {limits.max_evaluations} (fewer --samples, or --mode sample/projection, need fewer)",
            file=case.file,
            key="forward",
            case=case.name,
        )


class CaseTimeout(BaseException):
    """Raised into a case that ran past its deadline. A BaseException, so that a callable's
    ``except Exception`` cannot swallow it (and it is raised again every REPEAT seconds in
    case a bare ``except`` does)."""


REPEAT = 0.25  # seconds between repeated interruptions of a case that ignored one


def _timed_out(case: Case, seconds: float, started: float) -> LimitError:
    return LimitError(
        f"stopped after {time.monotonic() - started:.1f} s: over --timeout {seconds:g} s",
        file=case.file,
        line=case.line,
        case=case.name,
    )


class _Clock:
    """One deadline: interruptions stop once the block has caught one."""

    def __init__(self) -> None:
        self.caught = False

    def interrupt(self, *_: Any) -> None:
        if not self.caught:
            raise CaseTimeout


@contextlib.contextmanager
def deadline(seconds: float, case: Case) -> Iterator[None]:
    """Stop the block after ``seconds`` (0: never) with a LimitError that gives the time.

    In the main thread a SIGALRM timer interrupts pure Python code and blocking calls such as
    ``time.sleep`` alike; elsewhere (a thread of the caller's, or while another timer is
    pending) a watchdog raises the exception into the thread between two bytecodes. A long
    call inside torch or numpy ends first.
    """
    if not seconds or seconds <= 0:
        yield
        return
    started = time.monotonic()
    clock = _Clock()
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    # A timer someone else set (pytest-timeout's signal method) is theirs: leave it running
    # and watch from a thread instead of moving it.
    alarm = main and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    with _alarm(seconds, clock) if alarm else _watchdog(seconds, clock):
        try:
            yield
        except CaseTimeout:
            clock.caught = True
            raise _timed_out(case, seconds, started) from None


@contextlib.contextmanager
def _alarm(seconds: float, clock: _Clock) -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, clock.interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT)
    try:
        yield
    finally:
        clock.caught = True
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _watchdog(seconds: float, clock: _Clock) -> Iterator[None]:
    target = threading.get_ident()
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        while not done.is_set() and not clock.caught:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(CaseTimeout))
            done.wait(REPEAT)

    thread = threading.Thread(target=watch, name="gradcheck-deadline", daemon=True)
    thread.start()
    try:
        yield
    finally:
        clock.caught = True
        done.set()
        thread.join()
        # An exception sent just as the block ended must not hit the caller: it is raised at
        # the next check between bytecodes, so give it that check here and drop it. (Clearing it
        # with PyThreadState_SetAsyncExc(id, NULL) instead leaves CPython 3.11's eval breaker in
        # a state where the next sys.settrace tracer spins forever.)
        try:
            for _ in range(8):
                pass
        except CaseTimeout:
            pass


def as_case_error(case: Case, exc: BaseException) -> CaseError:
    """Anything but a CaseError escaping a check, as a CaseError naming the case."""
    if isinstance(exc, CaseError):
        return exc
    return case.error(f"internal error while checking: {type(exc).__name__}: {exc}")
