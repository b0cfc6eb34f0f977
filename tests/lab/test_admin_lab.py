"""
The admin page on a real gateway.  It listens on the gateway's uplink
address (the staff's side).  A member of staff, in Debian's Chromium
(Playwright) in the upstream namespace, signs in, makes three vouchers and
opens their print sheet.  A guest with a real DHCP lease signs in with
one.  The Now page lists the guest; staff end the session, and the guest
is cut off in the kernel.  The guest cannot reach the admin page at all.

Screenshots of each page are saved in the test's tmp dir; with
PORTALD_SCREENSHOTS=<dir> they are copied there too (that is how
docs/admin-*.png were made).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from portald.admin.accounts import set_account
from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_UPLINK_ADDRESS, require, wait_for
from tests.lab.test_control_lab import authorized
from tests.lab.test_enforcement import status, wait_for_enforcement, wait_for_leases
from tests.lab.test_vouchers_lab import voucher_sign_in

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PORT = 8081
ADMIN_URL = f"http://{GATEWAY_UPLINK_ADDRESS}:{ADMIN_PORT}/"
STAFF, PASSWORD = "frontdesk", "lab desk password"
SITE = f"http://{WEB_ADDRESS}/"
SHOTS = ("login", "vouchers-made", "sheet", "vouchers", "now", "ended", "today", "allowed")


def test_staff_make_vouchers_see_the_guest_and_cut_it_off(lab) -> None:
    require("chromium")
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    users = lab.tmp / "admin-users"
    set_account(users, STAFF, PASSWORD)
    phone = lab.client("c1")
    phone.dhclient()
    portal = start_portald(
        lab,
        lease_file=dhcp.lease_file,
        upstream=[net.dns],
        settings={
            "auth": {"methods": [{"method": "click-through"}, {"method": "voucher"}]},
            "admin": {"listen": f"{GATEWAY_UPLINK_ADDRESS}:{ADMIN_PORT}", "users_file": str(users)},
        },
    )
    wait_for_leases(phone)
    wait_for_enforcement(lab)
    mac = phone.mac("eth0")
    # Not from the guests' side: the gateway drops it.
    assert status(phone, ADMIN_URL) == "curl exit 28"

    screenshots = lab.tmp / "screenshots"
    staff = subprocess.Popen(
        lab.internet().exec_argv(
            [sys.executable, "-m", "tests.lab.browser_staff", ADMIN_URL, STAFF, PASSWORD,
             str(screenshots), str(lab.tmp / "staff-profile")]
        ),
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        steps: dict[str, dict] = {}

        def read_step() -> dict:
            line = staff.stdout.readline()  # type: ignore[union-attr]
            assert line, f"the staff's browser stopped:\n{staff.stderr.read()}\n{portal.log()}"  # type: ignore[union-attr]
            step = json.loads(line)
            steps[step["step"]] = step
            return step

        while "vouchers" not in steps:
            read_step()
        codes = steps["vouchers-made"]["codes"]
        assert len(codes) == 3, steps["vouchers-made"]
        assert steps["sheet"]["cards"] == 3
        assert "3 unused" in steps["vouchers"]["text"] and "lab conference" in steps["vouchers"]["text"]

        # A guest types one of the codes on the portal.
        assert "You are online" in voucher_sign_in(phone, codes[0])
        assert mac in authorized(lab)
        assert status(phone, SITE) == "200"

        staff.stdin.write(mac + "\n")  # type: ignore[union-attr]
        staff.stdin.flush()  # type: ignore[union-attr]
        while "allowed" not in steps:
            read_step()
        assert staff.wait(timeout=60) == 0, staff.stderr.read()  # type: ignore[union-attr]
    finally:
        if staff.poll() is None:
            staff.kill()
            staff.wait()
    assert steps["now"]["listed"] == 1 and "1 signed in" in steps["now"]["text"]
    assert "session has ended; it is cut off" in steps["ended"]["text"]
    # Cut off in the kernel, as the page said.
    assert mac not in authorized(lab)
    wait_for(lambda: status(phone, SITE) == "511", 5, what="the guest to be cut off")
    assert "The last 24 hours" in steps["today"]["text"] and "1 sign-in;" in steps["today"]["text"]
    log = portal.log()
    assert f"staff {STAFF} signed in to the admin page from" in log
    assert f"staff {STAFF} made 3 voucher(s) in batch" in log
    assert f"staff {STAFF} ended the session of {mac}" in log
    assert "Traceback" not in log
    shots = {p.stem.removeprefix("admin-") for p in screenshots.glob("admin-*.png")}
    assert shots == set(SHOTS), shots
    print(f"  screenshots: {screenshots}")
    if os.environ.get("PORTALD_SCREENSHOTS"):
        target = Path(os.environ["PORTALD_SCREENSHOTS"])
        for shot in SHOTS:
            shutil.copy(screenshots / f"admin-{shot}.png", target / f"admin-{shot}.png")
