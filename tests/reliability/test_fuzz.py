"""Garbage in: 1,000 mutated images of six formats and 200 mutated weight files of four raise only
our own errors, never hang or crash the reader, and keep its memory bounded (tools/fuzz.py)."""

import json
import os
import subprocess
import sys

from tests.reliability.conftest import ROOT

IMAGE_FORMATS = {"jpg", "png", "webp", "bmp", "gif", "tiff"}


def test_fuzzed_images_and_weight_files_raise_only_our_errors(tmp_path):
    summary_path = str(tmp_path / "fuzz.json")
    failures = tmp_path / "failures"
    failures.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "tools/fuzz.py",
            "--images=1000",
            "--weights=200",
            "--seed=7",
            "--timeout=20",
            "--max_rss_mb=1000",
            f"--save_failures={failures}",
            f"--json={summary_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert not os.listdir(failures)
    summary = json.load(open(summary_path))
    for kind, count in (("images", 1000), ("weights", 200)):
        s = summary[kind]
        assert s["files"] == count and s["failures"] == []
        assert s["decoded"] + s["our_errors"] == count
        assert s["our_errors"] > count // 4 and s["decoded"] > 0  # mutations break many, not all
        assert s["peak_rss_mb"] < 1000
    assert set(summary["images"]["by_format"]) == IMAGE_FORMATS
    assert set(summary["weights"]["by_format"]) == {"safetensors", "pth", "h5"}
