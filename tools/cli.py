"""What the command-line tools share: their one error report and the checks of their flags.

Every tool reports a user error (a missing or unreadable path, a path of the wrong kind, an unknown
model, tag or source, a malformed flag value) as one line, ``<tool>: error: <message>``, on stderr
and exits with code 2; never with a traceback. A tool catches only the library's own error types
(ValueError and its subclasses such as WeightsError, SourceError, DecodeError; CheckpointError;
the file errors in `FILE_ERRORS`) around what it asks the library to do; anything else is a bug and
keeps its traceback.

Imports only the standard library at import time (``tools/param_counts.py`` runs in a reference
venv without JAX); `check_models` imports the model zoo when called.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

USAGE_EXIT = 2

# A missing, unreadable or wrong-kind path, as the OS reports it.
FILE_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def one_line(message) -> str:
    """``message`` (text or an exception) on one line: its non-empty lines joined by '; ' (by a
    space after a line that ends with ':')."""
    text = str(message).strip() if not isinstance(message, BaseException) else _exc_text(message)
    out = ""
    for line in (line.strip() for line in text.splitlines()):
        if line:
            out += (" " if not out or out.endswith(":") else "; ") + line if out else line
    return out


def _exc_text(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, OSError) and e.filename and e.strerror:  # "[Errno 2] ..." -> "path: why"
        text = f"{e.filename}: {e.strerror}"
    return text or type(e).__name__


def fail(tool: str, message) -> int:
    """Prints ``<tool>: error: <message>`` (one line) on stderr; returns the exit code, 2."""
    print(f"{tool}: error: {one_line(message)}", file=sys.stderr, flush=True)
    return USAGE_EXIT


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (a missing or malformed flag) are the tools' one line and exit code 2,
    without the usage text in front (``--help`` still prints it)."""

    def __init__(self, tool: str, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)
        self.tool = tool

    def error(self, message: str):
        self.exit(USAGE_EXIT, f"{self.tool}: error: {one_line(message)}\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 0, e.g. '0,1,2'."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return [non_negative_int(t) for t in items]


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def executable(text: str) -> str:
    """An argparse type: a program that exists and can be run ('' for none)."""
    if text and not shutil.which(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an executable program")
    return text


def output_file(text: str) -> str:
    """An argparse type: a file path that can be written (not a folder, its folder exists)."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory, expected a file path")
    parent = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} does not exist")
    return text


def check_models(names, size: int | None = None) -> None:
    """Raises ValueError for an unknown model name (with close names) and InputSizeError (a
    ValueError) for a ``size`` a model cannot take; builds nothing (abstract evaluation only)."""
    from jaxcls import models
    from jaxcls.models import summary

    for name in names:
        info = models.model_info(name)
        if size is not None:
            summary.check_input_size(summary.abstract_model(info.name), size, name)
