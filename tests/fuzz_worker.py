"""The fuzz run's child process: loads and checks every generated input under an audit hook.

Run as ``python tests/fuzz_worker.py --seed S --programs N --files M --dir D --out R.json``.
Every input is written to a case file in ``D`` and goes through ``load_case`` and
``check_case`` (and one in ten through the ``gradcheck run`` command line) with small limits.
What counts:

* an **escape**: the audit hook saw a process started (subprocess, os.system, exec*, spawn,
  fork), a socket, a native library loaded, ``exec``/``eval`` of code, a file opened for
  writing outside ``D``, or any file opened outside the interpreter's, the repository's and
  ``D``'s folders; or the marker file that the inputs try to create exists;
* a **traceback**: an exception other than CaseError out of loading or checking, or a command
  line run whose stderr holds "Traceback", exits other than 0/1/2, or prints a workflow
  command (a line starting with ``::``);
* a **hang**: the parent kills a child that outlives its timeout (this process writes the
  index it is at to ``D/progress`` before each input);
* a **memory** failure: a MemoryError anywhere, or a peak resident size over ``--max-rss``.

The address-space limit (``--max-as``) only keeps a runaway from taking the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fuzz_corpus  # noqa: E402

_PROCESS_EVENTS = (
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "socket.",
    "ctypes.dlopen",
    "exec",
    "shutil.rmtree",
    "os.remove",
    "os.rename",
    "os.chmod",
    "webbrowser",
)


class Audit:
    def __init__(self, workdir: Path) -> None:
        self.active = False
        self.violations: list[str] = []
        self.current = ""
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(ROOT), str(workdir.resolve())}
        prefixes |= {p for p in sys.path if p}
        self.read_ok = tuple(sorted({os.path.realpath(p) for p in prefixes}))
        self.write_ok = str(workdir.resolve())
        self.system = ("/proc/", "/sys/", "/dev/null", "/dev/urandom", "/etc/ld.so.cache", "/etc/localtime")

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            self._open(args)
        elif event == "subprocess.Popen" and list(args[1]) == ["git", "rev-parse", "HEAD"]:
            return  # gradcheck's own: the report's environment names the commit
        elif event.startswith(_PROCESS_EVENTS):
            self.violations.append(f"{self.current}: {event} {str(args)[:200]}")

    def _open(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = (tuple(args) + (None, None))[:3]
        if isinstance(path, int) or path is None:
            return
        text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
        full = os.path.realpath(text)
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing and not full.startswith(self.write_ok):
            self.violations.append(f"{self.current}: open for writing {full}")
        elif not writing and not full.startswith(self.read_ok) and not full.startswith(self.system):
            self.violations.append(f"{self.current}: open {full}")


def _limits() -> Any:
    from gradcheck_suite import Limits

    # small enough that any input runs quickly: the defaults' ratios, scaled down
    return Limits(max_elements=1 << 18, timeout=3.0, max_samples=200, max_evaluations=2_000_000)


def _run_one(path: Path, options: Any, limits: Any, trust: Any) -> str:
    from gradcheck_suite import CaseError, check_case, load_case

    try:
        case = load_case(path, limits=limits, trust=trust)
    except CaseError as exc:
        return "load-error" if str(path) in str(exc) or exc.file is None else "unlocated"
    try:
        check_case(case, options)
    except CaseError:
        return "check-error"
    return "checked"


def _cli(path: Path, allow: list[str]) -> str | None:
    from gradcheck_suite._cli import main

    out, err = io.StringIO(), io.StringIO()
    extra = [a for pattern in allow for a in ("--allow-callable", pattern)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--no-reports", "--timeout", "3", "--max-elements", str(1 << 18), *extra])
    text = out.getvalue() + err.getvalue()
    if code not in (0, 1, 2):
        return f"exit status {code}"
    if "Traceback" in text:
        return "a traceback on stderr"
    if any(line.lstrip().startswith("::") for line in text.splitlines()):
        return "a workflow command in the output"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--programs", type=int, default=0)
    p.add_argument("--files", type=int, default=0)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-as", type=int, default=8 << 30)
    p.add_argument("--max-rss", type=int, default=3 << 30)
    p.add_argument("--cli-every", type=int, default=10)
    # the canary: allow a callable (os:system) to show that the hook and the marker see an escape
    p.add_argument("--allow", action="append", default=[])
    args = p.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (args.max_as, args.max_as))
    workdir = args.dir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    marker = workdir / "MARKER"

    from gradcheck_suite import RunOptions, Trust, check_case, load_case

    limits = _limits()
    trust = Trust.from_settings(args.allow, start=workdir)
    options = RunOptions(max_memory=64 << 20, limits=limits)
    # warm up everything the checks touch (lazy imports, vmap, the meta pass) before auditing
    warm_options = RunOptions(max_memory=64 << 20)  # no timeout: a loaded machine may be slow to start
    for warm in ("product", "matmul", "layers/conv_naive"):
        check_case(load_case(ROOT / "cases" / f"{warm}.toml"), warm_options)
    # these are proven small without it, so the meta pass itself (torch's Python meta kernels,
    # which import torch._dynamo and sympy on first use) is warmed on its own
    from gradcheck_suite._shapes import meta_check

    for warm in ("product", "matmul", "compound_sigmoid"):
        meta_check(load_case(ROOT / "cases" / f"{warm}.toml"), limits)
    # what only a failing or disputed case imports (diagnostics, hints, the referee, ...): every
    # module of the package, so that importing our own code is not counted as running code
    import importlib
    import pkgutil

    import gradcheck_suite

    for module in pkgutil.walk_packages(gradcheck_suite.__path__, "gradcheck_suite."):
        if module.name != "gradcheck_suite.__main__":
            importlib.import_module(module.name)
    _cli(ROOT / "cases" / "product.toml", args.allow)
    audit = Audit(workdir)
    sys.addaudithook(audit)

    counts: dict[str, int] = {}
    tracebacks: list[dict[str, str]] = []
    memory_errors = 0
    inputs = [
        *fuzz_corpus.programs(args.seed, args.programs, str(marker)),
        *fuzz_corpus.case_files(args.seed, args.files, str(marker)),
    ]
    progress = workdir / "progress"
    start = time.perf_counter()
    for n, item in enumerate(inputs):
        path = workdir / f"{item.kind}-{item.index}.toml"
        if item.binary:
            path.write_bytes(item.text.encode("latin-1"))
        else:
            path.write_text(item.text, encoding="utf-8", errors="surrogatepass")
        progress.write_text(f"{item.kind} {item.index} {item.how}\n")
        audit.current = f"{item.kind} {item.index} ({item.how})"
        audit.active = True
        try:
            outcome = _run_one(path, options, limits, trust)
            if n % args.cli_every == 0:
                problem = _cli(path, args.allow)
                if problem:
                    tracebacks.append({"input": audit.current, "error": problem, "text": item.text[:2000]})
        except MemoryError:
            memory_errors += 1
            outcome = "memory-error"
        except BaseException as exc:  # noqa: BLE001 - anything escaping is what this run looks for
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcome = "traceback"
            tracebacks.append(
                {
                    "input": audit.current,
                    "error": "".join(traceback.format_exception_only(type(exc), exc)).strip()[:500],
                    "text": item.text[:2000],
                }
            )
        finally:
            audit.active = False
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "unlocated":
            tracebacks.append(
                {"input": audit.current, "error": "a load error without the file", "text": item.text[:500]}
            )
        path.unlink()
    seconds = time.perf_counter() - start
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "seed": args.seed,
        "programs": args.programs,
        "files": args.files,
        "outcomes": counts,
        "escapes": audit.violations + ([f"marker file {marker} exists"] if marker.exists() else []),
        "tracebacks": tracebacks,
        "memory_errors": memory_errors,
        "max_rss": max_rss,
        "over_memory_cap": int(max_rss > args.max_rss),
        "seconds": seconds,
    }
    args.out.write_text(json.dumps(result, indent=2))
    progress.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
