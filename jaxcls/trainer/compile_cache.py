"""JAX's persistent compilation cache, on by default: a rerun, a resume or the next variant of a
study finds its compiled programs on disk and reaches its first step in seconds instead of
recompiling (EfficientNet-B0's train step takes over a minute to compile on a 2-core CPU).

Where the cache lives, first match wins:

* ``config.compilation_cache``: a folder, or ``'off'``;
* the environment variable ``JAXCLS_COMPILATION_CACHE``: a folder, or ``'off'``;
* ``~/.cache/jaxcls/xla`` (``$XDG_CACHE_HOME/jaxcls/xla`` when that is set).

JAX keys each entry by the program, the devices, the compile options and the jax/jaxlib versions,
so a stale entry is never used for a changed model, device count or upgrade; deleting the folder
is always safe.

Programs with the native depthwise kernels (`jaxcls.models.depthwise`) contain
``custom_partitioning`` calls, whose lowered form names the Python partitioning callback by its
memory address: a new process would never find them (jax-ml/jax#21159; EfficientNet's and
MobileNet's train steps were recompiled on every run). The cache therefore ignores that address
(``jax_remove_custom_partitioning_ptr_from_cache_key``), which is only safe while the callbacks'
code is the one that compiled the entries: the entries live in a subfolder named by a hash of the
module that defines them (`partitioning_tag`), so an edit of that module starts a new one. `Counter` counts the cache's hits and misses through ``jax.monitoring`` so a run
can say how much it reused.
"""

from __future__ import annotations

import hashlib
import os
import threading

import jax
from absl import logging

ENV = "JAXCLS_COMPILATION_CACHE"
OFF = ("off", "none", "false", "0")
# Every compiled program is written (JAX's default skips those under 1 s): a rerun should compile
# nothing, and under load even small programs take seconds to compile.
MIN_COMPILE_SECONDS = 0.0


def default_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxcls", "xla")


def resolve(setting: str = "") -> str | None:
    """The cache folder for a config value ('' = the environment, then the default), or None
    when switched off."""
    value = (setting or os.environ.get(ENV, "") or default_dir()).strip()
    if value.lower() in OFF:
        return None
    return os.path.abspath(os.path.expanduser(value))


PARTITIONING_MODULES = ("jaxcls/models/depthwise.py",)  # Every user of custom_partitioning.


def partitioning_tag() -> str:
    """The subfolder of the cache: a hash of the modules whose ``custom_partitioning`` callbacks
    the cache key leaves out."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    h = hashlib.sha256()
    for rel in PARTITIONING_MODULES:
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read())
    return "p" + h.hexdigest()[:12]


def enable(setting: str = "") -> str | None:
    """Points JAX's persistent compilation cache at ``resolve(setting)``; returns the folder (None
    if off). Call before the first compilation of the process; a folder that cannot be created is
    reported as a warning and the run goes on uncached (a cache must never stop training)."""
    path = resolve(setting)
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    folder = os.path.join(path, partitioning_tag())
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        logging.warning("Compilation cache disabled: cannot create %s (%s)", folder, e)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if jax.config.jax_compilation_cache_dir not in (None, folder):
        # A second run in this process (tests, a study) with another folder: JAX opens its cache
        # once, so close it for the new folder to take effect.
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    try:
        jax.config.update("jax_remove_custom_partitioning_ptr_from_cache_key", True)
    except AttributeError:  # A JAX without the option: programs with custom_partitioning (the
        pass  # CPU native kernels) then miss the cache, others still hit.
    COUNTER.install()
    return path


class Counter:
    """Counts persistent-cache hits and misses (entries written) in this process."""

    _EVENTS = {
        "/jax/compilation_cache/cache_hits": "hits",
        "/jax/compilation_cache/cache_misses": "misses",
    }

    def __init__(self):
        self.hits = 0
        self.misses = 0
        self._installed = False
        self._lock = threading.Lock()

    def _on_event(self, event: str, **kwargs) -> None:
        field = self._EVENTS.get(event)
        if field:
            with self._lock:
                setattr(self, field, getattr(self, field) + 1)

    def install(self) -> None:
        if not self._installed:
            jax.monitoring.register_event_listener(self._on_event)
            self._installed = True

    def reset(self) -> None:
        with self._lock:
            self.hits = self.misses = 0

    def snapshot(self) -> dict:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses}


COUNTER = Counter()
