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
    downloads = tmp_path_factory.mktemp("downloads")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads  # where a clicked download lands
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

    # the table's structure cell jumps to the structure card and carries the CIF
    view = rows[0].find_element(By.LINK_TEXT, "view")
    assert view.get_attribute("href").endswith("#structure-LiF")
    assert rows[0].find_element(By.CSS_SELECTOR, "a.cif").get_attribute("href").startswith("data:")

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


def test_structure_view_and_cif_downloads_work_with_the_page_copied_alone(browser, hand_run, tmp_path):
    """The page moved alone to another directory still draws the structures and hands out the CIFs."""
    from pymatgen.core import Structure
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from gapforge.report.structure_view import drawn_atoms, structure_facts

    alone = tmp_path / "elsewhere"
    alone.mkdir()
    page = shutil.copy(build_report(hand_run), alone / "report.html")
    expected = (hand_run / "structure" / "relaxed" / "00002_LiF_1_mp-1138.cif").read_text()
    shutil.rmtree(hand_run)  # nothing of the run directory is left to lean on
    browser.get(Path(page).resolve().as_uri())

    card = browser.find_element(By.ID, "structure-LiF")
    svg = card.find_element(By.CSS_SELECTOR, "svg.structure")
    assert svg.is_displayed()
    box = svg.rect
    assert box["width"] >= 200 and box["height"] >= 200
    atoms = svg.find_elements(By.CSS_SELECTOR, "circle.atom")
    # rock-salt LiF, conventional cell: 4 Li + 4 F and their images on the faces, edges and corners
    conventional = structure_facts(Structure.from_str(expected, fmt="cif")).conventional
    assert len(atoms) == len(drawn_atoms(conventional)) == 27
    assert {a.get_attribute("data-element") for a in atoms} == {"Li", "F"}
    for atom in atoms[:5]:  # really painted: a circle with a size and the element's colour
        assert atom.rect["width"] > 3 and atom.get_attribute("fill").startswith("#")
    text = card.text
    assert "Fm-3m (No. 225)" in text and "converged (37 steps" in text
    assert "density (g/cm³)" in text
    mp = card.find_element(By.LINK_TEXT, "mp-1138")
    assert mp.get_attribute("href") == "https://next-gen.materialsproject.org/materials/mp-1138"

    # both CIFs of the card download from the page itself
    target = browser.downloads / "00002_LiF_1_mp-1138.cif"
    for label in ("relaxed CIF", "unrelaxed CIF"):
        for old in browser.downloads.iterdir():
            old.unlink()
        card.find_element(By.LINK_TEXT, label).click()
        WebDriverWait(browser, 20).until(lambda _: target.is_file() and target.read_text() == expected)
        structure = Structure.from_file(target)
        assert structure.composition.reduced_formula == "LiF"
