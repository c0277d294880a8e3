"""Open a generated report in a real headless browser (Debian's chromium + chromedriver).

CI installs them with ``apt-get install -y chromium chromium-driver``; without
them the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gapforge.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,2000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_report_opens_with_its_table_and_images(browser, hand_run):
    from selenium.webdriver.common.by import By

    page = build_report(hand_run)
    browser.get(page.resolve().as_uri())
    assert "gapforge discovery report" in browser.title

    rows = browser.find_elements(By.CSS_SELECTOR, "#candidate-table tbody tr")
    assert len(rows) == 4
    formulas = [r.find_element(By.CSS_SELECTOR, "td.formula").text for r in rows]
    assert formulas == ["LiF", "SrYF5", "MgF2", "KAlF4"]
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#candidate-table thead th")]
    assert "Predicted gap (eV)" in headers and "E above hull (eV/atom)" in headers
    assert "DFT gap (PBE) (eV)" in headers
    first = rows[0].text
    assert "8.70 ± 0.25" in first and "8.940" in first

    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 6
    for img in images:
        width = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert width and width > 100, img.get_attribute("alt")
        assert img.get_attribute("src").startswith("data:image/png;base64,")
        assert img.is_displayed()

    # the CIF link resolves inside the run directory
    link = browser.find_element(By.LINK_TEXT, "00002_LiF_1_mp-1138.cif")
    target = Path(link.get_attribute("href").removeprefix("file://"))
    assert target == (hand_run / "structure" / "relaxed" / "00002_LiF_1_mp-1138.cif").resolve()
    assert target.read_text().startswith("data_LiF")

    # the page made no network request (everything is inline)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in resources if not r.startswith("data:")] == []


def test_partial_report_reads_not_run_in_the_browser(browser, partial_run):
    from selenium.webdriver.common.by import By

    browser.get(build_report(partial_run).resolve().as_uri())
    notes = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.notrun")]
    assert any(n.startswith("Not run: the campaign stage") for n in notes)
    assert any(n.startswith("Not run: the generate stage") for n in notes)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#candidate-table tbody tr")) == 4
