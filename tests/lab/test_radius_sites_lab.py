"""
Many venues, one AAA: two portald gateways (each with its own LAN and
guest) and one FreeRADIUS between them, with its ``sql`` module on SQLite
and ``Simultaneous-Use := 1`` for alice.  She signs in at venue A; at venue
B she is refused while A's session lasts, and let in once A's Stop has
closed it.

    aaa ── 198.51.100.66 ── 198.51.100.65 gateway A ── guest a
        └─ 198.51.100.70 ── 198.51.100.69 gateway B ── guest b
"""

from __future__ import annotations

import sqlite3

from tests.freeradius import SQLITE_SCHEMA, FreeRadius, write_config
from tests.lab.daemon import start_portald
from tests.lab.netlab import wait_for
from tests.lab.test_control_lab import authorized
from tests.lab.test_enforcement import sign_out, wait_for_enforcement, wait_for_leases
from tests.lab.test_radius_lab import radius_sign_in

SECRET = "lab-sites-secret"
AUTH_PORT, ACCT_PORT = 18120, 18130
# Each gateway's leg to the AAA, and the AAA's end of it.
LEGS = {"A": ("198.51.100.65", "198.51.100.66"), "B": ("198.51.100.69", "198.51.100.70")}


def open_sessions(database) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT username, nasipaddress FROM radacct WHERE acctstoptime IS NULL").fetchall()


def test_two_gateways_one_freeradius_one_session_per_user(lab, second_lab) -> None:
    aaa = lab.namespace("aaa")
    radius_dir = lab.tmp / "freeradius"
    radius_dir.mkdir()
    database = radius_dir / "radius.db"
    with sqlite3.connect(database) as db:
        db.executescript(SQLITE_SCHEMA.read_text())
        db.executemany(
            "INSERT INTO radcheck (username, attribute, op, value) VALUES (?, ?, ?, ?)",
            [("alice", "Cleartext-Password", ":=", "wonderland"), ("alice", "Simultaneous-Use", ":=", "1")],
        )
    write_config(
        radius_dir, address="*", auth_port=AUTH_PORT, acct_port=ACCT_PORT,
        clients=[(gateway, SECRET) for gateway, _ in LEGS.values()], users="", sql=True,
    )  # fmt: skip
    gateways = {}
    for (name, (gateway_end, aaa_end)), site in zip(LEGS.items(), (lab, second_lab), strict=True):
        gateway = site.gateway()
        site.veth(gateway, "aaa", aaa, f"to{name}")
        gateway.run(["ip", "addr", "add", f"{gateway_end}/30", "dev", "aaa"])
        aaa.run(["ip", "addr", "add", f"{aaa_end}/30", "dev", f"to{name}"])
        gateways[name] = (site, aaa_end, gateway_end)
    server = FreeRadius(radius_dir, lambda argv: aaa.spawn(argv, name="freeradius"))
    server.start()
    guests, portals = {}, {}
    for name, (site, aaa_end, gateway_end) in gateways.items():
        dhcp = site.dnsmasq_dhcp()
        guest = site.client("c1", mac=f"02:00:00:00:0{name.lower()}:01")
        guest.dhclient()
        settings = {
            "auth": {"methods": [{"method": "radius"}]},
            "radius": {
                "servers": [
                    {"address": aaa_end, "secret": SECRET, "auth_port": AUTH_PORT, "acct_port": ACCT_PORT}
                ],
                # Each venue names itself: Accounting-On from one must not close the other's sessions.
                "nas_identifier": f"venue-{name.lower()}",
                "nas_ip_address": gateway_end,
            },
        }
        # Nothing to forward to: this test is about signing in.
        portals[name] = start_portald(
            site, lease_file=dhcp.lease_file, upstream=["203.0.113.53"], settings=settings
        )
        wait_for_leases(guest)
        wait_for_enforcement(site)
        guests[name] = guest

    # Venue A: alice signs in; FreeRADIUS has her session open.
    assert "You are online" in radius_sign_in(guests["A"], "alice", "wonderland")
    wait_for(lambda: open_sessions(database) == [("alice", LEGS["A"][0])], 10, what="A's Start in radacct")

    # Venue B: refused while A's session lasts.
    page = radius_sign_in(guests["B"], "alice", "wonderland")
    assert "You are already logged in" in page, page
    assert guests["B"].mac("eth0") not in authorized(second_lab)

    # A's guest signs out: its Stop closes the session, and B lets her in.
    sign_out(guests["A"])
    wait_for(lambda: open_sessions(database) == [], 10, what="A's Stop in radacct")
    assert "You are online" in radius_sign_in(guests["B"], "alice", "wonderland")
    assert guests["B"].mac("eth0") in authorized(second_lab)
    wait_for(lambda: open_sessions(database) == [("alice", LEGS["B"][0])], 10, what="B's Start in radacct")
    for portal in portals.values():
        assert "Traceback" not in portal.log()
