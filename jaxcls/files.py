"""JSON files of a run (results.json, meta): written atomically, readable by any later process.

Every file of a run that jaxcls itself writes or reads (results, splits, reports, the runs table)
goes through `etils.epath`, so a workdir may be a local folder or a ``gs://`` (or s3://) URL;
`path`, `is_url`, `absolute`, `exists` and `makedirs` are the helpers. Local files are written to
a temporary file and renamed; an object store commits an object whole when it is closed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile

import numpy as np
from etils import epath

URL_SCHEMES = ("gs://", "s3://", "az://", "hf://")


def is_url(p) -> bool:
    """Whether ``p`` names an object-store location (gs://, s3://, ...) rather than a local path."""
    return os.fspath(p).startswith(URL_SCHEMES)


def path(p) -> epath.Path:
    """``p`` as an `epath.Path` (a local path or a URL)."""
    return epath.Path(p)


def absolute(p) -> str:
    """A user-given location as a full one: URLs unchanged, local paths with ``~`` expanded and
    made absolute (``os.path.abspath`` would turn ``gs://b/x`` into ``$PWD/gs:/b/x``)."""
    p = os.fspath(p)
    return p if is_url(p) else os.path.abspath(os.path.expanduser(p))


def exists(p) -> bool:
    return path(p).exists()


def makedirs(p) -> None:
    """Creates the folder ``p`` and its parents (a no-op for what exists)."""
    path(p).mkdir(parents=True, exist_ok=True)


def json_default(o):
    """``json.dump``'s ``default``: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def to_json_tree(obj):
    """``obj`` with numpy values turned into plain JSON types (a deep copy)."""
    return json.loads(json.dumps(obj, default=json_default))


def write_json(path: str, obj: dict) -> None:
    """Writes JSON atomically: a temporary file beside ``path``, then a rename, so a kill never
    leaves a half-written file that a rerun would trust."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, default=json_default)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", newline: str | None = None):
    """A file object for writing ``path`` atomically: it is a temporary file beside ``path``
    (a unique name, so concurrent writers never mix), flushed to disk and renamed over ``path``
    when the block ends; on any error (a full disk, a kill) it is deleted and ``path`` keeps its
    old contents. For CSV: ``atomic_open(path, newline="")``. At a URL (`is_url`) the object
    store's own write is used: it commits the object whole when the file is closed."""
    if is_url(path):
        with epath.Path(path).open(mode) as f:
            yield f
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, mode, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes text (a CSV, a Markdown table, a config file) atomically, as `write_json`."""
    with atomic_open(path, newline="") as f:
        f.write(text)


def read_json(path: str, default=None):
    """The JSON object in ``path``, or ``default`` when the file does not exist."""
    if not exists(path):
        return default
    return json.loads(epath.Path(path).read_text())


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


def disk_error(e: BaseException) -> OSError | None:
    """The OSError of a full, read-only or failing disk behind ``e`` (itself, or anywhere in its
    ``__cause__``/``__context__`` chain, as when Orbax re-raises a background write's error), or
    None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return e
        # TensorStore (Orbax's array writer) reports an OS error as text in a ValueError.
        code = re.search(r"os_error_code='(\d+)'", str(e))
        if code and int(code.group(1)) in DISK_ERRNOS:
            path = re.search(r'file "([^"]+)"', str(e))
            n = int(code.group(1))
            return OSError(n, os.strerror(n), path.group(1) if path else None)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return None


def files_under(paths) -> list[str]:
    """The local ``paths`` that are files, and the files in those that are folders (walked, names
    sorted), in that order; broken links and other non-files left out. ``paths`` is gone over
    once, so a generator works."""
    found = []
    for p in paths:
        found.append(p)  # a folder walks to its files; os.walk of a file yields nothing
        for dirpath, _, names in os.walk(p):
            found.extend(os.path.join(dirpath, name) for name in sorted(names))
    return [name for name in found if os.path.isfile(name)]


def size_bytes(p: str) -> int:
    """The size on disk of the local file ``p``, or of all files under the folder ``p``."""
    return sum(os.path.getsize(name) for name in files_under([p]))


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float when it is finite, else None (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None
