"""tools/launch_local.py: environment per process, [pN] prefixes, exit codes, one-line errors;
and the trainer's one-line message for a program the Apple GPU plugin cannot run."""

import os
import signal
import subprocess
import sys

import jax

from jaxcls.trainer import parallel
from tests.multihost import common
from tools import launch_local

LAUNCH = [sys.executable, os.path.join(common.ROOT, "tools", "launch_local.py")]


def test_child_env_names_the_coordinator_the_process_and_its_cpu_devices():
    base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_foo=1", "HOME": "/h"}
    env = launch_local.child_env(base, 1, 3, 4321, cpu_devices=2)
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
    assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"]) == ("3", "1")
    assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=2"
    assert env["HOME"] == "/h" and base["XLA_FLAGS"].startswith("--xla_force")  # base untouched
    assert launch_local.child_env(base, 0, 2, 1, 0)["XLA_FLAGS"] == base["XLA_FLAGS"]


def test_output_is_prefixed_and_the_exit_code_is_the_failing_childs():
    # Process 1 fails at once; process 0 would sleep for a minute but is stopped.
    script = (
        "import os, sys, time; i = int(os.environ['JAX_PROCESS_ID']); "
        "print('hello from', i, os.environ['JAX_NUM_PROCESSES'], flush=True); "
        "time.sleep(60) if i == 0 else sys.exit(5)"
    )
    r = subprocess.run(
        [*LAUNCH, "--processes=2", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert r.returncode == 5, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "[p0] hello from 0 2" in lines and "[p1] hello from 1 2" in lines
    ok = subprocess.run(
        [*LAUNCH, "--processes=3", "--", sys.executable, "-c", "print('done')"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert ok.returncode == 0 and sorted(ok.stdout.splitlines()) == [
        "[p0] done",
        "[p1] done",
        "[p2] done",
    ]


def test_user_errors_are_one_line_with_exit_code_2():
    for args, expected in (
        (["--processes=2", "python", "-c", "1"], "expected the command after '--'"),
        (["--processes=0", "--", "python"], "must be a positive integer"),
        (["--", "/no/such/program"], "/no/such/program"),
    ):
        r = subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=50)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("launch_local: error:") and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_apple_gpu_errors_become_one_line_with_the_way_out():
    e = jax.errors.JaxRuntimeError("UNIMPLEMENTED: stablehlo.reduce_window\nmore detail")
    message = parallel.apple_gpu_error(e, platform="mps")
    assert "Apple GPU plugin (mps)" in message and "stablehlo.reduce_window" in message
    assert "JAX_PLATFORMS=cpu" in message and "\n" not in message
    assert parallel.apple_gpu_error(e, platform="cpu") is None  # not on an Apple GPU: a bug
    assert parallel.apple_gpu_error(KeyError("x"), platform="mps") is None


def test_sigterm_is_forwarded_to_every_child():
    script = (
        "import os, signal, sys, time\n"
        "def stop(*_):\n"
        "    print('saving', os.environ['JAX_PROCESS_ID'], flush=True); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*LAUNCH, "--processes=2", "--", sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = 0
    while ready < 2:  # both children have installed their handler
        ready += proc.stdout.readline().strip().endswith("ready")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=50)
    assert proc.returncode == 143
    assert {"[p0] saving 0", "[p1] saving 1"} <= set(out.splitlines())
