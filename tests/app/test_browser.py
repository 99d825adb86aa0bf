"""The web app in a real browser: the server started as a user starts it (``python -m jaxcls.app``)
on a free localhost port, driven by headless Chromium through selenium: a photo upload shows its
top-k and the overlay, a broken file shows its message, and the next good upload still works.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed by .ci/run); skipped with the
reason when they are absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.app import uploads

pytest.importorskip("skimage.data")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver on PATH (Debian: apt-get install chromium "
    "chromium-driver; .ci/run installs them)",
)
TIMEOUT = 300  # seconds: server start, model compile and Grad-CAM compile on a loaded CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the server at {url} did not become healthy in {timeout} s")


@pytest.fixture
def server(app_workdir, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxcls.app", f"--checkpoint={app_workdir}", f"--port={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _upload(driver, path: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.CSS_SELECTOR, "input[type='file']")
    # ChromeDriver appends to a multiple-file input's selection: empty it so only `path` is sent.
    driver.execute_script("arguments[0].value = '';", field)
    field.send_keys(path)


def _wait_for(driver, condition, what: str, timeout: float = TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(
        condition, message=f"timed out waiting for {what}"
    )


def test_browser_upload_classify_explain_and_survive_a_broken_file(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, proc = server
    photo, broken, second = tmp_path / "chelsea.jpg", tmp_path / "broken.jpg", tmp_path / "cup.jpg"
    photo.write_bytes(uploads.photo("chelsea"))
    broken.write_bytes(uploads.photo("coffee")[:3000])  # a truncated download
    second.write_bytes(uploads.photo("coffee"))

    browser.get(url)
    _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type='file']"), "upload")
    _upload(browser, str(photo))
    _wait_for(browser, lambda d: "top-1:" in d.find_element(By.TAG_NAME, "body").text, "top-k")
    overlay = _wait_for(
        browser,
        lambda d: [
            e for e in d.find_elements(By.CSS_SELECTOR, "img[alt='saliency overlay']")
            if e.get_attribute("naturalWidth") not in (None, "0")
        ],
        "the overlay image",
    )  # fmt: skip
    assert int(overlay[0].get_attribute("naturalWidth")) == 451  # chelsea is 451 x 300
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "chelsea.jpg: " in body and "latency: decode + preprocess" in body
    shot = tmp_path / "app.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    _upload(browser, str(broken))
    _wait_for(
        browser,
        lambda d: (
            "broken.jpg: corrupt or truncated image" in d.find_element(By.TAG_NAME, "body").text
        ),
        "the broken file's message",
    )
    assert proc.poll() is None  # the server is still up
    _upload(browser, str(second))
    _wait_for(browser, lambda d: "cup.jpg: " in d.find_element(By.TAG_NAME, "body").text, "cup")

    # Both good uploads shown once, once the rerun has finished (no "Running" status).
    def settled(d):
        running = d.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        overlays = d.find_elements(By.CSS_SELECTOR, "img[alt='saliency overlay']")
        return not running and len(overlays) == 2

    _wait_for(browser, settled, "the page to settle with two overlays")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "chelsea.jpg: " in body and "cup.jpg: " in body, body
    assert "broken.jpg: corrupt or truncated image" in body, body
    assert proc.poll() is None
