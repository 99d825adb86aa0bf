"""Runs a study's variants one after another, each in ``DIR/<variant>/`` with the normal trainer.

Each variant's trainer config is written to ``DIR/<variant>/config.py`` (a config file that
``python -m jaxcls.main --config=... --workdir=DIR/<variant>`` also runs alone), then run:

* ``study.subprocess=True`` (the default): ``python -m jaxcls.main`` in a child process, its
  output in ``DIR/<variant>/study.log``. A crash, an out-of-memory kill or a leak in one variant
  cannot take the study down, each variant gets its own XLA device count (``cpu_devices`` is
  fixed once a process starts JAX), and a SIGTERM to the study reaches the running variant,
  which checkpoints and stops (exit code 143, resumable).
* ``study.subprocess=False``: `jaxcls.trainer.run.run` in this process. Faster for many tiny
  variants (JAX and TensorFlow are imported once), which is what the smoke tests use.

A variant is finished when its ``results.json`` has the per-split metrics (and the cross-dataset
section when ``eval.dataset`` is set; that is evaluated after training by ``--mode=eval``). A
rerun skips finished variants; an interrupted one is run again and the trainer resumes it from
its own checkpoints. A failed variant gets ``DIR/<variant>/error.txt`` and the study goes on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import traceback

import ml_collections

from jaxcls import files
from jaxcls.benchmark.compare import duration

PREEMPTED_EXIT_CODE = 143  # as jaxcls.trainer.loop: stopped on request, checkpoint saved
CONFIG_FILE = "config.py"
LOG_FILE = "study.log"
ERROR_FILE = "error.txt"

_CONFIG_TEMPLATE = '''"""Variant {name} of a study, written by python -m jaxcls.study. Run it alone:

  python -m jaxcls.main --config={path} --workdir={workdir}
"""

from jaxcls.study import runner

CONFIG = {text!r}


def get_config():
    return runner.config_from_json(CONFIG)
'''


@dataclasses.dataclass
class Outcome:
    """What happened to one variant in this invocation."""

    name: str
    status: str  # 'done' | 'skipped' (finished before) | 'failed' | 'interrupted' | 'not run'
    seconds: float = 0.0
    error: str = ""


def finished(workdir: str, config: ml_collections.ConfigDict) -> tuple[bool, bool]:
    """``(trained, complete)``: results.json has the per-split metrics; and also the
    cross-dataset section when the variant has ``eval.dataset``."""
    results = files.read_json(os.path.join(workdir, "results.json"), None) or {}
    trained = bool(results.get("splits"))
    cross = not config.eval.dataset or config.eval.dataset in (results.get("cross_dataset") or {})
    return trained, trained and cross


def write_config(workdir: str, name: str, config: ml_collections.ConfigDict) -> str:
    """Writes the variant's config file; returns its path. Warns when an earlier run of the
    variant had a different config (its checkpoints and results are from that one)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    text = config.to_json(sort_keys=True)
    old = _read(path)
    body = _CONFIG_TEMPLATE.format(name=name, path=path, workdir=workdir, text=text)
    if old is not None and old != body:
        print(
            f"study: warning: {name}: the config differs from the one in {path}; its checkpoints "
            "and results are from that one (delete the folder to start it afresh)",
            flush=True,
        )
    files.write_text(path, body)
    return path


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _last_error(log_path: str) -> str:
    """The error a failed child printed: its ``jaxcls: error:`` line, else the last line."""
    lines = [line.strip() for line in (_read(log_path) or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("jaxcls: error:"):
            return line[len("jaxcls: error:") :].strip()
    return lines[-1] if lines else "no output"


class _Child:
    """The running child process; a SIGTERM to the study is passed on to it."""

    proc: subprocess.Popen | None = None

    @classmethod
    def forward(cls, signum, frame):
        if cls.proc is not None and cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)


def run_subprocess(workdir: str, config_path: str, mode: str) -> tuple[int, str]:
    """``python -m jaxcls.main`` for one variant; ``(exit code, error line or '')``."""
    log_path = os.path.join(workdir, LOG_FILE)
    command = [sys.executable, "-m", "jaxcls.main", f"--config={config_path}"]
    command += [f"--workdir={workdir}", f"--mode={mode}"]
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        # Its own session: a Ctrl-C reaches the study, which passes it on as SIGTERM (the
        # trainer then checkpoints and stops), not the child directly.
        _Child.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = _Child.proc.wait()
        except KeyboardInterrupt:
            _Child.forward(signal.SIGTERM, None)
            _Child.proc.wait()
            raise
        finally:
            _Child.proc = None
    return rc, ("" if rc == 0 else _last_error(log_path))


def run_in_process(workdir: str, config: ml_collections.ConfigDict, mode: str) -> tuple[int, str]:
    """`jaxcls.trainer.run.run` (or ``run_eval``) here; ``(0, '')`` or ``(1, error line)`` with
    the traceback in the variant's log."""
    from jaxcls.trainer import run as trainer

    try:
        (trainer.run if mode == "train" else trainer.run_eval)(config, workdir)
        return 0, ""
    except trainer.Preempted:
        return PREEMPTED_EXIT_CODE, "stopped on request (SIGTERM); rerun to resume"
    except Exception as e:  # noqa: BLE001 - a failed variant is recorded, the study goes on.
        with open(os.path.join(workdir, LOG_FILE), "a") as log:
            log.write(traceback.format_exc())
        first = (str(e).strip().splitlines() or [""])[0]
        return 1, f"{type(e).__name__}: {first}" if first else type(e).__name__


def run_variant(name: str, workdir: str, config, *, use_subprocess: bool) -> Outcome:
    """Trains (or resumes) one variant, then its cross-dataset evaluation; skips what is done."""
    trained, complete = finished(workdir, config)
    if complete:
        return Outcome(name, "skipped")
    path = write_config(workdir, name, config)
    error_path = os.path.join(workdir, ERROR_FILE)
    if os.path.exists(error_path):
        os.remove(error_path)  # a rerun of a failed variant starts with a clean record
    t0 = time.time()
    for mode in ("train", "eval") if not trained else ("eval",):
        if mode == "eval" and not config.eval.dataset:
            break
        if use_subprocess:
            rc, error = run_subprocess(workdir, path, mode)
        else:
            rc, error = run_in_process(workdir, config, mode)
        if rc == PREEMPTED_EXIT_CODE:
            return Outcome(name, "interrupted", time.time() - t0, error)
        if rc != 0:
            files.write_text(
                error_path, f"{mode} failed (exit code {rc}): {error}\nlog: {LOG_FILE}\n"
            )
            return Outcome(name, "failed", time.time() - t0, f"{mode}: {error}")
    return Outcome(name, "done", time.time() - t0)


def run_all(
    workdir: str, configs: dict, *, use_subprocess: bool, summary=None
) -> dict[str, Outcome]:
    """Runs ``configs`` ({variant: trainer config}) in order with a progress line per variant
    (``variant k/N name ... ETA``); stops early only when a variant is interrupted.
    ``summary(name)`` gives the text shown after a finished variant (e.g. its metric)."""
    previous = signal.signal(signal.SIGTERM, _Child.forward) if use_subprocess else None
    outcomes, spent, ran, n, t0 = {}, 0.0, 0, len(configs), time.time()
    try:
        for k, (name, config) in enumerate(configs.items(), 1):
            remaining = n - k + 1
            eta = f"ETA {duration(spent / ran * remaining)}" if ran else "ETA unknown"
            print(
                f"study: variant {k}/{n} {name} ... ({duration(time.time() - t0)} elapsed, {eta})",
                flush=True,
            )
            try:
                outcome = run_variant(
                    name, os.path.join(workdir, name), config, use_subprocess=use_subprocess
                )
            except KeyboardInterrupt:
                outcome = Outcome(name, "interrupted", error="Ctrl-C; rerun to resume")
            outcomes[name] = outcome
            if outcome.status != "skipped":
                spent, ran = spent + outcome.seconds, ran + 1
            detail = {
                "skipped": "finished before: skipped",
                "done": f"done in {duration(outcome.seconds)}",
                "failed": f"FAILED after {duration(outcome.seconds)}: {outcome.error}",
                "interrupted": f"interrupted: {outcome.error or 'rerun to resume'}",
            }[outcome.status]
            extra = summary(name) if summary and outcome.status in ("done", "skipped") else ""
            print(f"study: variant {k}/{n} {name}: {detail}{extra}", flush=True)
            if outcome.status == "interrupted":
                break
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for name in configs:
        outcomes.setdefault(name, Outcome(name, "not run"))
    return outcomes


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A config written by `write_config` (JSON lists back to the tuples configs use), locked."""
    config = ml_collections.ConfigDict(_tuples(json.loads(text)))
    config.lock()
    return config
