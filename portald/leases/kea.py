"""
Kea's memfile ``lease4.csv``, read as a pure function of its text, and the
order in which Kea's own files hold it (L{kea_earlier_files}).

A header, then rows appended over time; the last row of an address wins;
declined and expired-reclaimed rows do not count.
"""

from __future__ import annotations

from pathlib import Path

from portald.addresses import InvalidMAC, normalise_mac
from portald.leases.model import Journal, Lease, ParseProblem, ParseResult, lease_ip

_KEA_REQUIRED = ("address", "hwaddr", "expire", "valid_lifetime")
# Lease states: 0 default (in use), 1 declined, 2 expired-reclaimed, and
# newer ones (3 released) that are not in use either.
_KEA_DEFAULT = 0
_KEA_INFINITE = 0xFFFFFFFF


def _kea_unescape(field: str) -> str:
    # Kea's CSV writer escapes commas (and only those) as "&#x2c".
    return field.replace("&#x2c", ",")


def parse_kea(text: str, now: float) -> ParseResult:
    """
    Kea's memfile ``lease4.csv``: a header naming the columns, then one row
    per lease change; the last row of an address wins.  A row with
    valid_lifetime 0 records a deleted (released) lease.
    """
    return read_kea_journal(text).result(now)


def kea_cut(text: str) -> int:
    """Where C{text} may be cut for reading on later: after its last whole row (0: nowhere)."""
    return text.rfind("\n") + 1


def read_kea_journal(text: str, context: object = None) -> Journal:
    """
    What C{text} says, address by address; C{context} is the columns of the
    header that came before it (a L{Journal}'s own C{context}), if any.
    """
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    truncated = lines[-1] != ""
    if truncated:
        lines = lines[:-1]
    columns: dict[str, int] | None = context  # type: ignore[assignment]
    latest: dict[str, Lease | None] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split(",")
        if fields[0].strip() == "address":
            # A header: the file's first line, or that of the next file when
            # the watcher reads Kea's older files (lease4.csv.1, .2) first.
            columns = None
        if columns is None:
            names = [name.strip() for name in fields]
            missing = [name for name in _KEA_REQUIRED if name not in names]
            if missing:
                problems.append(
                    ParseProblem(number, f"not a Kea lease4.csv header (no {', '.join(missing)})")
                )
                return Journal({}, tuple(problems), truncated, void=True)
            columns = {name: position for position, name in enumerate(names)}
            continue
        if len(fields) < len(columns):
            problems.append(ParseProblem(number, f"expected {len(columns)} columns, got {len(fields)}"))
            continue
        row = {name: _kea_unescape(fields[position]) for name, position in columns.items()}

        def field(name: str, row: dict[str, str] = row) -> str:
            return row.get(name, "")

        try:
            ip = lease_ip(field("address"))
            valid_lifetime = int(field("valid_lifetime"))
            expire = int(field("expire"))
            state = int(field("state") or 0)
            expires = None if valid_lifetime == _KEA_INFINITE else float(expire)
        except (ValueError, OverflowError) as e:
            problems.append(ParseProblem(number, f"bad field: {e}"))
            continue
        if valid_lifetime == 0 or state != _KEA_DEFAULT:
            latest[ip] = None
            continue
        try:
            mac = normalise_mac(field("hwaddr"))
        except InvalidMAC:
            problems.append(ParseProblem(number, f"lease {ip}: bad hwaddr {field('hwaddr')!r}"))
            latest[ip] = None
            continue
        latest[ip] = Lease(ip, mac, field("hostname") or None, expires)
    if columns is None and text.strip():
        # Only a row cut short has text, and it is no header: its line.
        problems.append(ParseProblem(len(lines) + 1, "no header line"))
    return Journal(latest, tuple(problems), truncated, columns)


def kea_earlier_files(path: Path) -> list[Path]:
    """
    The files that hold Kea's leases before C{path}, oldest first.  Kea's
    lease file cleanup (LFC, hourly by default) moves C{lease4.csv} to
    C{lease4.csv.2} and starts a new C{lease4.csv} with only its header, then
    compacts C{.1} and C{.2} into C{.completed}, which becomes the new C{.1}.
    Kea itself reads them in this order at start.
    """
    completed = path.with_name(path.name + ".completed")
    if completed.exists():
        return [completed]
    return [path.with_name(path.name + ".1"), path.with_name(path.name + ".2")]
