"""The session store: round trips, restore, the trail, and bad databases."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from portald.store import SCHEMA_VERSION, SessionStore, StoreError, export
from portald.table import AuthorizationTable, EndReason, Session

MAC = "02:00:00:aa:bb:cc"
OTHER = "02:00:00:dd:ee:ff"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sessions.sqlite3"


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


def table_with_store(path: Path, clock: Clock) -> tuple[AuthorizationTable, SessionStore]:
    store = SessionStore.open(path)
    return AuthorizationTable(clock, journal=store), store


def test_new_database_gets_the_current_schema(path: Path) -> None:
    store = SessionStore.open(path)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_login_is_on_disk_when_authorize_returns(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    session = table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, quota_bytes=10**9)
    # Read back through a separate connection, as a restarted portald would.
    other = SessionStore.open(path)
    assert other.open_sessions() == [session]
    assert store.longest_write > 0


def test_round_trip_through_a_restart(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    kept = table.authorize(
        MAC, ip="192.0.2.10", method="access-code", duration=3600, user="room 12", idle_timeout=600
    )
    table.authorize(OTHER, ip="192.0.2.11", method="click-through", duration=60)
    table.extend(MAC, 1800)
    store.close()

    clock.advance(120)  # OTHER's session ends while portald is down
    restarted, store = table_with_store(path, clock)
    live = store.restorable(clock.seconds())
    assert [s.mac for s in live] == [MAC]
    assert live[0].expires == kept.expires + 1800
    assert live[0].user == "room 12" and live[0].idle_timeout == 600
    for session in live:
        restarted.restore(session)
    assert restarted.is_authorized(MAC) and not restarted.is_authorized(OTHER)
    assert store.last_ending(OTHER) == (EndReason.EXPIRED, 1_700_000_060)
    # Restored sessions still expire on time.
    clock.advance(kept.expires + 1800 - clock.seconds())
    assert not restarted.is_authorized(MAC)
    assert store.open_sessions() == []


def test_the_trail_records_every_end(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    store.usage = lambda mac: (1000, 2000)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    clock.advance(10)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)  # re-login
    clock.advance(5)
    table.deauthorize(MAC, EndReason.LOGOUT)
    history = store.history()
    assert [(r.reason, r.ended) for r in history] == [
        ("replaced", 1_700_000_010),
        ("logout", 1_700_000_015),
    ]
    assert (history[1].bytes_in, history[1].bytes_out) == (1000, 2000)
    assert store.last_ending(MAC) == (EndReason.LOGOUT, 1_700_000_015)
    assert store.last_ending(OTHER) is None

    rows = json.loads(export(history, "json"))
    assert rows[1]["mac"] == MAC and rows[1]["reason"] == "logout"
    lines = export(history, "csv").splitlines()
    assert lines[0].startswith("mac,ip,method,user,started,expires,ended,reason")
    assert len(lines) == 3


def test_a_login_that_cannot_be_written_is_refused(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    store._db.execute("PRAGMA query_only = ON")  # every write fails, as on a full disk
    with pytest.raises(StoreError, match="cannot write the session database"):
        table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    assert not table.is_authorized(MAC)
    assert clock.getDelayedCalls() == []


def test_an_end_that_cannot_be_written_still_ends(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    store._db.execute("PRAGMA query_only = ON")
    assert table.deauthorize(MAC, EndReason.LOGOUT) is not None
    assert not table.is_authorized(MAC)


# --- databases that cannot be used ---


def test_corrupt_file_is_refused_and_left_alone(path: Path) -> None:
    path.parent.mkdir(parents=True)
    garbage = b"this is not a database\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as caught:
        SessionStore.open(path)
    message = str(caught.value)
    assert str(path) in message and "will not start over it" in message and "mv " in message
    assert path.read_bytes() == garbage


def test_damaged_database_is_refused(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    for number in range(200):
        table.authorize(
            f"02:00:00:00:{number // 256:02x}:{number % 256:02x}", ip="192.0.2.10", method="c", duration=60
        )
    store.close()
    data = bytearray(path.read_bytes())
    # In the sessions' own pages (the file ends with them), not the empty tables'.
    data[len(data) * 3 // 4 : len(data) * 3 // 4 + 2048] = b"\xff" * 2048
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged|cannot be read"):
        SessionStore.open(path)


def test_file_of_another_user_is_refused() -> None:
    # In a directory of its own that any user can enter (pytest's are
    # private), because root may write anything: the check runs as an
    # unprivileged effective user.
    directory = Path(tempfile.mkdtemp(prefix="portald-store-"))
    path = directory / "sessions.sqlite3"
    try:
        directory.chmod(0o755)
        SessionStore.open(path).close()
        path.chmod(0o444)
        if os.getuid() == 0:
            os.seteuid(65534)
        try:
            with pytest.raises(StoreError) as caught:
                SessionStore.open(path)
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
    finally:
        shutil.rmtree(directory)
    assert "not readable and writable by this user" in str(caught.value)
    assert str(path) in str(caught.value)


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the directory"):
        SessionStore.open(blocker / "sessions.sqlite3")


def test_newer_schema_is_refused(path: Path) -> None:
    SessionStore.open(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this portald"):
        SessionStore.open(path)


def test_restore_drops_only_what_expired(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=None)
    store.close()
    clock.advance(10**6)
    store = SessionStore.open(path)
    assert [s.mac for s in store.restorable(clock.seconds())] == [MAC]
    assert Session(MAC, "192.0.2.10", "click-through", 1_700_000_000, None) in store.open_sessions()


def test_expired_sessions_that_cannot_be_closed_are_left_for_a_later_start(path: Path, clock: Clock) -> None:
    table, store = table_with_store(path, clock)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    table.authorize(OTHER, ip="192.0.2.11", method="click-through", duration=None)
    store.close()
    clock.advance(600)
    # A database that cannot be written (a read-only or full disk): the
    # expired row cannot be closed; start goes on without it, no error.
    read_only = SessionStore.open_read_only(path)
    with capturedLogs():
        assert [s.mac for s in read_only.restorable(clock.seconds())] == [OTHER]
    read_only.close()
    store = SessionStore.open(path)
    assert {s.mac for s in store.open_sessions()} == {MAC, OTHER}  # closed later
    assert [s.mac for s in store.restorable(clock.seconds())] == [OTHER]
    assert [s.mac for s in store.open_sessions()] == [OTHER]


def test_export_command(path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    from portald.cli.export import main

    table, store = table_with_store(path, clock)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    clock.advance(60)
    store.close()
    assert main(["--database", str(path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["mac"], row["reason"]) for row in rows] == [(MAC, "expired")]
    assert main(["--database", str(path.parent / "absent.sqlite3")]) == 1
    assert "no session database" in capsys.readouterr().err


def test_export_never_writes_the_database(
    path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    from portald.cli.export import main

    table, store = table_with_store(path, clock)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    store.close()
    path.chmod(0o444)  # an operator's read-only copy
    before = path.read_bytes()
    assert main(["--database", str(path), "--format", "csv"]) == 0
    assert MAC in capsys.readouterr().out
    assert path.read_bytes() == before
