"""
A member of staff at the admin page: Debian's Chromium, driven by
Playwright, run in the lab's staff-side namespace by
tests/lab/test_admin_lab.py:

    python browser_staff.py ADMIN_URL NAME PASSWORD SCREENSHOT_DIR PROFILE_DIR

First it signs in, makes three vouchers from the Vouchers page and opens
their print sheet; then it prints a JSON line (the codes) and waits for a
line on stdin naming the MAC of the guest who used one.  Then it finds
that guest on the Now page and ends its session.  Every step is a JSON
line on stdout and a screenshot (admin-*.png).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.lab.browser_guest import CHROMIUM, FLAGS, STEP_TIMEOUT_MS

# A desk screen.
VIEWPORT = {"width": 1100, "height": 760}


def main() -> None:
    url, name, password, shots, profile = sys.argv[1:6]
    screenshots = Path(shots)
    screenshots.mkdir(parents=True, exist_ok=True)
    base = url.rstrip("/")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport=VIEWPORT
        )
        browser.set_default_timeout(STEP_TIMEOUT_MS)
        page = browser.new_page()

        def step(what: str, shown: object = None, **more: object) -> None:
            target = shown if shown is not None else page
            target.screenshot(path=str(screenshots / f"admin-{what}.png"), full_page=True)  # type: ignore[attr-defined]
            text = target.inner_text("body")  # type: ignore[attr-defined]
            print(json.dumps({"step": what, "url": target.url, "text": text, **more}), flush=True)  # type: ignore[attr-defined]

        page.goto(url)
        step("login")
        page.get_by_label("Name").fill(name)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/")

        page.get_by_role("link", name="Vouchers", exact=True).click()
        page.wait_for_url(base + "/vouchers")
        page.get_by_label("How many").fill("3")
        page.get_by_label("Each lasts").fill("1d")
        page.get_by_label("Note").fill("lab conference")
        page.get_by_role("button", name="Make and show them").click()
        page.wait_for_url(base + "/vouchers/create")
        codes = [code.inner_text() for code in page.locator("code.code").all()]
        step("vouchers-made", codes=codes)
        with page.expect_popup() as opened:
            page.get_by_role("link", name=re.compile("Open the printable sheet")).click()
        sheet = opened.value
        sheet.wait_for_load_state()
        cards = sheet.locator("article.card").count()
        step("sheet", shown=sheet, cards=cards)
        sheet.close()
        page.get_by_role("link", name="Vouchers", exact=True).click()
        step("vouchers")

        # The test has a guest sign in with one of the codes.
        guest_mac = sys.stdin.readline().strip()
        page.get_by_role("link", name="Now", exact=True).click()
        page.wait_for_url(base + "/")
        row = page.locator("tr", has_text=guest_mac)
        step("now", listed=row.count())
        row.get_by_role("button", name="End", exact=True).click()
        page.wait_for_url(base + "/")
        step("ended")
        page.get_by_role("link", name="Today", exact=True).click()
        step("today")
        page.get_by_role("link", name="Allowed devices", exact=True).click()
        step("allowed")
        browser.close()


if __name__ == "__main__":
    main()
