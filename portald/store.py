"""
Sessions on disk: SQLite, written before a login is acknowledged.

One table holds every authorization, open or ended: the open ones (``ended
IS NULL``) are what a restart restores; the ended ones are the trail an
operator exports.  Writes are small single-row transactions with
``synchronous=FULL`` in WAL mode, so an acknowledged login survives kill -9
and a power cut.  The store is the table's L{ISessionJournal}: a login it
cannot write is refused rather than acknowledged and then lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from portald.table import AllowedDevice, EndReason, ISessionJournal, JournalRefused, Session
from portald.vouchers.book import IVoucherStore, Voucher

log = Logger()

# Each entry upgrades the schema by one version; the database's
# PRAGMA user_version says how many have been applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mac TEXT NOT NULL,
        ip TEXT NOT NULL,
        method TEXT NOT NULL,
        user TEXT,
        started REAL NOT NULL,
        expires REAL,
        idle_timeout REAL,
        quota_bytes INTEGER,
        ended REAL,
        reason TEXT,
        bytes_in INTEGER,
        bytes_out INTEGER
    );
    CREATE UNIQUE INDEX open_session_by_mac ON sessions (mac) WHERE ended IS NULL;
    CREATE INDEX session_by_mac ON sessions (mac, id);
    """,
    # Staff's note on a session; the devices staff let in (portald-ctl allow).
    """
    ALTER TABLE sessions ADD COLUMN note TEXT;
    CREATE TABLE allowed (
        mac TEXT PRIMARY KEY,
        note TEXT,
        added REAL NOT NULL
    );
    """,
    # Vouchers, by the keyed hash of their code (never the code).
    """
    CREATE TABLE vouchers (
        digest TEXT PRIMARY KEY,
        batch TEXT NOT NULL,
        note TEXT NOT NULL,
        duration REAL NOT NULL,
        devices INTEGER NOT NULL,
        quota INTEGER,
        valid_until REAL,
        created REAL NOT NULL,
        first_used REAL,
        revoked REAL
    );
    CREATE INDEX voucher_by_batch ON vouchers (batch);
    """,
    # What a voucher's ended sessions used (its devices share its quota).
    """
    CREATE INDEX session_by_user ON sessions (method, user) WHERE ended IS NOT NULL;
    """,
    # The sessions of the last day, for the admin page's chart.
    """
    CREATE INDEX session_by_start ON sessions (started);
    CREATE INDEX session_by_end ON sessions (ended);
    """,
    # Rates of a session's own (a voucher's, portald-ctl rate's), and a voucher's.
    """
    ALTER TABLE sessions ADD COLUMN rate_down INTEGER;
    ALTER TABLE sessions ADD COLUMN rate_up INTEGER;
    ALTER TABLE vouchers ADD COLUMN rate_down INTEGER;
    ALTER TABLE vouchers ADD COLUMN rate_up INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# A write slower than this is worth a warning: it held up the reactor.
SLOW_WRITE = 0.05

UsageSource = Callable[[str], tuple[int, int] | None]


class StoreError(Exception):
    """The session database cannot be used; the message says what to do."""


class StoreWriteError(StoreError, JournalRefused):
    """A write the database did not take: the change it was to record is refused."""


def _unreadable(path: Path, error: Exception) -> StoreError:
    return StoreError(
        f"the session database {path} cannot be read ({error}). portald will not start over it, "
        f"so as not to lose the sessions it may hold: restore it from a backup, or move it "
        f"aside (mv {path} {path}.broken) to start with no sessions"
    )


@attrs.frozen
class SessionRecord:
    """One authorization as the trail shows it."""

    mac: str
    ip: str
    method: str
    user: str | None
    started: float
    expires: float | None
    ended: float | None
    reason: str | None
    bytes_in: int | None
    bytes_out: int | None
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


@implementer(ISessionJournal, IVoucherStore)
class SessionStore:
    """
    The session database.  Open it with L{SessionStore.open}.

    @ivar longest_write: the slowest write so far, in seconds (what a login
        held the reactor up for).
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, usage: UsageSource | None = None) -> None:
        self._db = connection
        self.path = path
        # A reader opened read-only (before the daemon migrated) may find
        # an older schema: what it lacks reads as nothing.
        self.schema: int = connection.execute("PRAGMA user_version").fetchone()[0]
        self.longest_write = 0.0
        # Where a session's bytes come from when it ends (the usage ledger).
        self.usage = usage

    @classmethod
    def open(cls, path: Path, usage: UsageSource | None = None) -> SessionStore:
        """
        Open (creating if needed) and check the database at C{path};
        C{usage} tells the bytes of a session that ends.

        @raise StoreError: naming the file and what to do, if it cannot be
            read or written.  Never overwrites a file it could not read.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the directory {path.parent} for the session database: {e.strerror}; "
                "create it, writable by the user portald runs as"
            ) from None
        try:
            with open(path, "r+b"):
                pass
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreError(
                f"the session database {path} is not readable and writable by this user "
                f"(uid {os.geteuid()}: {e.strerror}); fix its owner or permissions"
            ) from None
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the session database {path}: {e}") from None
        try:
            cls._check_and_migrate(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, usage)

    @classmethod
    def open_read_only(cls, path: Path) -> SessionStore:
        """Open C{path} for reading only (exports): no migration, no writes."""
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            connection.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the session database {path}: {e}") from None
        return cls(connection, path)

    @staticmethod
    def _check_and_migrate(db: sqlite3.Connection, path: Path) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            check = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise _unreadable(path, e) from None
        if check != "ok":
            raise StoreError(
                f"the session database {path} is damaged ({check}); restore it from a backup, "
                f"or move it aside (mv {path} {path}.broken) to start with no sessions"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the session database {path} has schema version {version}, newer than this "
                f"portald understands ({SCHEMA_VERSION}); run a newer portald or move the file aside"
            )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN; {migration}; PRAGMA user_version = {number}; COMMIT;")
                log.info("session database {path} upgraded to schema {number}", path=str(path), number=number)
        except sqlite3.Error as e:
            if db.in_transaction:
                db.rollback()
            raise StoreError(f"cannot write the session database {path}: {e}") from None

    @property
    def _note(self) -> str:
        return "note" if self.schema >= 2 else "NULL"

    def close(self) -> None:
        self._db.close()

    # --- restore at start ---

    def open_sessions(self) -> list[Session]:
        try:
            rates = "rate_down, rate_up" if self.schema >= 6 else "NULL, NULL"
            rows = self._db.execute(
                f"SELECT mac, ip, method, user, started, expires, idle_timeout, quota_bytes, {self._note}, "
                f"{rates} FROM sessions WHERE ended IS NULL ORDER BY id"
            ).fetchall()
        except sqlite3.Error as e:
            raise _unreadable(self.path, e) from None
        return [
            Session(
                mac=mac,
                ip=ip,
                method=method,
                user=user,
                started=started,
                expires=expires,
                idle_timeout=idle_timeout,
                quota_bytes=quota_bytes,
                note=note,
                rate_down=rate_down,
                rate_up=rate_up,
            )
            for mac, ip, method, user, started, expires, idle_timeout, quota_bytes, note, rate_down, rate_up in rows
        ]

    def allowed_devices(self) -> list[AllowedDevice]:
        """The devices staff let in, as they were when portald stopped."""
        if self.schema < 2:
            return []
        try:
            rows = self._db.execute("SELECT mac, note, added FROM allowed ORDER BY added").fetchall()
        except sqlite3.Error as e:
            raise _unreadable(self.path, e) from None
        return [AllowedDevice(mac, "staff", note, added) for mac, note, added in rows]

    def restorable(self, now: float) -> list[Session]:
        """
        The open sessions that are still live at C{now}; those that ended
        while portald was down are closed in the trail, with a log line each.
        """
        live = []
        for session in self.open_sessions():
            if session.expires is not None and session.expires <= now:
                log.info(
                    "session of {mac} ({ip}) expired while portald was stopped",
                    mac=session.mac,
                    ip=session.ip,
                )
                try:
                    self._close(session.mac, session.expires, EndReason.EXPIRED, None)
                except StoreError:
                    # A full or read-only disk: the row stays open, and is
                    # closed at a later start; the session is not restored.
                    pass
            else:
                live.append(session)
        return live

    # --- ISessionJournal ---

    def record_started(self, session: Session) -> None:
        def write() -> None:
            self._db.execute(
                "UPDATE sessions SET ended = ?, reason = ? WHERE mac = ? AND ended IS NULL",
                (session.started, EndReason.REPLACED.value, session.mac),
            )
            self._db.execute(
                "INSERT INTO sessions (mac, ip, method, user, started, expires, idle_timeout, "
                "quota_bytes, note, rate_down, rate_up) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.mac,
                    session.ip,
                    session.method,
                    session.user,
                    session.started,
                    session.expires,
                    session.idle_timeout,
                    session.quota_bytes,
                    session.note,
                    session.rate_down,
                    session.rate_up,
                ),
            )

        self._transaction(write)

    def record_rates(self, session: Session) -> None:
        self._transaction(
            lambda: self._db.execute(
                "UPDATE sessions SET rate_down = ?, rate_up = ? WHERE mac = ? AND ended IS NULL",
                (session.rate_down, session.rate_up, session.mac),
            )
        )

    def record_extended(self, session: Session) -> None:
        self._transaction(
            lambda: self._db.execute(
                "UPDATE sessions SET expires = ? WHERE mac = ? AND ended IS NULL",
                (session.expires, session.mac),
            )
        )

    def record_ended(self, session: Session, reason: EndReason, ended: float) -> None:
        usage = self.usage(session.mac) if self.usage is not None else None
        self._close(session.mac, ended, reason, usage)

    def record_allowed(self, device: AllowedDevice) -> None:
        self._transaction(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO allowed (mac, note, added) VALUES (?, ?, ?)",
                (device.mac, device.note, device.added),
            )
        )

    def record_disallowed(self, mac: str) -> None:
        self._transaction(lambda: self._db.execute("DELETE FROM allowed WHERE mac = ?", (mac,)))

    # --- vouchers ---

    def vouchers(self) -> list[Voucher]:
        if self.schema < 3:
            return []
        rates = "rate_down, rate_up" if self.schema >= 6 else "NULL, NULL"
        rows = self._db.execute(
            "SELECT digest, batch, duration, devices, created, note, valid_until, quota, first_used, revoked, "
            f"{rates} FROM vouchers"
        ).fetchall()
        return [Voucher(*row) for row in rows]

    def record_vouchers(self, vouchers: Sequence[Voucher]) -> None:
        rows = [
            (v.digest, v.batch, v.note, v.duration, v.devices, v.quota, v.valid_until, v.created,
             v.rate_down, v.rate_up)
            for v in vouchers
        ]  # fmt: skip
        self._transaction(
            lambda: self._db.executemany(
                "INSERT INTO vouchers (digest, batch, note, duration, devices, quota, valid_until, created, "
                "rate_down, rate_up) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    def record_voucher_used(self, digest: str, first_used: float) -> None:
        self._transaction(
            lambda: self._db.execute(
                "UPDATE vouchers SET first_used = ? WHERE digest = ? AND first_used IS NULL",
                (first_used, digest),
            )
        )

    def record_vouchers_revoked(self, digests: Sequence[str], revoked: float) -> None:
        self._transaction(
            lambda: self._db.executemany(
                "UPDATE vouchers SET revoked = ? WHERE digest = ?", [(revoked, d) for d in digests]
            )
        )

    def delete_vouchers(self, digests: Sequence[str]) -> None:
        self._transaction(
            lambda: self._db.executemany("DELETE FROM vouchers WHERE digest = ?", [(d,) for d in digests])
        )

    def bytes_used_by(self, method: str, user: str) -> int:
        row = self._db.execute(
            "SELECT SUM(COALESCE(bytes_in, 0) + COALESCE(bytes_out, 0)) FROM sessions "
            "WHERE method = ? AND user = ? AND ended IS NOT NULL",
            (method, user),
        ).fetchone()
        return int(row[0] or 0)

    def _close(self, mac: str, ended: float, reason: EndReason, usage: tuple[int, int] | None) -> None:
        bytes_in, bytes_out = usage if usage is not None else (None, None)
        self._transaction(
            lambda: self._db.execute(
                "UPDATE sessions SET ended = ?, reason = ?, bytes_in = ?, bytes_out = ? "
                "WHERE mac = ? AND ended IS NULL",
                (ended, reason.value, bytes_in, bytes_out, mac),
            )
        )

    def _transaction(self, write: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                write()
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()
        except sqlite3.Error as e:
            log.error("session database {path}: write failed: {error}", path=str(self.path), error=str(e))
            raise StoreWriteError(f"cannot write the session database {self.path}: {e}") from e
        finally:
            elapsed = time.perf_counter() - started
            self.longest_write = max(self.longest_write, elapsed)
            if elapsed > SLOW_WRITE:
                log.warn("session database write took {ms:.0f} ms", ms=elapsed * 1000)

    # --- the trail ---

    def history(self) -> list[SessionRecord]:
        rows = self._db.execute(
            f"SELECT mac, ip, method, user, started, expires, ended, reason, bytes_in, bytes_out, {self._note} "
            "FROM sessions ORDER BY id"
        ).fetchall()
        return [SessionRecord(*row) for row in rows]

    def sessions_between(self, start: float, end: float) -> list[tuple[float, float | None, str]]:
        """(started, ended or None, MAC) of each session open at some time between C{start} and C{end}."""
        rows = self._db.execute(
            "SELECT started, ended, mac FROM sessions WHERE started <= ? AND ended >= ? "
            "UNION ALL SELECT started, ended, mac FROM sessions WHERE started <= ? AND ended IS NULL",
            (end, start, end),
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def last_ending(self, mac: str) -> tuple[EndReason, float] | None:
        """Why and when C{mac}'s latest session ended, if it has ended."""
        row = self._db.execute(
            "SELECT ended, reason FROM sessions WHERE mac = ? ORDER BY id DESC LIMIT 1", (mac,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return EndReason(row[1]), row[0]


def export(records: Iterable[SessionRecord], fmt: str) -> str:
    """The trail as CSV or JSON text."""
    rows = [record.as_dict() for record in records]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[field.name for field in attrs.fields(SessionRecord)])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
