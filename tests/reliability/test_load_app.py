"""The web app under concurrent load (CI size): 2 browser clients x 3 uploads, good and bad mixed,
all answered, no error page for a good image, the server up at the end (tools/load_app.py; the
docs give the 8 x 25 figure)."""

import re
import shutil
import subprocess
import sys

import pytest

from tests.export.conftest import FAMILIES, write_tiny
from tests.reliability.conftest import ROOT

pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.skipif(
    not (
        (shutil.which("chromium") or shutil.which("chromium-browser"))
        and shutil.which("chromedriver")
    ),
    reason="needs chromium and chromedriver on PATH (.ci/run installs them)",
)


def test_two_clients_mixed_uploads_all_answered_server_stays_up(tmp_path):
    kwargs, size = FAMILIES["cnn"]
    write_tiny(str(tmp_path), "cnn", dict(kwargs), size)
    done = subprocess.run(
        [
            sys.executable,
            "tools/load_app.py",
            f"--checkpoint={tmp_path}",
            "--clients=2",
            "--images=3",
            "--bad_every=3",
            "--timeout=600",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=700,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "answered 6/6, error pages or wrong answers 0" in summary and "server up" in summary
    before, after = map(float, re.search(r"RSS (\d+) MB after warm-up, (\d+) MB", summary).groups())
    assert after < before + 300  # no runaway growth over 6 uploads
