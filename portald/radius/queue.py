"""
What accounting must not lose, on disk: the RADIUS view of each session in
progress (its Acct-Session-Id, Class, interim interval), and the records
not yet acknowledged by a server, in the order they were made.  SQLite in
WAL mode with synchronous=FULL, as the session store: an AAA outage or a
restart loses no record.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
from twisted.logger import Logger

log = Logger()

SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    mac TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    started REAL,
    user TEXT,
    classes TEXT NOT NULL,
    interim REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    made REAL NOT NULL,
    kind TEXT NOT NULL,
    attributes TEXT NOT NULL
);
"""

# Past this many records waiting, new Interim-Updates are dropped (Start and
# Stop never are): days of an outage must not fill the card.
MOST_WAITING = 200_000


class QueueError(Exception):
    """The accounting database cannot be opened or written; the message says why."""


@attrs.frozen
class Grant:
    """What the Access-Accept said that accounting repeats: the session's id, its Class, its interval."""

    session_id: str
    user: str | None
    classes: tuple[bytes, ...] = ()
    interim: float = 0.0
    # The table session's start, once it began (None: accepted, not yet signed in).
    started: float | None = None


@attrs.frozen
class Record:
    """One Accounting-Request to send: its attributes, as JSON-able values."""

    seq: int
    session_id: str
    made: float
    kind: str
    attributes: dict[str, Any]


class AccountingQueue:
    """The durable part of RADIUS accounting (one SQLite file)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self.dropped = 0

    @classmethod
    def open(cls, path: Path) -> AccountingQueue:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise QueueError(f"cannot open the RADIUS accounting queue {path}: {e}") from None
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    # --- grants ---

    def remember(self, mac: str, grant: Grant) -> None:
        self._write(
            "INSERT OR REPLACE INTO grants (mac, session_id, started, user, classes, interim) VALUES (?,?,?,?,?,?)",
            (mac, grant.session_id, grant.started, grant.user,
             json.dumps([c.hex() for c in grant.classes]), grant.interim),
        )  # fmt: skip

    def grant(self, mac: str) -> Grant | None:
        row = self._db.execute(
            "SELECT session_id, user, classes, interim, started FROM grants WHERE mac = ?", (mac,)
        ).fetchone()
        if row is None:
            return None
        session_id, user, classes, interim, started = row
        return Grant(session_id, user, tuple(bytes.fromhex(c) for c in json.loads(classes)), interim, started)

    def grants(self) -> dict[str, Grant]:
        rows = self._db.execute("SELECT mac FROM grants").fetchall()
        return {mac: grant for (mac,) in rows if (grant := self.grant(mac)) is not None}

    def forget(self, mac: str) -> None:
        self._write("DELETE FROM grants WHERE mac = ?", (mac,))

    # --- records ---

    def add(self, session_id: str, made: float, kind: str, attributes: dict[str, Any]) -> bool:
        """Queue a record; False if it was dropped (an Interim-Update over L{MOST_WAITING})."""
        if kind == "Interim-Update" and self.waiting() >= MOST_WAITING:
            self.dropped += 1
            return False
        self._write(
            "INSERT INTO records (session_id, made, kind, attributes) VALUES (?,?,?,?)",
            (session_id, made, kind, json.dumps(attributes)),
        )
        return True

    def add_many(self, records: list[tuple[str, float, str, dict[str, Any]]], done: list[int] = ()) -> int:  # type: ignore[assignment]
        """Queue several records, and delete the C{done} ones, in one transaction (one disk sync); how many were dropped."""
        room = MOST_WAITING - self.waiting()
        kept, dropped = [], 0
        for record in records:
            if record[2] == "Interim-Update" and len(kept) >= room:
                dropped += 1
                continue
            kept.append((record[0], record[1], record[2], json.dumps(record[3])))
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO records (session_id, made, kind, attributes) VALUES (?,?,?,?)", kept
                )
                self._db.executemany("DELETE FROM records WHERE seq = ?", [(seq,) for seq in done])
        except sqlite3.Error as e:
            log.error("RADIUS accounting could not write {path}: {why}", path=str(self.path), why=str(e))
        self.dropped += dropped
        return dropped

    def oldest(self, limit: int, skip: set[int]) -> list[Record]:
        """Up to C{limit} records in order, leaving out those in C{skip} (on their way)."""
        rows = self._db.execute(
            "SELECT seq, session_id, made, kind, attributes FROM records ORDER BY seq LIMIT ?",
            (limit + len(skip),),
        ).fetchall()
        records = [Record(seq, sid, made, kind, json.loads(attrs_)) for seq, sid, made, kind, attrs_ in rows]
        return [r for r in records if r.seq not in skip][:limit]

    def waiting(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def _write(self, statement: str, parameters: tuple[Any, ...]) -> None:
        try:
            self._db.execute(statement, parameters)
        except sqlite3.Error as e:
            # Accounting is not worth a guest's session: logged, not raised.
            log.error("RADIUS accounting could not write {path}: {why}", path=str(self.path), why=str(e))
