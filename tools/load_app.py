r"""Load test of the web app: concurrent browser clients uploading good and bad images.

  python tools/load_app.py --checkpoint=DIR [--clients=8] [--images=25] [--bad_every=4]
      [--timeout=900]

Starts the app as a user does (``python -m jaxcls.app --checkpoint=DIR``) on a free localhost port,
then runs ``--clients`` threads, each driving its own headless Chromium (selenium): for each of its
``--images`` uploads it opens the page (a new Streamlit session), uploads one file through the
page's file input and waits for the answer: the result (``<name>: <class> (p%)``) for a good image,
the app's refusal message for a bad one (every ``--bad_every``-th upload: empty, an HTML page,
truncated, a pixel bomb). Streamlit talks to the page over a websocket, so a real browser is the
honest client; nothing is sent except through the page.

Reports every request answered or not, error pages (a Streamlit exception box or a traceback),
latency percentiles, the server's resident memory after warm-up and at the end, and whether the
server is still up. Exit code 0 when every request was answered correctly and the server is up, 1
otherwise, 2 on a usage error. Localhost only; bounded by ``--timeout`` seconds overall.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import cli  # noqa: E402

TOOL = "load_app"
REFUSED = "Cannot use this upload"  # jaxcls/app/streamlit_app.py's message prefix
ERROR_PAGE = ("Traceback", "stException")


# ------------------------------------------------------------------------------------ images
def good_image(i: int) -> tuple[str, bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    h, w = 64 + 16 * (i % 5), 80 + 24 * (i % 3)
    base = np.indices((h, w)).sum(0)[..., None] * rng.integers(1, 6, 3)
    array = np.clip(base % 256 + rng.integers(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    fmt, ext = (("JPEG", "jpg"), ("PNG", "png"))[i % 2]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return f"good_{i}.{ext}", buf.getvalue()


def bad_image(i: int) -> tuple[str, bytes]:
    kind = i % 4
    if kind == 0:
        return f"bad_{i}_empty.jpg", b""
    if kind == 1:
        return f"bad_{i}_page.jpg", b"<!doctype html><html><body>404 not found</body></html>"
    if kind == 2:
        data = good_image(i)[1]
        return f"bad_{i}_truncated.jpg", data[: len(data) // 3]
    png = good_image(1)[1]  # A PNG whose header declares 50,000 x 50,000 pixels.
    at = png.index(b"IHDR")
    body = struct.pack(">II", 50_000, 50_000) + png[at + 12 : at + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF)
    return f"bad_{i}_bomb.png", png[: at + 4] + body + crc + png[at + 21 :]


# ------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total / 2**20


# ------------------------------------------------------------------------------------ client
class Client(threading.Thread):
    def __init__(self, index: int, url: str, files: list[tuple[str, str, bool]], args):
        super().__init__(daemon=True)
        self.index, self.url, self.files, self.args = index, url, files, args
        self.answered, self.wrong, self.latencies, self.problems = 0, 0, [], []

    def driver(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)

    def run(self):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            browser = self.driver()
        except Exception as e:  # noqa: BLE001 - reported as this client's problem
            self.problems.append(f"client {self.index}: cannot start Chromium: {e}")
            return
        try:
            for name, path, good in self.files:
                t0 = time.monotonic()
                expected = f"{name}: " if good else f"{REFUSED}"
                try:
                    browser.get(self.url)
                    WebDriverWait(browser, self.args.request_timeout, 0.2).until(
                        lambda d: d.find_elements(By.CSS_SELECTOR, "input[type='file']")
                    )
                    browser.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(path)
                    WebDriverWait(browser, self.args.request_timeout, 0.2).until(
                        lambda d, e=expected: (
                            e in d.find_element(By.TAG_NAME, "body").text
                            or any(m in d.page_source for m in ERROR_PAGE)
                        )
                    )
                except Exception as e:  # noqa: BLE001 - a request not answered in time
                    self.problems.append(
                        f"client {self.index}: {name}: no answer ({type(e).__name__})"
                    )
                    continue
                self.latencies.append(time.monotonic() - t0)
                self.answered += 1
                page = browser.page_source
                if any(m in page for m in ERROR_PAGE) or (good and REFUSED in page):
                    self.wrong += 1
                    self.problems.append(f"client {self.index}: {name}: error page or refused")
        finally:
            browser.quit()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def load_test(args, folder: str) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(folder, "server.log"), "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jaxcls.app", f"--checkpoint={args.checkpoint}", f"--port={port}"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + args.timeout
    try:
        while not healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"load_app: the server did not start (log: {log.name})", flush=True)
                return 1
            time.sleep(1)
        files = []
        for i in range(args.clients * args.images):
            good = args.bad_every == 0 or (i + 1) % args.bad_every != 0
            name, data = good_image(i) if good else bad_image(i)
            path = os.path.join(folder, name)
            with open(path, "wb") as f:
                f.write(data)
            files.append((name, path, good))
        warm = Client(-1, url, files[:1], args)  # Loads and compiles the model once.
        warm.run()
        if warm.problems:
            print(f"load_app: warm-up failed: {warm.problems[0]}", flush=True)
            return 1
        rss_before = tree_rss_mb(server.pid)
        print(f"load_app: server up at {url}, RSS after warm-up {rss_before:.0f} MB", flush=True)
        t0 = time.monotonic()
        clients = [
            Client(c, url, files[c * args.images : (c + 1) * args.images], args)
            for c in range(args.clients)
        ]
        for c in clients:
            c.start()
        while any(c.is_alive() for c in clients) and time.monotonic() < deadline:
            time.sleep(5)
            done = sum(c.answered for c in clients)
            print(
                f"load_app: {done}/{len(files)} answered, {time.monotonic() - t0:.0f} s", flush=True
            )
        rss_after = tree_rss_mb(server.pid)
        up = server.poll() is None and healthy(url)
        answered = sum(c.answered for c in clients)
        wrong = sum(c.wrong for c in clients)
        problems = [p for c in clients for p in c.problems]
        if any(c.is_alive() for c in clients):
            problems.append(f"clients still running after --timeout={args.timeout} s")
        latencies = [t for c in clients for t in c.latencies]
        bad = sum(1 for f in files if not f[2])
        print(
            f"load_app: {args.clients} clients x {args.images} uploads ({bad} bad): answered "
            f"{answered}/{len(files)}, error pages or wrong answers {wrong}; latency p50 "
            f"{percentile(latencies, 0.5):.1f} s, p95 {percentile(latencies, 0.95):.1f} s; "
            f"server RSS {rss_before:.0f} MB after warm-up, {rss_after:.0f} MB at the end; "
            f"server {'up' if up else 'DOWN'}; {time.monotonic() - t0:.0f} s",
            flush=True,
        )
        for p in problems[:20]:
            print(f"load_app: PROBLEM {p}", flush=True)
        return 0 if answered == len(files) and not wrong and up and not problems else 1
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a workdir or checkpoint the app can serve")
    p.add_argument("--clients", type=cli.positive_int, default=8)
    p.add_argument("--images", type=cli.positive_int, default=25, help="uploads per client")
    p.add_argument("--bad_every", type=cli.non_negative_int, default=4, help="0: no bad uploads")
    p.add_argument("--request_timeout", type=cli.positive_int, default=300, help="seconds")
    p.add_argument("--timeout", type=cli.positive_int, default=1800, help="seconds in all")
    args = p.parse_args(argv)
    if not os.path.exists(args.checkpoint):
        return cli.fail(TOOL, f"--checkpoint {args.checkpoint} does not exist")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which(
        "chromedriver"
    ):
        return cli.fail(TOOL, "needs chromium and chromedriver on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="jaxcls-load-") as folder:
        return load_test(args, folder)


if __name__ == "__main__":
    sys.exit(main())
