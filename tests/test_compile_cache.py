"""The persistent compilation cache: a second run of the same config, in a new process, finds its
programs on disk (a rerun or resume reaches its first step without recompiling), also those with
custom-partitioned native kernels."""

import json
import os
import subprocess
import sys

import jax

from jaxcls.trainer import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [  # A quarter-size EfficientNet-Lite0: its train step has the native depthwise kernels,
    # whose custom partitioning once kept every such step out of the cache (compile_cache docs).
    "--config=configs/cnn.py",
    "--config.model.name=efficientnet_lite0",
    "--config.model.channel_multiplier=0.25",
    "--config.model.depth_multiplier=0.25",
    "--config.data.image_size=16",
    "--config.num_epochs=1",
    "--config.batch_size=32",
    "--config.efficiency.enabled=False",
]


def run(workdir, *extra, env_cache=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop(compile_cache.ENV, None)
    if env_cache is not None:
        env[compile_cache.ENV] = env_cache
    r = subprocess.run(
        [sys.executable, "-m", "jaxcls.main", f"--workdir={workdir}", *ARGS, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)["compile_cache"], r.stderr


def test_second_run_reuses_the_first_runs_programs(tmp_path):
    cache = tmp_path / "cache"
    # The environment variable places the cache; the config field names the same folder.
    first, _ = run(tmp_path / "a", env_cache=str(cache))
    assert first["dir"] == str(cache)
    assert first["misses"] >= 1 and first["hits"] == 0  # The train step was compiled and written.
    assert os.listdir(cache)
    second, log = run(tmp_path / "b", f"--config.compilation_cache={cache}", env_cache="off")
    assert second["dir"] == str(cache)  # The config field wins over the environment.
    assert second["hits"] >= first["misses"]  # Every program written by the first run is reused,
    assert second["misses"] == 0  # and nothing had to be compiled again.
    assert "programs reused" in log


def test_off_disables_jax_cache(tmp_path):
    assert compile_cache.enable("off") is None
    assert not jax.config.jax_enable_compilation_cache
    assert compile_cache.enable(str(tmp_path / "c")) == str(tmp_path / "c")
    assert jax.config.jax_enable_compilation_cache
    folder = tmp_path / "c" / compile_cache.partitioning_tag()  # See test_partitioning_tag.
    assert jax.config.jax_compilation_cache_dir == str(folder) and folder.is_dir()
    compile_cache.enable("off")


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve("") == str(tmp_path / "env")
    assert compile_cache.resolve(str(tmp_path / "cfg")) == str(tmp_path / "cfg")
    assert compile_cache.resolve("off") is None
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve("") == str(tmp_path / "xdg" / "jaxcls" / "xla")


def test_partitioning_tag_follows_the_partitioning_code(tmp_path, monkeypatch):
    """Entries whose cache key leaves out the partitioning callbacks live in a folder named by
    those callbacks' code: another version of that code never reads them."""
    tag = compile_cache.partitioning_tag()
    assert tag == compile_cache.partitioning_tag() and len(tag) == 13
    copy = tmp_path / "jaxcls" / "models" / "depthwise.py"
    copy.parent.mkdir(parents=True)
    with open(os.path.join(ROOT, compile_cache.PARTITIONING_MODULES[0])) as f:
        copy.write_text(f.read() + "\n# an edit\n")
    monkeypatch.setattr(compile_cache, "PARTITIONING_MODULES", (str(copy),))
    assert compile_cache.partitioning_tag() != tag
