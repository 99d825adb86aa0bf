r"""Command line of a study: flags only, then `jaxcls.study.run.run_study`.

  python -m jaxcls.study --config=configs/studies/NAME.py --workdir=DIR \
      [--grid='optimizer.learning_rate=[5e-4,2e-4];data.rebalance=[up,mean]'] \
      [--metric=val/accuracy --metric=latency ...] [--config.x=y: applied to every variant]

Bad input (an unknown study file, a malformed --grid, a grid key that is not a config field, an
unknown metric, a variant whose model cannot be built) prints one line, ``study: error: ...``,
and exits with code 2 before anything runs. Exit code 1 when a variant failed, 143 when one was
interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Study config (configs/studies/*.py); fields overridable as --config.x=y."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the study: one subfolder per variant.")
_GRID = flags.DEFINE_string("grid", "", "'a.b=[v1,v2];c=[x,y]': replaces the config's study.grid.")
_METRIC = flags.DEFINE_multi_string(
    "metric", [], "Sort column of the table (the first), and more bar charts (repeat or a,b)."
)

USAGE_EXIT = 2


def _error(message) -> None:
    text = " ".join(str(message).split()) or type(message).__name__
    print(f"study: error: {text}", file=sys.stderr, flush=True)
    sys.exit(USAGE_EXIT)


def _parse_flags(argv):
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        _error(e)
    if _CONFIG.value is None or not _WORKDIR.value:
        _error("--config=configs/studies/NAME.py and --workdir=DIR are required")
    if len(rest) > 1:
        _error(f"unexpected arguments: {' '.join(rest[1:])}")
    return rest


def _request_devices(config) -> None:
    """In-process studies: malloc (`jaxcls.native.malloc`) and the XLA:CPU device count for
    every variant, before JAX starts."""
    from jaxcls.native import malloc
    from jaxcls.study import spec
    from jaxcls.trainer import parallel

    if config.reuse_memory:
        malloc.reuse_freed_memory()

    batches = [config.batch_size, config.eval_batch_size]
    for partial in [*config.study.variants.values(), config.study.smoke_overrides]:
        flat = spec.flatten(partial)
        batches += [flat.get("batch_size", 0), flat.get("eval_batch_size", 0)]
    parallel.request_cpu_devices(
        parallel.cpu_device_count(config.cpu_devices, batches), auto=not config.cpu_devices
    )


def main(argv):
    del argv
    from jaxcls.study import run, spec

    filename = config_flags.get_config_filename(flags.FLAGS["config"])
    config = _CONFIG.value
    try:
        is_study = "study" in config and "smoke" in config
    except OSError as e:  # config_flags reports a file it could not load on first use
        _error(f"cannot load {filename}: {str(e).strip().splitlines()[-1].strip()}")
    if not is_study:
        _error(
            f"{filename} is not a study config (no study section): start it from "
            "jaxcls.config_base.study_config()"
        )
    if config.study.subprocess:
        logging.set_verbosity(logging.WARNING)  # the variants' logs go to their study.log
    else:
        _request_devices(config)
    metrics = [m for value in _METRIC.value for m in value.split(",") if m.strip()]
    title = os.path.splitext(os.path.basename(filename))[0]
    try:
        code = run.run_study(
            config, _WORKDIR.value, grid=_GRID.value, metrics=tuple(metrics), title=title
        )
    except (spec.StudyError, FileNotFoundError, NotADirectoryError) as e:
        _error(e)
    sys.exit(code)


def entry_point():
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    entry_point()
