"""
The answer cache of forwarded queries: bounded in size (least recently used
goes first) and in time (an answer lives no longer than its smallest TTL, and
never longer than C{max_ttl}).  TTLs count down as the answer ages, for both
the full path (twisted.names records) and the fast path (pre-encoded wire
bytes with the TTL fields patched).
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from io import BytesIO

import attrs
from twisted.names import dns

from portald.dns.wire import RCODE_NOERROR, RCODE_NXDOMAIN, skip_name

CacheKey = tuple[bytes, int, int]  # lower-cased name, type, class
_TTL = struct.Struct("!I")


def _with_ttl(record: dns.RRHeader, ttl: int) -> dns.RRHeader:
    return dns.RRHeader(
        name=record.name.name,
        type=record.type,
        cls=record.cls,
        ttl=ttl,
        payload=record.payload,
        auth=record.auth,
    )


class WireAnswer:
    """
    An answer's records encoded once, for a question of the key's length at
    offset 12, so the fast path can reuse them after any client's copy of
    the same question (compression pointers stay valid: the client's
    question has the same length, whatever its letter case).
    """

    __slots__ = ("body", "counts", "_ttl_fields", "_memo")

    def __init__(self, body: bytes, counts: tuple[int, int, int], ttl_fields: Sequence[tuple[int, int]]):
        self.body = body
        self.counts = counts
        self._ttl_fields = tuple(ttl_fields)
        self._memo: tuple[int, bytes] = (0, body)

    def aged(self, elapsed: int) -> bytes:
        """The body with every TTL lowered by C{elapsed} seconds."""
        memo_elapsed, memo_body = self._memo
        if memo_elapsed == elapsed:
            return memo_body
        body = bytearray(self.body)
        for offset, ttl in self._ttl_fields:
            _TTL.pack_into(body, offset, max(0, ttl - elapsed))
        aged = bytes(body)
        self._memo = (elapsed, aged)
        return aged


@attrs.frozen
class CachedAnswer:
    """
    An upstream's answer to one question: its rcode and records, when it was
    stored (on the cache's clock), and for how long it stays valid.
    """

    rcode: int
    answers: tuple[dns.RRHeader, ...]
    authority: tuple[dns.RRHeader, ...]
    additional: tuple[dns.RRHeader, ...]
    stored: float
    lifetime: int
    wire: WireAnswer = attrs.field(eq=False, repr=False)

    expires: float = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "expires", self.stored + self.lifetime)

    def elapsed(self, now: float) -> int:
        """Whole seconds since it was stored: what every TTL has lost."""
        return max(0, int(now - self.stored))

    def records(self, now: float) -> tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]:
        """The three sections, TTLs counted down to C{now}."""
        elapsed = self.elapsed(now)

        def aged(section: Iterable[dns.RRHeader]) -> list[dns.RRHeader]:
            return [_with_ttl(record, max(0, record.ttl - elapsed)) for record in section]

        return aged(self.answers), aged(self.authority), aged(self.additional)

    def addresses(self, name: bytes) -> list[str]:
        """
        The A and AAAA addresses that answer C{name}: records owned by it,
        or by a name its CNAME chain in the answer section leads to.
        Records for any other name (out of bailiwick) are left out.
        """
        owners = {name.lower().rstrip(b".")}
        # Follow the chain in whatever order the records come; each pass
        # adds at least one name or ends it, so it is bounded by the records.
        grew = True
        while grew:
            grew = False
            for record in self.answers:
                if record.type == dns.CNAME and _owner(record) in owners:
                    target = record.payload.name.name.lower().rstrip(b".")
                    if target not in owners:
                        owners.add(target)
                        grew = True
        families = {dns.A: socket.AF_INET, dns.AAAA: socket.AF_INET6}
        return [
            socket.inet_ntop(families[record.type], record.payload.address)
            for record in self.answers
            if record.type in families and _owner(record) in owners
        ]


def _owner(record: dns.RRHeader) -> bytes:
    return record.name.name.lower().rstrip(b".")


def _lifetime(rcode: int, answers: Sequence[dns.RRHeader], authority: Sequence[dns.RRHeader]) -> int:
    """
    How long an answer may be cached: its smallest TTL for a positive answer;
    for a negative one (NXDOMAIN, or no records), the SOA's negative TTL
    (RFC 2308), or 0 (not cached) without a SOA.
    """
    if rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
        return 0
    if rcode == RCODE_NOERROR and answers:
        return min(record.ttl for record in answers)
    for record in authority:
        if record.type == dns.SOA:
            return min(record.ttl, record.payload.minimum)
    return 0


def encode_for_wire(key: CacheKey, sections: Sequence[Sequence[dns.RRHeader]]) -> WireAnswer:
    """Encode C{sections} after a question for C{key}, noting each TTL field."""
    name, qtype, qclass = key
    strio = BytesIO()
    compression: dict[bytes, int] = {}
    # twisted.names counts compression offsets from the start of the message,
    # adding the header size itself: the buffer holds what follows the header.
    dns.Query(name, qtype, qclass).encode(strio, compression)
    question_end = strio.tell()
    ttl_fields = []
    for section in sections:
        for record in section:
            start = strio.tell()
            record.encode(strio, compression)
            encoded = strio.getvalue()
            # The TTL follows the owner name, type and class.
            ttl_offset = skip_name(encoded, start) + 4
            ttl_fields.append((ttl_offset - question_end, record.ttl))
    body = strio.getvalue()[question_end:]
    return WireAnswer(body, tuple(len(section) for section in sections), ttl_fields)  # type: ignore[arg-type]


class AnswerCache:
    """Forwarded answers by (name, type, class), bounded in size and time."""

    def __init__(self, size: int, max_ttl: float) -> None:
        self._size = size
        self._max_ttl = int(max_ttl)
        self._entries: OrderedDict[CacheKey, CachedAnswer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, now: float) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def make_entry(self, key: CacheKey, message: dns.Message, now: float) -> CachedAnswer:
        """
        Turn an upstream's answer into a L{CachedAnswer} (TTLs capped at the
        cache's maximum; any OPT record dropped, portald adds its own).
        """
        cap = self._max_ttl

        def capped(section: Iterable[dns.RRHeader]) -> tuple[dns.RRHeader, ...]:
            return tuple(
                _with_ttl(record, min(record.ttl, cap)) for record in section if record.type != dns.OPT
            )

        answers, authority, additional = (
            capped(message.answers),
            capped(message.authority),
            capped(message.additional),
        )
        return CachedAnswer(
            rcode=message.rCode,
            answers=answers,
            authority=authority,
            additional=additional,
            stored=now,
            lifetime=_lifetime(message.rCode, answers, authority),
            wire=encode_for_wire(key, (answers, authority, additional)),
        )

    def store(self, key: CacheKey, entry: CachedAnswer) -> None:
        """Keep C{entry} if it may be cached at all, evicting the oldest used."""
        if entry.lifetime <= 0:
            return
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
