r"""Command line: flags only, then one call into the trainer.

  python -m jaxcls.main --config=configs/effnet.py --workdir=/tmp/run [--config.num_epochs=5 ...]
  python -m jaxcls.main --config=configs/effnet.py --workdir=/tmp/run --mode=eval

A rerun with the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import os
import re
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
    from jaxcls.native import malloc

    config = _CONFIG.value
    # Before JAX is imported and starts its threads: malloc that keeps freed memory; then, before
    # it starts its backends, on CPU one data-parallel device per core.
    if config.reuse_memory and malloc.reuse_freed_memory():
        logging.info("malloc keeps freed memory in the process (config.reuse_memory)")
    from jaxcls.trainer import parallel

    n_cpu = parallel.cpu_device_count(
        config.cpu_devices, [config.batch_size, config.eval_batch_size]
    )
    if parallel.request_cpu_devices(n_cpu, auto=not config.cpu_devices):
        logging.info("XLA:CPU devices: %d (config.cpu_devices=%s)", n_cpu, config.cpu_devices)
    from jaxcls import files
    from jaxcls.trainer import run as trainer

    workdir = files.absolute(_WORKDIR.value)  # A local folder or a gs:// URL.
    logging.info("Config:\n%s", config)
    try:
        if _MODE.value == "train":
            trainer.run(config, workdir)
        else:
            trainer.run_eval(config, workdir)
    except Exception as e:
        message = _user_error(e, workdir, (trainer.TrainingAborted,))
        if message is None:
            raise
        logging.debug("traceback", exc_info=True)
        _quiet_background_logs()
        print(f"jaxcls: error: {message}\n(--verbosity=1 shows the traceback)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def _quiet_background_logs() -> None:
    """Drops log records from here on and waits for any being written, so that the one-line
    error is the last word: Orbax's background checkpoint writers log their own copy of a disk
    error, with a traceback, and under load one landed after our line."""
    import logging as std_logging

    std_logging.disable(std_logging.CRITICAL)
    for handler in std_logging.getLogger().handlers:
        # absl's handler passes each record to an inner handler, which holds the lock.
        for h in (handler, getattr(handler, "python_handler", None)):
            if h is not None:
                h.acquire()
                try:
                    h.flush()
                finally:
                    h.release()
    sys.stderr.flush()


def _user_error(e: Exception, workdir: str, also=()) -> str | None:
    """The one-line message for an error the user can act on, or None for a bug (traceback)."""
    from jaxcls import files

    disk = files.disk_error(e)  # A full or read-only disk, however deep it surfaced.
    if disk is not None:
        return (
            f"cannot write {disk.filename or workdir}: {disk.strerror}; the last committed "
            "checkpoint is intact: free space and rerun the same command to resume"
        )
    if isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError, *also)):
        return str(e)
    from jaxcls.trainer import parallel

    return parallel.apple_gpu_error(e)  # An op the Apple GPU plugin lacks: the way out; or None.


def _parse_flags(argv):
    """absl's flag parsing, with a bad flag or ``--config.x=y`` override (a field the config does
    not have, a value of the wrong type) as one line and exit code 2 instead of a traceback."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"jaxcls: error: {_flag_error(e, argv)}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def _flag_error(e: Exception, argv) -> str:
    text = str(e)
    if isinstance(e, KeyError | AttributeError):  # ml_collections: a field the config lacks
        inner = e
        while isinstance(inner, BaseException) and inner.args:
            inner = inner.args[0]
        m = re.match(r"'([^']+)'\s*", str(inner))
        if m:
            name, hint = m.group(1), str(inner)[m.end() :]
            pattern = rf"--config\.(.+\.)?{re.escape(name)}(=|$)"
            bad = [a for a in argv[1:] if re.match(pattern, a)]
            text = f"{bad[0] if bad else name}: the config has no field {name!r}"
            text += f"; {hint}" if hint else ""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def entry_point():
    # The console script's sub-command ``jaxcls serve --checkpoint=DIR [--port=N]`` starts the web
    # app (jaxcls.app); everything else is the trainer's command line, as ``python -m jaxcls.main``.
    if sys.argv[1:2] == ["serve"]:
        from jaxcls.app.__main__ import main as serve

        sys.exit(serve(sys.argv[2:], prog="jaxcls serve"))
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    entry_point()
