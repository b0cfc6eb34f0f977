"""
Vouchers on a real gateway: three phones with real DHCP leases, nftables,
the voucher made with portald-ctl and typed into the portal's form.

    devices   one code on two phones within its limit; a third refused
    quota     the two phones' downloads together spend the code's shared
              allowance: both are cut off in the kernel, and the code is
              used up for anyone after
    revoke    a withdrawn voucher's phone is cut off at once
    time      a voucher's end cuts its phone off
"""

from __future__ import annotations

import json
import time

from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, serve_files, start_internet
from tests.lab.netlab import wait_for
from tests.lab.test_control_lab import authorized, ctl
from tests.lab.test_enforcement import PORTAL, curl, form_token, status, wait_for_enforcement, wait_for_leases

SITE = f"http://{WEB_ADDRESS}/"
FILES_PORT = 8000
BIG_FILE = f"http://{WEB_ADDRESS}:{FILES_PORT}/big.bin"
BIG = 1_500_000  # bytes: under the allowance alone, over it for two


def voucher_sign_in(phone, code: str) -> str:
    """The phone types C{code} into the portal's voucher form; the page it gets back."""
    landing = curl(phone, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    return curl(
        phone, *PORTAL[:-1], PORTAL[-1] + "/login",
        "--data-urlencode", f"csrf={form_token(landing)}",
        "--data-urlencode", "method=voucher", "--data-urlencode", f"voucher={code}",
    ).stdout  # fmt: skip


def make_voucher(lab, portal, *args: str) -> str:
    done = ctl(lab, portal, "--json", "vouchers", "create", *args)
    assert done.returncode == 0, done.stderr
    (voucher,) = json.loads(done.stdout)["vouchers"]
    return voucher["code"]


def test_vouchers_on_a_real_gateway(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    serve_files(lab, {"big.bin": bytes(BIG)}, FILES_PORT)
    phones = [lab.client(name) for name in ("c1", "c2", "c3")]
    for phone in phones:
        phone.dhclient()
    settings = {
        "auth": {"methods": [{"method": "click-through"}, {"method": "voucher"}]},
        "sessions": {"sample_interval": "500ms"},
    }
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    wait_for_leases(*phones)
    wait_for_enforcement(lab)
    first, second, third = phones
    macs = [phone.mac("eth0") for phone in phones]

    # --- devices: two within the limit, the third refused ---
    shared = make_voucher(lab, portal, "--duration", "1d", "--devices", "2", "--quota", "2MB")
    assert "You are online" in voucher_sign_in(first, shared.lower().replace("-", " "))
    assert "You are online" in voucher_sign_in(second, shared)
    assert macs[0] in authorized(lab) and macs[1] in authorized(lab)
    assert status(first, SITE) == "200" and status(second, SITE) == "200"
    page = voucher_sign_in(third, shared)
    assert "This code is in use on 2 devices already" in page, page
    assert macs[2] not in authorized(lab) and status(third, SITE) == "511"

    # --- quota: shared by both phones ---
    assert status(first, BIG_FILE) == "200"
    time.sleep(1.5)  # three samples: one phone's 1.5 MB alone is within the 2 MB
    assert macs[0] in authorized(lab)
    assert status(second, BIG_FILE) == "200"
    wait_for(lambda: "bytes of a shared" in portal.log(), 10, what="the shared allowance to run out")
    wait_for(
        lambda: macs[0] not in authorized(lab) and macs[1] not in authorized(lab),
        5,
        what="both phones cut off",
    )
    # A connection opened just as its flows are flushed may lose its first SYN: a few seconds' grace.
    wait_for(
        lambda: status(first, SITE) == "511" and status(second, SITE) == "511",
        10,
        what="both phones to meet the portal",
    )
    assert "data allowance is used up" in voucher_sign_in(third, shared)

    # --- revoke: the phone is cut off in the kernel ---
    withdrawn = make_voucher(lab, portal, "--duration", "1d")
    assert "You are online" in voucher_sign_in(third, withdrawn)
    assert status(third, SITE) == "200"
    done = ctl(lab, portal, "vouchers", "revoke", withdrawn)
    assert (done.returncode, done.stdout) == (0, "1 voucher withdrawn\n"), done.stderr
    assert macs[2] not in authorized(lab)
    wait_for(lambda: status(third, SITE) == "511", 5, what="the revoked voucher's phone to be cut off")
    status_page = curl(third, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    assert "withdrew its voucher" in status_page, status_page

    # --- time: the voucher's end is the session's ---
    brief = make_voucher(lab, portal, "--duration", "8s")
    assert "You are online" in voucher_sign_in(third, brief)
    assert status(third, SITE) == "200"
    wait_for(lambda: macs[2] not in authorized(lab), 15, what="the voucher's time to run out")
    assert status(third, SITE) == "511"
    assert "time is used up" in voucher_sign_in(third, brief)
    assert "Traceback" not in portal.log()
