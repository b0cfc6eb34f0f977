"""
The fast path: the common UDP queries answered straight from bytes, with
the wire code of L{portald.dns.wire}.  The full path (L{portald.dns.server})
is the reference; tests/test_dns_properties.py checks both give the same
answers.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import IReactorTime

from portald.dns.cache import AnswerCache
from portald.dns.policy import FORWARD_VERDICT, REDIRECT_VERDICT, WALLED_GARDEN_VERDICT, LocalAnswers, Policy
from portald.dns.wire import (
    RCODE_NOERROR,
    TYPE_A,
    TYPE_AAAA,
    SimpleQuery,
    address_record,
    build_answer,
    parse_simple_query,
    response_flags,
    udp_limit,
)
from portald.memo import BoundedMemo

# How many distinct queries the fast path keeps parsed (about 200 bytes each).
PARSED_MEMO_SIZE = 4096
_NO_RECORDS = (0, 0, 0)
_ONE_ANSWER = (1, 0, 0)


class FastPath:
    """
    The common UDP queries answered straight from bytes: a redirect, or a
    forwarded answer already in the cache.  Returns C{None} for anything
    else, which then takes the full path.
    """

    def __init__(self, policy: Policy, local: LocalAnswers, cache: AnswerCache, clock: IReactorTime) -> None:
        self._policy = policy
        self._cache = cache
        self._clock = clock
        self._parsed: BoundedMemo[bytes, SimpleQuery] = BoundedMemo(PARSED_MEMO_SIZE)
        # What this path answered (plain ints: the cheapest count there is).
        self.redirected = 0
        self.cached = 0
        self._redirect = {
            TYPE_A: address_record(TYPE_A, local.ttl, socket.inet_pton(socket.AF_INET, local.address))
        }
        if local.address6:
            self._redirect[TYPE_AAAA] = address_record(
                TYPE_AAAA, local.ttl, socket.inet_pton(socket.AF_INET6, local.address6)
            )

    def answer(self, data: bytes, source: str) -> bytes | None:
        # Clients ask the same few names over and over: the parse of the
        # bytes after the ID is kept (and, in it, the redirect answer).
        after_id = data[2:]
        query = self._parsed.get(after_id)
        if query is None:
            query = parse_simple_query(data)
            if query is None:
                return None
            self._parsed.remember(after_id, query)
        client = self._policy.client(source)
        if client is None:
            return None
        verdict = self._policy.classify(client, query.name)
        if verdict is REDIRECT_VERDICT:
            reply = query.redirect
            if reply is None:
                reply = query.redirect = self._redirect_answer(query)
        elif verdict is FORWARD_VERDICT or verdict is WALLED_GARDEN_VERDICT:
            now = self._clock.seconds()
            entry = self._cache.get(query.key, now)
            if entry is None:
                return None
            elapsed = int(now - entry.stored)  # as CachedAnswer.elapsed, without the call
            # The same query answered from the same entry in the same second
            # gets the same bytes.
            memo = query.forwarded
            if memo is not None and memo[0] is entry and memo[1] == elapsed:
                reply = memo[2]
            else:
                wire = entry.wire
                flags = response_flags(query.flags, authoritative=False, rcode=entry.rcode)
                reply = build_answer(query, flags, wire.counts, wire.aged(elapsed if elapsed > 0 else 0))
                query.forwarded = (entry, elapsed, reply)
        else:
            return None
        # Too big for this client: the full path sets TC.
        if len(reply) + 2 > udp_limit(query.edns_size):
            return None
        if verdict is REDIRECT_VERDICT:
            self.redirected += 1
        else:
            self.cached += 1
        if verdict is FORWARD_VERDICT and self._policy.on_activity is not None:
            self._policy.saw(client, len(data), len(reply) + 2)
        return data[:2] + reply

    def _redirect_answer(self, query: SimpleQuery) -> bytes:
        record = self._redirect.get(query.qtype)
        flags = response_flags(query.flags, authoritative=True, rcode=RCODE_NOERROR)
        if record is None:
            return build_answer(query, flags, _NO_RECORDS, b"")
        return build_answer(query, flags, _ONE_ANSWER, record)
