"""The service tree restores stored sessions before anything answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from portald.config import load_config
from portald.tap import Options, build_service, makeService
from tests.dns_fakes import UDPMemoryReactor

MAC = "02:00:00:aa:bb:cc"


def write_config(tmp_path: Path) -> Path:
    (tmp_path / "leases").write_text("")
    path = tmp_path / "portald.yaml"
    path.write_text(
        "portal: {address: 192.0.2.1, subnets: [192.0.2.0/24]}\n"
        "leases: {sources: [{format: dnsmasq, path: leases}]}\n"
        "sessions: {timeout: 1h}\n"
        "state: {database: state/sessions.sqlite3}\n"
        "control: {socket: state/control.sock}\n"
    )
    return path


def test_sessions_survive_a_restart_of_the_service(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    reactor = UDPMemoryReactor()  # the DNS listeners open in privilegedStartService
    reactor.advance(1_700_000_000)
    first = build_service(config, reactor)
    first.privilegedStartService()
    first.startService()
    session = first.table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600)
    first.stopService()

    reactor.advance(600)
    second = build_service(config, reactor)
    assert len(second.table) == 0
    second.privilegedStartService()  # before any listener opens
    assert second.table.session(MAC) == session
    second.startService()
    assert len(second.table) == 1
    reactor.advance(3000)
    assert not second.table.is_authorized(MAC)
    second.stopService()


def test_unreadable_database_stops_portald_before_it_starts(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    database = tmp_path / "state" / "sessions.sqlite3"
    database.parent.mkdir()
    database.write_bytes(b"\x00garbage" * 1000)
    options = Options()
    options.parseOptions(["--config", str(config_path)])
    with pytest.raises(SystemExit) as caught:
        makeService(options)
    assert str(caught.value).startswith(f"portald: the session database {database} cannot be read")
    assert database.read_bytes() == b"\x00garbage" * 1000


def test_a_database_without_its_sessions_table_stops_portald_with_a_message(tmp_path: Path) -> None:
    import sqlite3

    config_path = write_config(tmp_path)
    config = load_config(config_path)
    build_service(config, UDPMemoryReactor()).store.close()  # a database of the current schema
    database = tmp_path / "state" / "sessions.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute("DROP TABLE sessions")
    options = Options()
    options.parseOptions(["--config", str(config_path)])
    with pytest.raises(SystemExit) as caught:
        makeService(options)
    assert str(caught.value).startswith(f"portald: the session database {database} cannot be read")
