r"""Command line: flags only, then one call into the trainer.

  python -m jaxcls.main --config=configs/effnet.py --workdir=/tmp/run [--config.num_epochs=5 ...]
  python -m jaxcls.main --config=configs/effnet.py --workdir=/tmp/run --mode=eval

A rerun with the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow (TensorBoard writer) is chatty.

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py[:arg]); fields overridable as --config.x=y."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (and evaluate), or eval only.")
flags.mark_flags_as_required(["config", "workdir"])

USER_ERROR_EXIT_CODE = 2


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Imported here so --help is fast and flag errors come before JAX starts.
    from jaxcls.trainer import parallel

    config = _CONFIG.value
    # Before JAX starts its backends: on CPU, one data-parallel device per core.
    n_cpu = parallel.cpu_device_count(
        config.cpu_devices, [config.batch_size, config.eval_batch_size]
    )
    if parallel.request_cpu_devices(n_cpu):
        logging.info("XLA:CPU devices: %d (config.cpu_devices=%s)", n_cpu, config.cpu_devices)
    from jaxcls.trainer import run as trainer

    workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
    logging.info("Config:\n%s", config)
    try:
        if _MODE.value == "train":
            trainer.run(config, workdir)
        else:
            trainer.run_eval(config, workdir)
    except (ValueError, FileNotFoundError, NotADirectoryError, trainer.TrainingAborted) as e:
        logging.debug("traceback", exc_info=True)
        print(f"jaxcls: error: {e}\n(--verbosity=1 shows the traceback)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def entry_point():
    app.run(main)


if __name__ == "__main__":
    entry_point()
