"""The Dagster UI starts on localhost and lists our assets in a real headless browser.

Needs Debian's `chromium` and `chromium-driver` (CI installs them); skipped where they are absent.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium/chromedriver absent"),
]



def _our_asset_names() -> list[str]:
    from dagster_project.definitions import defs

    graph = defs().resolve_asset_graph()
    return sorted(key.to_user_string() for key in graph.materializable_asset_keys)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


@pytest.fixture()
def webserver(tmp_path: Path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "NUCLEUS_SUBTYPING_DATA": str(tmp_path / "d")}
    log = open(tmp_path / "webserver.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
         "-m", "dagster_project.definitions"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_asset_catalog_lists_our_assets(webserver: str, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,3000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    expected = _our_asset_names()
    assert expected
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{webserver}/assets")
        try:
            WebDriverWait(driver, 90, poll_frequency=1).until(
                lambda d: all(name in d.find_element("tag name", "body").text
                              for name in expected)
            )
        finally:
            driver.save_screenshot(str(tmp_path / "assets.png"))
        body = driver.find_element("tag name", "body").text
        missing = [name for name in expected if name not in body]
        assert not missing, f"not listed in the UI: {missing}; see {tmp_path / 'assets.png'}"
    finally:
        driver.quit()
