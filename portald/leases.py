"""
DHCP lease files: the three formats gateways write, read as pure functions.

Each parser takes a file's whole text and the current time (seconds since
the epoch) and returns a L{ParseResult}: the leases active at that time, the
problems found (with their line), and whether the text looked cut short (a
file caught while its server was writing it).  Parsers never raise on any
text: a malformed line or block is skipped and reported.

* dnsmasq: ``<expiry> <mac> <ip> <hostname> <client-id>`` lines; expiry 0 is
  infinite; a ``duid`` line starts the IPv6 leases of a dual-stack server.
* ISC dhcpd: ``lease <ip> { ... }`` blocks appended over time; the last block
  of an address wins; only ``binding state active`` counts.
* Kea memfile: ``lease4.csv`` with a header; rows appended over time, the last
  row of an address wins; declined and expired-reclaimed rows do not count.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import time
from collections.abc import Callable, Iterator

import attrs

from portald.clients import InvalidMAC, normalise_ip, normalise_mac


@attrs.frozen
class Lease:
    """One address handed to one device until C{expires} (None: never)."""

    ip: str
    mac: str
    hostname: str | None
    expires: float | None

    def active(self, now: float) -> bool:
        return self.expires is None or self.expires > now


@attrs.frozen
class ParseProblem:
    """Something in a lease file that could not be used."""

    line: int
    message: str


@attrs.frozen
class ParseResult:
    """
    What a lease file says: the active leases, the problems, and whether the
    text ends mid-record (C{truncated}: a writer was caught half-way).
    """

    leases: tuple[Lease, ...]
    problems: tuple[ParseProblem, ...] = ()
    truncated: bool = False


def _ipv4(text: str) -> str:
    address = ipaddress.IPv4Address(text)
    return normalise_ip(str(address))


def _active(leases: dict[str, Lease], now: float) -> tuple[Lease, ...]:
    return tuple(lease for lease in leases.values() if lease.active(now))


# --- dnsmasq -------------------------------------------------------------------------


def parse_dnsmasq(text: str, now: float) -> ParseResult:
    """
    dnsmasq's lease file (``--dhcp-leasefile``): one lease per line, written
    whole by dnsmasq on every change (truncate and rewrite in place).
    """
    leases: dict[str, Lease] = {}
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    # A last line without its newline: dnsmasq was caught mid-write.
    truncated = lines[-1] != ""
    ipv6 = False
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "duid":
            # From here on, the leases of a dual-stack dnsmasq are IPv6.
            ipv6 = True
            continue
        if len(fields) < 4:
            problems.append(ParseProblem(number, f"expected 'expiry mac ip hostname client-id': {line!r}"))
            continue
        expiry_text, mac_text, ip_text, hostname = fields[:4]
        if ipv6 or ":" in ip_text:
            # IPv6 leases (IAID in the MAC's place) are not part of the IPv4 map.
            continue
        try:
            expiry = float(int(expiry_text))
            if expiry < 0:
                raise ValueError
        except (ValueError, OverflowError):
            problems.append(ParseProblem(number, f"bad expiry time {expiry_text!r}"))
            continue
        try:
            ip = _ipv4(ip_text)
        except ValueError:
            problems.append(ParseProblem(number, f"bad IPv4 address {ip_text!r}"))
            continue
        try:
            mac = normalise_mac(mac_text)
        except InvalidMAC:
            # dnsmasq writes "<type>-<address>" for non-Ethernet hardware.
            problems.append(ParseProblem(number, f"not an Ethernet MAC address: {mac_text!r}"))
            continue
        leases[ip] = Lease(ip, mac, None if hostname == "*" else hostname, None if expiry == 0 else expiry)
    return ParseResult(_active(leases, now), tuple(problems), truncated)


# --- ISC dhcpd -----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<open_string>"(?:[^"\\]|\\.)*\\?\Z)
    | (?P<punct>[{};])
    | (?P<word>[^\s{};"\#]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b"}


def _unescape(quoted: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape[0] in "01234567":
            return chr(int(escape, 8) & 0xFF)
        if escape[0] == "x" and len(escape) > 1:
            return chr(int(escape[1:], 16))
        return _SIMPLE_ESCAPES.get(escape, escape)

    return _ESCAPE.sub(replace, quoted[1:-1])


@attrs.frozen
class _Token:
    kind: str  # "string", "word" or "punct"
    text: str
    line: int


class _Truncated(Exception):
    """The text ended inside a block or a string."""


def _tokens(text: str) -> Iterator[_Token]:
    line = 1
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # cannot happen: every character starts some token
            raise _Truncated()
        kind = match.lastgroup
        value = match.group()
        if kind == "open_string":
            raise _Truncated()
        if kind in ("string", "punct", "word"):
            yield _Token(kind, _unescape(value) if kind == "string" else value, line)
        line += value.count("\n")
        position = match.end()


def _isc_time(words: list[_Token]) -> float | None:
    """``never``, ``epoch <seconds>`` or ``<weekday> YYYY/MM/DD HH:MM:SS`` (UTC)."""
    texts = [word.text for word in words]
    if texts == ["never"]:
        return None
    if len(texts) == 2 and texts[0] == "epoch":
        return float(int(texts[1]))
    if len(texts) == 3 and texts[0].isdigit():
        return float(calendar.timegm(time.strptime(f"{texts[1]} {texts[2]}", "%Y/%m/%d %H:%M:%S")))
    raise ValueError(f"not a time: {' '.join(texts)!r}")


def _statements(tokens: list[_Token], start: int) -> tuple[list[list[_Token]], int]:
    """
    The statements of a block whose body starts at C{start}, up to its ``}``;
    nested blocks are skipped whole.  Returns them and the index after ``}``.
    """
    statements: list[list[_Token]] = []
    current: list[_Token] = []
    index = start
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.kind == "punct" and token.text == ";":
            if current:
                statements.append(current)
            current = []
        elif token.kind == "punct" and token.text == "{":
            index = _skip_block(tokens, index)
            current = []
        elif token.kind == "punct" and token.text == "}":
            if current:
                statements.append(current)
            return statements, index
        else:
            current.append(token)
    raise _Truncated()


def _skip_block(tokens: list[_Token], index: int) -> int:
    depth = 1
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.kind == "punct" and token.text == "{":
            depth += 1
        elif token.kind == "punct" and token.text == "}":
            depth -= 1
            if depth == 0:
                return index
    raise _Truncated()


def _isc_mac(text: str) -> str:
    # Be lenient about leading zeros ("2:0:0:0:0:1"), as some writers drop them.
    groups = text.split(":")
    if len(groups) == 6 and all(1 <= len(group) <= 2 for group in groups):
        text = ":".join(group.zfill(2) for group in groups)
    return normalise_mac(text)


def _isc_lease(ip_token: _Token, statements: list[list[_Token]]) -> tuple[Lease | None, str | None]:
    """A lease block's lease (None unless active), or a problem."""
    ip = _ipv4(ip_token.text)
    state = None
    ends: float | None = None
    has_end = False
    mac = None
    hostname = None
    for statement in statements:
        words = [token.text for token in statement]
        if words[:2] == ["binding", "state"] and len(words) == 3:
            state = words[2]
        elif words[0] == "ends":
            ends = _isc_time(statement[1:])
            has_end = True
        elif words[0] == "hardware" and len(words) == 3:
            if words[1] != "ethernet":
                return None, f"lease {ip}: not Ethernet hardware ({words[1]})"
            mac = _isc_mac(words[2])
        elif words[0] == "client-hostname" and len(statement) == 2 and statement[1].kind == "string":
            hostname = statement[1].text
    if state != "active":
        return None, None
    if mac is None:
        return None, f"lease {ip}: active, but no 'hardware ethernet'"
    if not has_end:
        return None, f"lease {ip}: active, but no 'ends'"
    return Lease(ip, mac, hostname or None, ends), None


def parse_isc_dhcpd(text: str, now: float) -> ParseResult:
    """
    ISC dhcpd's ``dhcpd.leases``: a journal of ``lease`` blocks (and other
    declarations, skipped); for each address the last block wins.
    """
    problems: list[ParseProblem] = []
    try:
        tokens = list(_tokens(text))
    except _Truncated:
        return ParseResult((), (ParseProblem(text.count("\n") + 1, "unterminated string"),), True)
    latest: dict[str, Lease | None] = {}
    index = 0
    try:
        while index < len(tokens):
            token = tokens[index]
            if token.kind == "word" and token.text == "lease":
                header = tokens[index + 1 : index + 3]
                if len(header) < 2:
                    raise _Truncated()
                ip_token, brace = header
                if not (brace.kind == "punct" and brace.text == "{"):
                    problems.append(ParseProblem(token.line, "expected 'lease <address> {'"))
                    index += 1
                    continue
                statements, index = _statements(tokens, index + 3)
                try:
                    if ":" in ip_token.text:
                        continue  # an IPv6 lease (dhcpd -6 shares the syntax)
                    ip = _ipv4(ip_token.text)
                    lease, problem = _isc_lease(ip_token, statements)
                except (ValueError, OverflowError) as e:
                    problems.append(ParseProblem(token.line, f"lease {ip_token.text}: {e}"))
                    continue
                if problem:
                    problems.append(ParseProblem(token.line, problem))
                # A later block of the same address replaces the earlier one,
                # also when it says the address is no longer active.
                latest[ip] = lease
            elif token.kind == "punct" and token.text == "{":
                index = _skip_block(tokens, index + 1)
            elif token.kind == "punct" and token.text == "}":
                problems.append(ParseProblem(token.line, "unexpected '}'"))
                index += 1
            else:
                # Any other declaration: up to its ';' or through its block.
                while index < len(tokens) and not (
                    tokens[index].kind == "punct" and tokens[index].text in ";{"
                ):
                    index += 1
                if index >= len(tokens):
                    raise _Truncated()
                if tokens[index].text == "{":
                    index = _skip_block(tokens, index + 1)
                else:
                    index += 1
    except _Truncated:
        line = tokens[-1].line if tokens else 1
        problems.append(ParseProblem(line, "the file ends inside a declaration"))
        return ParseResult(
            _active({ip: lease for ip, lease in latest.items() if lease}, now), tuple(problems), True
        )
    return ParseResult(_active({ip: lease for ip, lease in latest.items() if lease}, now), tuple(problems))


# --- Kea -----------------------------------------------------------------------------

_KEA_REQUIRED = ("address", "hwaddr", "expire", "valid_lifetime")
_KEA_DECLINED = 1
_KEA_EXPIRED_RECLAIMED = 2
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
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    truncated = lines[-1] != ""
    if truncated:
        lines = lines[:-1]
    columns: dict[str, int] | None = None
    latest: dict[str, Lease | None] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split(",")
        if columns is None:
            names = [name.strip() for name in fields]
            missing = [name for name in _KEA_REQUIRED if name not in names]
            if missing:
                problems.append(
                    ParseProblem(number, f"not a Kea lease4.csv header (no {', '.join(missing)})")
                )
                return ParseResult((), tuple(problems), truncated)
            columns = {name: position for position, name in enumerate(names)}
            continue
        if len(fields) < len(columns):
            problems.append(ParseProblem(number, f"expected {len(columns)} columns, got {len(fields)}"))
            continue
        row = {name: _kea_unescape(fields[position]) for name, position in columns.items()}

        def field(name: str, row: dict[str, str] = row) -> str:
            return row.get(name, "")

        try:
            ip = _ipv4(field("address"))
            valid_lifetime = int(field("valid_lifetime"))
            expire = int(field("expire"))
            state = int(field("state") or 0)
            expires = None if valid_lifetime == _KEA_INFINITE else float(expire)
        except (ValueError, OverflowError) as e:
            problems.append(ParseProblem(number, f"bad field: {e}"))
            continue
        if valid_lifetime == 0 or state in (_KEA_DECLINED, _KEA_EXPIRED_RECLAIMED):
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
        problems.append(ParseProblem(1, "no header line"))
    return ParseResult(
        _active({ip: lease for ip, lease in latest.items() if lease}, now), tuple(problems), truncated
    )


PARSERS: dict[str, Callable[[str, float], ParseResult]] = {
    "dnsmasq": parse_dnsmasq,
    "isc-dhcpd": parse_isc_dhcpd,
    "kea": parse_kea,
}
