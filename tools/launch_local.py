r"""Runs one command as N cooperating JAX processes on this machine (a local multi-host run).

  python tools/launch_local.py --processes=2 -- python -m jaxcls.main --config=configs/cnn.py \
      --workdir=/tmp/jaxcls/two

Each child gets the environment `jax.distributed.initialize()` reads -- ``JAX_COORDINATOR_ADDRESS``
(127.0.0.1 and a free port), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` -- so the trainer's
``config.distributed='auto'`` starts the multi-process runtime exactly as it would on a TPU pod or a
SLURM job; ``--cpu_devices=K`` also gives each process K XLA:CPU devices. Every line a child prints
is prefixed with ``[pN]``. SIGINT/SIGTERM are forwarded to every child (so a trainer saves its
checkpoint and stops); when one child fails the others are stopped (a lone survivor would wait
forever for its peers). The exit code is the first failing child's, else the first nonzero code
in process order, else 0. This is for trying and testing multi-process runs on one machine; on clusters the
cluster starts the processes (docs/scaling.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import cli  # noqa: E402

TOOL = "launch_local"
CPU_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(base: dict, index: int, count: int, port: int, cpu_devices: int) -> dict:
    """The environment of process ``index`` of ``count``: the coordinator, the process id and,
    when ``cpu_devices`` > 0, that many XLA:CPU devices (replacing any count in XLA_FLAGS)."""
    env = dict(base)
    env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
    env["JAX_NUM_PROCESSES"] = str(count)
    env["JAX_PROCESS_ID"] = str(index)
    env["PYTHONUNBUFFERED"] = "1"
    if cpu_devices > 0:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(CPU_DEVICE_FLAG)]
        env["XLA_FLAGS"] = " ".join([*flags, f"{CPU_DEVICE_FLAG}={cpu_devices}"])
    return env


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, b""):
        text = line.decode(errors="replace")
        out.write(f"{prefix} {text}" if text.endswith("\n") else f"{prefix} {text}\n")
        out.flush()
    stream.close()


def worst(codes: list[int]) -> int:
    """The launcher's exit code: the first nonzero child exit code, else 0 (a child killed by a
    signal counts as 128 + the signal number, like a shell)."""
    for code in codes:
        if code:
            return 128 - code if code < 0 else code
    return 0


def launch(
    command: list[str], processes: int, cpu_devices: int = 0, env: dict | None = None
) -> int:
    """Starts ``processes`` copies of ``command``, waits for all; returns `worst` of their codes."""
    port = free_port()
    base = dict(os.environ if env is None else env)
    children = []
    threads = []
    for i in range(processes):
        proc = subprocess.Popen(
            command,
            env=child_env(base, i, processes, port, cpu_devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        children.append(proc)
        t = threading.Thread(target=_pump, args=(proc.stdout, f"[p{i}]", sys.stdout), daemon=True)
        t.start()
        threads.append(t)

    def forward(signum, frame):
        del frame
        for p in children:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    first_failure = None
    try:
        stopping_since = None
        while any(p.poll() is None for p in children):
            failed = [p for p in children if p.poll() not in (None, 0)]
            if failed and stopping_since is None:
                first_failure = failed[0].returncode
                stopping_since = time.time()  # One failed: its peers would wait for it forever.
                for p in children:
                    if p.poll() is None:
                        p.terminate()
            if stopping_since is not None and time.time() - stopping_since > 30:
                for p in children:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for t in threads:
        t.join(timeout=5)
    # The child that failed first says why; the peers stopped because of it do not count.
    return worst([first_failure] if first_failure else [p.returncode for p in children])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        return cli.fail(
            TOOL, "expected the command after '--', e.g. --processes=2 -- python -m ..."
        )
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1 :]
    parser = cli.ArgumentParser(TOOL, description=__doc__)
    parser.add_argument("--processes", type=cli.positive_int, default=2, help="How many processes.")
    parser.add_argument(
        "--cpu_devices",
        type=cli.non_negative_int,
        default=0,
        help="XLA:CPU devices per process (0 = leave XLA_FLAGS as it is).",
    )
    args = parser.parse_args(own)
    if not command:
        return cli.fail(TOOL, "no command after '--'")
    try:
        return launch(command, args.processes, args.cpu_devices)
    except cli.FILE_ERRORS as e:  # The command does not exist or cannot be run.
        return cli.fail(TOOL, e)


if __name__ == "__main__":
    sys.exit(main())
