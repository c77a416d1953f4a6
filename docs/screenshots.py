"""Remake docs/report-seed.png and docs/report-failing.png: `.venv/bin/python docs/screenshots.py`.

The seed cases' report, and the page of compound_sigmoid with the notebook's dropped `+=`
(`gradcheck show --html`), each taken by headless Chromium as the browser test takes its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradcheck_suite._cli import main  # noqa: E402
from tests import browser  # noqa: E402

DROP_SIGX = "dx += ((1 - sigx) * sigx) * dsigx\n"


def shoot() -> None:
    if browser.browser() is None:
        sys.exit("no Chromium: apt-get install chromium")
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = work / "cases"
        cases.mkdir()
        for p in (ROOT / "cases").glob("*.toml"):
            shutil.copy(p, cases)
        os.chdir(work)  # the pages name the case files as a user's run in their project would
        main(["run", "cases", "--report-dir", "seed"])
        browser.screenshot(work / "seed" / "report.html", ROOT / "docs" / "report-seed.png", 1280, 1500)
        broken = work / "broken"
        broken.mkdir()
        text = (ROOT / "cases" / "compound_sigmoid.toml").read_text()
        (broken / "compound_sigmoid.toml").write_text(text.replace(DROP_SIGX, ""))
        main(["show", "compound_sigmoid", "broken", "--html", "failing.html"])
        browser.screenshot(work / "failing.html", ROOT / "docs" / "report-failing.png", 1280, 1450)
        os.chdir(here)


if __name__ == "__main__":
    shoot()
