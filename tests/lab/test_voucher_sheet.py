"""
The voucher sheet as a printer gets it: Debian's Chromium (Playwright)
opens the sheet ``portald-ctl vouchers create --sheet`` writes, prints it to
PDF (the page count says the layout holds: ten A4 cards a page, one receipt
slip a page) and takes a screenshot of each layout.  With
PORTALD_SCREENSHOTS=<dir> the screenshots are copied there (that is how
docs/voucher-sheet-a4.png and docs/voucher-slip-80mm.png were made).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from portald.vouchers.codes import new_code, shown
from portald.vouchers.sheet import Slip, render_sheet
from tests.lab.browser_guest import CHROMIUM, FLAGS

SLIP = Slip("Hotel Lab", "http://portal.example/", "Hotel Lab Guest", "welcome-2027")
# At 96 dpi: A4's width, and 80 mm.
VIEWPORTS = {"a4": (794, 1123), "80mm": (302, 900)}


def vouchers(count: int) -> list[dict]:
    return [
        {"code": shown(new_code()), "duration": 86400.0, "devices": 2, "quota": 2 * 10**9,
         "valid_until": 1_800_000_000.0}
        for _ in range(count)
    ]  # fmt: skip


def pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


@pytest.mark.parametrize(("layout", "count", "expected_pages"), [("a4", 12, 2), ("80mm", 3, 3)])
def test_chromium_prints_the_sheet(tmp_path: Path, layout: str, count: int, expected_pages: int) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("chromium is not installed; `make test` as root installs it")
    from playwright.sync_api import sync_playwright

    sheet = tmp_path / f"sheet-{layout}.html"
    sheet.write_text(render_sheet(SLIP, vouchers(count), layout))
    name = "voucher-sheet-a4.png" if layout == "a4" else "voucher-slip-80mm.png"
    width, height = VIEWPORTS[layout]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(sheet.as_uri())
            # Every QR code is drawn (an SVG that did not load has no width).
            widths = page.eval_on_selector_all("figure img", "images => images.map(i => i.naturalWidth)")
            assert len(widths) == 2 * count and all(w > 0 for w in widths), widths
            assert page.locator("article.card").count() == count
            page.screenshot(path=str(tmp_path / name), full_page=layout != "a4")
            pdf = page.pdf(prefer_css_page_size=True, print_background=True)
        finally:
            browser.close()
    assert pages(pdf) == expected_pages
    if os.environ.get("PORTALD_SCREENSHOTS"):
        shutil.copy(tmp_path / name, Path(os.environ["PORTALD_SCREENSHOTS"]) / name)
