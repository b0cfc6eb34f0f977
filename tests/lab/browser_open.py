"""
One page in Debian's Chromium (Playwright), run in a client namespace:

    python browser_open.py URL PROFILE_DIR SCREENSHOT

It prints one JSON line: the final URL, the HTTP status, the title, the
page's text, and the TLS details, or the error Chromium gave instead (a
certificate it does not trust is ``net::ERR_CERT_AUTHORITY_INVALID``).
Chromium trusts what the NSS database under $HOME/.pki/nssdb holds.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import Error, sync_playwright

from tests.lab.browser_guest import CHROMIUM, FLAGS, STEP_TIMEOUT_MS


def main() -> None:
    url, profile, screenshot = sys.argv[1:4]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 800, "height": 600},
        )
        try:
            page = browser.new_page()
            try:
                response = page.goto(url, timeout=STEP_TIMEOUT_MS)
            except Error as e:
                print(json.dumps({"error": str(e).splitlines()[0]}))
                return
            page.screenshot(path=screenshot)
            details = response.security_details() if response is not None else None
            print(
                json.dumps(
                    {
                        "url": page.url,
                        "status": response.status if response is not None else None,
                        "title": page.title(),
                        "text": page.inner_text("body"),
                        "tls": details,
                    }
                )
            )
        finally:
            browser.close()


if __name__ == "__main__":
    main()
