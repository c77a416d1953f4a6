"""Headless Chromium for the report.html tests and the README's screenshots.

Chromium's own switches do all of it, with no driver to install: ``--dump-dom`` prints the DOM
after the page's scripts ran, ``--enable-logging=stderr`` logs every console message and
uncaught exception (``...:CONSOLE:<line>] "<message>", source: <url>``), and ``--screenshot``
writes a PNG. The background-networking switches keep it from reaching out at start (this
closed network refuses those connections, which would show up as noise).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BROWSERS", "browser", "load", "screenshot"]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
CONSOLE = re.compile(r":CONSOLE(?:\(|:)\d+\)?\] (.*)")


def browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _run(page: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = browser()
    assert exe is not None, "no Chromium"
    with tempfile.TemporaryDirectory(prefix="gradcheck-chromium-") as profile:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "HOME": profile},
        )


def load(page: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message it logged."""
    proc = _run(page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    messages = [m.group(1) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line))]
    return proc.stdout, messages


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1600) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(page, f"--window-size={width},{height}", f"--screenshot={out.resolve()}")
    return out
