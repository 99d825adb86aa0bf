r"""Kill a training run anywhere, rerun it until it completes, and compare with a run never killed.

  python tools/chaos.py --config=configs/cnn.py --kills=20 --seed=0 [--workdir=DIR]
      [--config.model.name=cnn_small ...]

Runs a tiny training (``TINY`` overrides, then any ``--config.x=y`` given here) once without
interruption, then again in another workdir while sending SIGKILL (to the whole process group) at
seeded random moments of three kinds:

* ``time``: a random moment of the run (start-up, compilation, training steps, validation);
* ``checkpoint``: while Orbax is writing a checkpoint (its temporary folder exists);
* ``final-eval``: during the final evaluation (after its first split is logged).

After each kill the same command is rerun on the same workdir; a run that completes starts a new
round in a fresh workdir while kills remain. Each completed round is compared, bit for bit, with
the uninterrupted run: the whole saved train state of the last step (parameters, BatchNorm
statistics, optimizer state, step, RNG, counters), the example ids read at every training step (by
every attempt, also the ones later killed), and the final metrics and history in results.json.

Prints the kills survived / attempted by kind and every mismatch; exit code 0 when all match, 1 on
any mismatch or a rerun that failed, 2 on a usage error. Each training process is plain
``python -m jaxcls.main``; the ids come from the trainer's own debug record
(``JAXCLS_DEBUG_IDS_DIR``, see ``jaxcls.trainer.parallel.record_example_ids``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import cli  # noqa: E402

TOOL = "chaos"
IDS_ENV = "JAXCLS_DEBUG_IDS_DIR"  # jaxcls.trainer.parallel.IDS_ENV (imported lazily there: JAX)
TINY = [
    "--config.num_epochs=2",
    "--config.data.image_size=16",
    "--config.batch_size=32",
    "--config.checkpoint.every_steps=7",
    "--config.efficiency.enabled=False",
]
KINDS = ("time", "checkpoint", "final-eval")
KIND_WEIGHTS = (0.5, 0.3, 0.2)
FINAL_EVAL_MARK = "train (best step"  # final.py's log line after the first evaluated split
RESULT_KEYS = ("steps_run", "epochs_run", "best_step", "stopped_early", "splits", "history")
TMP_MARK = "orbax-checkpoint-tmp"
TIMED = ("per_sec", "seconds")  # results.json keys that measure time, not results


# ------------------------------------------------------------------------------ parent mode
class Attempt:
    """One training process of a round, its log in ``{workdir}.log``."""

    def __init__(self, workdir: str, main_args: list[str]):
        self.workdir = workdir
        self.log_path = workdir + ".log"
        self.log = open(self.log_path, "ab")
        self.log_offset = self.log.tell()
        command = [sys.executable, "-m", "jaxcls.main", f"--workdir={workdir}", *main_args]
        env = {**os.environ, IDS_ENV: ids_dir(workdir)}  # The trainer's own debug record of ids.
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        self.started = time.monotonic()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -1
        self.log.close()
        return rc

    def new_log(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode("utf-8", "replace")


def _writing_checkpoint(workdir: str) -> bool:
    for store in ("latest", "best"):
        d = os.path.join(workdir, "checkpoints", store)
        try:
            if any(TMP_MARK in name for name in os.listdir(d)):
                return True
        except FileNotFoundError:
            pass
    return False


def attempt_with_kill(workdir, main_args, kind, rng, duration, timeout) -> tuple[bool, int]:
    """Starts one attempt and kills it at a moment of ``kind``; returns (killed, exit code)."""
    attempt = Attempt(workdir, main_args)
    kill_at = rng.uniform(0.02, 1.0) * duration
    skip = rng.randrange(4)  # Which checkpoint write to hit (the first `skip` are let through).
    delay = rng.uniform(0.0, 0.03 if kind == "checkpoint" else 1.5)
    seen_tmp, armed = False, None
    deadline = attempt.started + timeout
    while attempt.proc.poll() is None and time.monotonic() < deadline:
        now = time.monotonic()
        if kind == "time" and now - attempt.started >= kill_at:
            armed = now
        elif kind == "checkpoint":
            writing = _writing_checkpoint(workdir)
            if writing and not seen_tmp:
                skip -= 1
                if skip < 0:
                    armed = now + delay
            seen_tmp = writing
        elif kind == "final-eval" and armed is None and FINAL_EVAL_MARK in attempt.new_log():
            armed = now + delay
        if armed is not None and now >= armed:
            attempt.kill()
            return True, -9
        time.sleep(0.002 if kind == "checkpoint" else 0.02)
    if attempt.proc.poll() is None:
        attempt.kill()
        return False, -1
    return False, attempt.finish(1)


def ids_dir(workdir: str) -> str:
    return workdir + ".ids"


def read_ids(workdir: str) -> dict[int, set[str]]:
    """Train step -> the example ids each attempt read for it (the trainer's ``ids_p0.txt``)."""
    out: dict[int, set[str]] = {}
    path = os.path.join(ids_dir(workdir), "ids_p0.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.endswith("\n") and " " in line:
                    step, ids = line.split(" ", 1)
                    out.setdefault(int(step), set()).add(ids.strip())
    return out


def final_state(workdir: str) -> dict:
    """The last committed step's whole train state as ``{path: (dtype, shape, bytes)}``."""
    import jax
    import numpy as np
    from absl import logging

    from jaxcls.trainer import checkpoint as ckpt_lib

    logging.set_verbosity(logging.ERROR)  # Orbax warns about step-level metadata it does not need.
    latest = os.path.join(workdir, "checkpoints", "latest")
    step = max(int(d) for d in os.listdir(latest) if d.isdigit())
    tree = ckpt_lib.restore_as_numpy(os.path.join(latest, str(step), "state"))
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(leaf, "dtype") and jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.asarray(leaf)
        flat[jax.tree_util.keystr(path)] = (str(a.dtype), a.shape, a.tobytes())
    return {"step": step, "leaves": flat}


def compare(ref: str, got: str) -> list[str]:
    """Every difference between the uninterrupted run ``ref`` and the killed run ``got``."""
    problems = []
    a, b = final_state(ref), final_state(got)
    if a["step"] != b["step"]:
        problems.append(f"last checkpoint step {b['step']} != {a['step']}")
    for key in sorted(set(a["leaves"]) | set(b["leaves"])):
        if a["leaves"].get(key) != b["leaves"].get(key):
            problems.append(f"train state differs at {key}")
    ids_ref, ids_got = read_ids(ref), read_ids(got)
    for step in sorted(ids_ref):
        seen = ids_got.get(step, set())
        if not seen:
            problems.append(f"step {step}: no batch recorded")
        elif seen != ids_ref[step]:
            problems.append(f"step {step}: example ids differ ({len(seen)} attempt(s))")
    extra = sorted(set(ids_got) - set(ids_ref))
    if extra:
        problems.append(f"steps {extra[:5]} ran but not in the uninterrupted run")
    with open(os.path.join(ref, "results.json")) as f:
        r_ref = json.load(f)
    with open(os.path.join(got, "results.json")) as f:
        r_got = json.load(f)
    for key in RESULT_KEYS:
        if _untimed(r_ref.get(key)) != _untimed(r_got.get(key)):
            problems.append(f"results.json {key!r} differs")
    return problems


def _untimed(value):
    """``value`` without its wall-clock measurements (throughput differs from run to run)."""
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not k.endswith(TIMED)}
    return value


def run_chaos(args, main_args: list[str], out: str) -> int:
    rng = random.Random(args.seed)
    ref = os.path.join(out, "reference")
    t0 = time.monotonic()
    rc = Attempt(ref, main_args).finish(args.timeout)
    duration = time.monotonic() - t0
    if rc != 0:
        print(f"chaos: the uninterrupted run failed (exit {rc}); its log: {ref}.log", flush=True)
        return 1
    steps = len(read_ids(ref))
    print(f"chaos: uninterrupted run: {duration:.1f} s, {steps} steps", flush=True)
    attempted, by_kind, rounds, problems = 0, dict.fromkeys(KINDS, 0), 0, []
    while attempted < args.kills and not problems:
        rounds += 1
        work = os.path.join(out, f"round{rounds}")
        round_kills = 0
        while True:
            kind = None
            if attempted < args.kills:
                kind = args.kinds[attempted % len(args.kinds)] if args.kinds else None
                kind = kind or rng.choices(KINDS, KIND_WEIGHTS)[0]
            if kind is None:
                killed, rc = False, Attempt(work, main_args).finish(args.timeout)
            else:
                killed, rc = attempt_with_kill(work, main_args, kind, rng, duration, args.timeout)
            if killed:
                attempted += 1
                round_kills += 1
                by_kind[kind] += 1
                print(
                    f"chaos: kill {attempted}/{args.kills} ({kind}) in round {rounds}", flush=True
                )
                continue
            if rc != 0:
                problems.append(f"round {rounds}: a rerun exited with {rc} (log: {work}.log)")
            break
        if not problems:
            found = compare(ref, work)
            problems += [f"round {rounds}: {p}" for p in found]
            print(
                f"chaos: round {rounds} completed after {round_kills} kill(s): "
                + ("bit-exact" if not found else f"{len(found)} mismatch(es)"),
                flush=True,
            )
    survived = attempted if not problems else 0
    kinds = ", ".join(f"{k} {v}" for k, v in by_kind.items())
    print(
        f"chaos: kills survived/attempted: {survived}/{attempted} ({kinds}); rounds {rounds}; "
        f"{time.monotonic() - t0:.0f} s in all",
        flush=True,
    )
    for p in problems:
        print(f"chaos: MISMATCH {p}", flush=True)
    return 1 if problems else 0


def kinds_list(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kill kind(s) {unknown}; known: {', '.join(KINDS)}"
        )
    return kinds


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--config", required=True, help="a config file, as for jaxcls.main")
    p.add_argument("--kills", type=cli.positive_int, default=5)
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--workdir", default="", help="where to keep the runs (default: a temp dir)")
    p.add_argument(
        "--kinds",
        type=kinds_list,
        default=[],
        help=f"kill kinds to cycle through, comma-separated ({','.join(KINDS)}); default: random",
    )
    p.add_argument("--timeout", type=cli.positive_int, default=900, help="seconds per process")
    args, rest = p.parse_known_args(argv)
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        return cli.fail(TOOL, f"unknown arguments {unknown}; expected --config.x=y overrides")
    config_file = args.config.split(":")[0]
    if not os.path.isfile(os.path.join(ROOT, config_file)) and not os.path.isfile(config_file):
        return cli.fail(TOOL, f"config file {config_file} not found")
    main_args = [f"--config={os.path.abspath(args.config)}", *TINY, *rest]
    if args.workdir:
        if os.path.exists(args.workdir) and os.listdir(args.workdir):
            return cli.fail(TOOL, f"--workdir {args.workdir} is not empty; give a new folder")
        os.makedirs(args.workdir, exist_ok=True)
        return run_chaos(args, main_args, os.path.abspath(args.workdir))
    out = tempfile.mkdtemp(prefix="jaxcls-chaos-")
    try:
        return run_chaos(args, main_args, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
