"""What the reliability tests share: the tiny training command they run as a real subprocess."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config=configs/cnn.py",
    "--config.model.name=cnn_small",
    "--config.data.image_size=16",
    "--config.num_epochs=1",  # 39 steps of 32 digits
    "--config.batch_size=32",
    "--config.checkpoint.every_steps=5",
    "--config.efficiency.enabled=False",
]


def jaxcls_main(workdir, *extra) -> list[str]:
    """The command line of a tiny training run (``extra`` flags come last and win)."""
    return [sys.executable, "-m", "jaxcls.main", f"--workdir={workdir}", *TINY, *extra]


def run_main(workdir, *extra, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        jaxcls_main(workdir, *extra), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("jaxcls: error:")]
