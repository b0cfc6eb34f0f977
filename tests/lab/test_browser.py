"""
A real browser in the lab: headless Chromium (Debian's package, driven by
Playwright) started inside a client namespace with a DHCP lease, against the
real daemon.  It opens http://example.test/, meets the 511, follows it to the
portal, ticks "I accept", presses the button and ends on the example site.

Screenshots of each step are saved in the test's tmp dir (the path is
printed); with PORTALD_SCREENSHOTS=<dir> they are copied there too (that is
how docs/browser-*.png were made).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tests.lab.daemon import start_portald
from tests.lab.guest import Guest, narrate, short_url
from tests.lab.internet import start_internet
from tests.lab.netlab import require, wait_for

SCRIPT = Path(__file__).with_name("browser_guest.py")


def test_a_browser_meets_the_portal_accepts_and_reaches_the_site(lab) -> None:
    require("chromium")
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    narrate("Headless Chromium in a client namespace: a guest with a real browser")
    laptop = Guest(lab.client("c1"), "chromium")
    address = laptop.join()
    wait_for(lambda: f"lease {address} -> {laptop.mac}" in portal.log(), 10, what="portald to read the lease")

    screenshots = lab.tmp / "screenshots"
    result = laptop.client.run(
        [sys.executable, str(SCRIPT), str(screenshots), str(lab.tmp / "chromium-profile")],
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{portal.log()}"
    steps = {line["step"]: line for line in map(json.loads, result.stdout.splitlines())}
    laptop.say(f"opens http://example.test/: HTTP {steps['goto']['status']}")
    for name, step in steps.items():
        if name != "goto":
            laptop.say(f"{name}.png: {short_url(step['url'])} «{step['title']}»")

    assert steps["goto"]["status"] == 511
    assert steps["01-511"]["url"] == "http://example.test/"
    assert "Go to the sign-in page" in steps["01-511"]["text"]
    assert steps["02-portal"]["url"].startswith("http://portal.example/?next=")
    assert "Terms of use" in steps["02-portal"]["text"]
    if "04-online" in steps:
        # The browser went back to the site on its connection to the portal:
        # portald's "You are online" page, never the 511 or a loop.
        assert "You are online" in steps["04-online"]["text"]
    assert steps["05-example-site"]["url"] == "http://example.test/"
    assert "EXAMPLE-SITE example.test/" in steps["05-example-site"]["text"]
    assert f"authorized {laptop.mac} ({address}) by click-through" in portal.log()
    # The page came from the real site: the internet's web server served it to the laptop.
    assert f"{address} example.test" in net.web_process.log()
    shots = sorted(p.name for p in screenshots.glob("*.png"))
    expected = {"01-511.png", "02-portal.png", "03-accepted.png", "05-example-site.png"}
    assert expected <= set(shots) <= expected | {"04-online.png"}, shots
    print(f"  screenshots: {screenshots}")
    if os.environ.get("PORTALD_SCREENSHOTS"):
        target = Path(os.environ["PORTALD_SCREENSHOTS"])
        for shot in shots:
            shutil.copy(screenshots / shot, target / f"browser-{shot}")
    assert "Traceback" not in portal.log()
