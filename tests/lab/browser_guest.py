"""
A guest with a real browser: Debian's Chromium, driven by Playwright, run
inside a client namespace by tests/lab/test_browser.py:

    python browser_guest.py SCREENSHOT_DIR PROFILE_DIR

It opens http://example.test/, follows the portal's 511 page to the sign-in
page, ticks "I accept", presses the button, and waits for the example site.
Each step is a screenshot (01-511.png, ...) and a JSON line on stdout
(step, url, title, the page's text), which the test checks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 15_000
# Chromium's host cache (60 s) plus a refresh period, with room to spare.
SITE_AFTER_ONLINE_MS = 80_000


def main() -> None:
    screenshots, profile = Path(sys.argv[1]), Path(sys.argv[2])
    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # A persistent context is what gives Chromium the fresh user-data-dir.
        browser = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 800, "height": 600},
        )
        browser.set_default_timeout(STEP_TIMEOUT_MS)
        page = browser.new_page()

        def step(name: str) -> None:
            page.screenshot(path=str(screenshots / f"{name}.png"))
            text = page.inner_text("body")
            print(
                json.dumps({"step": name, "url": page.url, "title": page.title(), "text": text}), flush=True
            )

        response = page.goto("http://example.test/")
        print(json.dumps({"step": "goto", "status": response.status if response else None}), flush=True)
        step("01-511")
        page.get_by_role("link", name="Go to the sign-in page").click()
        page.wait_for_url("http://portal.example/**")
        step("02-portal")
        page.get_by_label("I accept the terms of use").check()
        step("03-accepted")
        page.get_by_role("button").click()
        page.wait_for_url("http://example.test/", wait_until="domcontentloaded")
        # A browser that kept the portal's DNS answer (or its connection) for
        # the site lands on portald's "You are online" page.  Chromium keeps
        # a host's address for up to a minute whatever the TTL said, so the
        # page refreshes itself until the browser asks DNS again and reaches
        # the site; the guest just waits.
        if "You are online" in page.inner_text("body"):
            step("04-online")
            page.get_by_text("EXAMPLE-SITE").wait_for(timeout=SITE_AFTER_ONLINE_MS)
        step("05-example-site")
        browser.close()


if __name__ == "__main__":
    main()
