"""
kill -9 loses no acknowledged login.

The real daemon (``none`` firewall) takes logins over HTTP from 300 loopback
addresses, each a client of its own in a lease file the test writes.  In each
of three rounds it is killed with SIGKILL at a random moment while logins are
in flight, then started again on the same database: every login that got its
success page is back, with its original expiry, and authorized (its requests
get the "online" page, not the 511); nothing appears for a client that never
tried to sign in.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs

from portald.store import SessionStore
from tests.daemon_support import READY, Twistd, ask, dev_config, ports_of

CLIENTS = 300
KILLS = 3  # rounds that end in kill -9
NEVER_SIGNED_IN = 20  # in the lease file, never sign in: must never appear
SESSION_LENGTH = 3600.0


def client(number: int) -> tuple[str, str]:
    """(IP, MAC) of the test's client C{number}."""
    return f"127.1.{number // 200}.{number % 200 + 1}", f"02:00:00:01:{number // 256:02x}:{number % 256:02x}"


@attrs.define
class Round:
    """Logins from many clients at once, until C{kill_after} are acknowledged."""

    port: int
    kill_after: int
    enough: threading.Event = attrs.field(factory=threading.Event)
    acknowledged: list[Acknowledged] = attrs.field(factory=list)
    already: list[int] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def one(self, number: int) -> None:
        if self.enough.is_set():
            return
        result = sign_in(self.port, number)
        with self.lock:
            if result == ALREADY:
                self.already.append(number)
            elif isinstance(result, Acknowledged):
                self.acknowledged.append(result)
                if len(self.acknowledged) >= self.kill_after:
                    self.enough.set()


@attrs.define
class Acknowledged:
    mac: str
    ip: str
    asked: float
    answered: float


ALREADY = "already signed in"


def sign_in(port: int, number: int) -> Acknowledged | str | None:
    """
    Sign client C{number} in as a browser would.  L{ALREADY} if the portal
    says it is signed in already: a login of an earlier round that reached
    the disk but whose answer the kill cut off.
    """
    ip, mac = client(number)
    asked = time.time()
    try:
        status, _, headers, page = ask(port, "GET", "portal.example", "/", source=ip)
        if status == 303 and headers.get("Location", "").endswith("/status"):
            return ALREADY
        token = re.search(r'name="csrf" value="([^"]*)"', page)
        if status != 200 or token is None:
            return None
        status, _, _, page = ask(
            port,
            "POST",
            "portal.example",
            "/login",
            {"csrf": token.group(1), "method": "click-through", "accept": "yes"},
            source=ip,
        )
    except OSError:
        return None  # the daemon was killed under this login: not acknowledged
    if status == 200 and "You are online" in page:
        return Acknowledged(mac, ip, asked, time.time())
    return None


def test_kill_9_loses_no_acknowledged_login(tmp_path: Path) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(
        "".join(
            f"0 {mac} {ip} guest-{n} *\n" for n in range(CLIENTS + NEVER_SIGNED_IN) for ip, mac in [client(n)]
        )
    )
    config = dev_config(
        tmp_path,
        leases={"sources": [{"format": "dnsmasq", "path": str(leases)}]},
        sessions={"timeout": "1h"},
    )
    _, port = ports_of(config)
    database = tmp_path / "sessions.sqlite3"
    chance = random.Random(20261125)
    acknowledged: dict[str, Acknowledged] = {}
    waiting = list(range(CLIENTS))  # clients whose login has not been acknowledged yet
    report = []
    unacknowledged_but_kept = 0

    # KILLS rounds end in a SIGKILL at a random moment; the last runs to the end.
    for round_number in range(KILLS + 1):
        twistd = Twistd.start(config, cwd=tmp_path)
        try:
            twistd.wait_for(READY)
            last = round_number == KILLS
            kill_after = len(waiting) + 1 if last else chance.randrange(len(waiting) // 10, len(waiting) // 3)
            logins = Round(port, kill_after)
            with ThreadPoolExecutor(max_workers=8) as pool:
                futures = [pool.submit(logins.one, n) for n in waiting]
                if not last:
                    logins.enough.wait(timeout=120)
                    # Killed while the other workers' logins are still in flight.
                    twistd.process.send_signal(signal.SIGKILL)
                for future in futures:
                    future.result(timeout=120)
            if not last:
                twistd.process.wait(timeout=30)
        finally:
            twistd.kill()
        if last:
            assert len(logins.acknowledged) + len(logins.already) == len(waiting), twistd.output
        else:
            assert len(logins.acknowledged) >= kill_after, twistd.output
        for entry in logins.acknowledged:
            acknowledged[entry.mac] = entry
        unacknowledged_but_kept += len(logins.already)
        waiting = [n for n in waiting if client(n)[1] not in acknowledged and n not in logins.already]

        # Started again on the same database: everything acknowledged is back.
        twistd = Twistd.start(config, cwd=tmp_path)
        try:
            twistd.wait_for(READY)
            store = SessionStore.open(database)
            stored = {session.mac: session for session in store.open_sessions()}
            store.close()
            lost = set(acknowledged) - set(stored)
            assert not lost, f"round {round_number}: {len(lost)} acknowledged logins lost: {sorted(lost)}"
            tried = {client(n)[1] for n in range(CLIENTS)}
            assert set(stored) <= tried, "a session appeared for a client that never signed in"
            for mac, entry in acknowledged.items():
                session = stored[mac]
                assert session.ip == entry.ip
                assert entry.asked - 1 <= session.started <= entry.answered + 1
                assert session.expires == session.started + SESSION_LENGTH
            # ...and the restarted daemon lets them through, and only them.
            for entry in chance.sample(sorted(acknowledged.values(), key=lambda e: e.mac), 10):
                status, _, _, page = ask(port, "GET", "example.com", "/", source=entry.ip)
                assert status == 200 and "You are online" in page
            outsider, _ = client(CLIENTS + NEVER_SIGNED_IN - 1)
            assert ask(port, "GET", "example.com", "/", source=outsider)[0] == 511
            assert f"restored {len(stored)} session(s)" in twistd.output
        finally:
            twistd.stop()
        report.append(
            f"round {round_number}: {'ran to the end' if last else f'killed after {len(logins.acknowledged)} acknowledged'}; "
            f"acknowledged so far {len(acknowledged)}, restored {len(stored)}, lost {len(lost)}"
        )
    print("\n".join(report))
    print(f"logins written but cut off before their answer, kept: {unacknowledged_but_kept}")
    assert len(acknowledged) + unacknowledged_but_kept == CLIENTS and not waiting
