r"""Starts the web app on localhost.

  python -m jaxcls.app --checkpoint=DIR [--port=8501] [--address=127.0.0.1] \
      [--max_upload_mb=16] [--max_pixels=40000000]
  jaxcls serve --checkpoint=DIR [--port=N]            (the same, through the console script)

DIR is a training workdir (its best checkpoint), a checkpoint folder, or the output of
tools/convert_weights.py. The checkpoint is checked before the server starts; a bad flag or path
prints one line and exits with code 2. The server runs headless (no browser is opened) until
stopped (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys

USAGE_EXIT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}\n")


def parse_args(argv, prog: str = "jaxcls.app") -> argparse.Namespace:
    p = _Parser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="workdir, checkpoint folder or converted")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--max_upload_mb", type=float, default=16.0, help="larger uploads are refused")
    p.add_argument("--max_pixels", type=int, default=40_000_000, help="decompression-bomb limit")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port must be 1..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        p.error("--max_upload_mb and --max_pixels must be positive")
    return args


def command(args: argparse.Namespace) -> tuple[list[str], dict]:
    """The ``streamlit run`` command line and environment serving ``args``."""
    from jaxcls.trainer import checkpoint as ckpt_lib

    step_dir = ckpt_lib.find_step_dir(args.checkpoint)  # CheckpointError before starting
    ckpt_lib.read_meta(step_dir)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "streamlit_app.py")
    max_bytes = int(args.max_upload_mb * 1024 * 1024)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        **os.environ,
        "JAXCLS_APP_CHECKPOINT": step_dir,
        "JAXCLS_APP_MAX_BYTES": str(max_bytes),
        "JAXCLS_APP_MAX_PIXELS": str(args.max_pixels),
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
    }
    # Streamlit's own limit (MB) above ours, so an oversized upload reaches the app's message.
    streamlit_mb = max(1, int(2 * args.max_upload_mb) + 1)
    cmd = [
        sys.executable, "-m", "streamlit", "run", script,
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--server.headless", "true",
        "--server.maxUploadSize", str(streamlit_mb),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    return cmd, env


def main(argv=None, prog: str = "jaxcls.app") -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv, prog)
    from jaxcls.trainer.checkpoint import CheckpointError

    try:
        cmd, env = command(args)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return USAGE_EXIT
    print(
        f"serving {env['JAXCLS_APP_CHECKPOINT']} on http://{args.address}:{args.port}", flush=True
    )
    os.execve(sys.executable, cmd, env)  # the server replaces this process (signals reach it)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
