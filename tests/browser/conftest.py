"""A real server on the committed models, and headless Debian chromium driven by Selenium (no browser download).

Skips with the reason when chromium, chromedriver or selenium is missing (`.ci/run` installs them as root:
`apt-get install chromium chromium-driver`; selenium is in the dev extra). Screenshots go to
$NEUROSERVE_SCREENSHOTS when set (docs/img for the committed set), else to a temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
LAPTOP = (1280, 900)


def _missing() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[dev]')"
    return None


@pytest.fixture(scope="session")
def browser_missing() -> str | None:
    return _missing()


@pytest.fixture(scope="session")
def live_server(browser_missing, request):
    """The committed models in a real `neuroserve serve` process (tests/conftest.py: models_server)."""
    if browser_missing:
        pytest.skip(browser_missing)
    return request.getfixturevalue("models_server")


def make_driver(width: int = LAPTOP[0], height: int = LAPTOP[1]):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--window-size={width},{height}",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit chromedriver path: Selenium Manager (which would download a driver) never runs.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="session")
def driver(browser_missing):
    if browser_missing:
        pytest.skip(browser_missing)
    drv = make_driver()
    drv.set_script_timeout(30)
    yield drv
    drv.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    target = os.environ.get("NEUROSERVE_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
