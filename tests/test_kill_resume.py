"""kill -9 anywhere (at a random moment, while a checkpoint is being written, during the final
evaluation), rerun until done: the same train state, example ids and metrics as a run never
killed, bit for bit (tools/chaos.py with a few seeded kills; docs/reliability.md has the figure
for 50)."""

import json
import os
import subprocess
import sys

from tools import chaos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kills_mid_checkpoint_and_mid_final_evaluation_resume_bit_exact(tmp_path):
    out = tmp_path / "chaos"
    done = subprocess.run(
        [
            sys.executable,
            "tools/chaos.py",
            "--config=configs/cnn.py",
            "--config.model.name=cnn_small",
            "--config.num_epochs=1",
            "--kills=2",  # The two hardest moments; random moments: the 20-kill figure.
            "--kinds=checkpoint,final-eval",
            "--seed=3",
            f"--workdir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "kills survived/attempted: 2/2 (time 0, checkpoint 1, final-eval 1)" in done.stdout
    assert "MISMATCH" not in done.stdout

    # The comparison can fail: one changed example id or metric in the killed run is reported.
    ref, got = str(out / "reference"), str(out / "round1")
    assert chaos.compare(ref, got) == []
    with open(os.path.join(chaos.ids_dir(got), "ids_p0.txt"), "a") as f:
        f.write("5 1 2 3\n")
    results = json.load(open(os.path.join(got, "results.json")))
    results["splits"]["test"]["accuracy"] += 1e-6
    json.dump(results, open(os.path.join(got, "results.json"), "w"))
    assert chaos.compare(ref, got) == [
        "step 5: example ids differ (2 attempt(s))",
        "results.json 'splits' differs",
    ]
