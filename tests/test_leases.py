"""The lease-file parsers: every rule of the three formats, and no input makes them raise."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portald.leases.dnsmasq import parse_dnsmasq
from portald.leases.formats import PARSERS
from portald.leases.incremental import INCREMENTAL_PARSERS
from portald.leases.isc import parse_isc_dhcpd
from portald.leases.kea import parse_kea
from portald.leases.model import Lease

NOW = 1_795_581_800.0  # 2026-11-25 04:43:20 UTC


def utc(text: str) -> float:
    import time

    return float(calendar.timegm(time.strptime(text, "%Y/%m/%d %H:%M:%S")))


def by_ip(result) -> dict[str, Lease]:
    return {lease.ip: lease for lease in result.leases}


# --- dnsmasq -------------------------------------------------------------------------

# As dnsmasq 2.90 wrote it in the lab, serving DHCPv4 and DHCPv6 (dhclient -6):
# the server's duid line, then the IPv6 lease with its IAID (1) where the MAC goes.
DNSMASQ_REAL = (
    "1795581902 02:00:00:00:00:01 192.0.2.134 phone-c1 *\n"
    "duid 00:01:00:01:32:99:28:a2:66:84:eb:5e:32:51\n"
    "1795583132 1 2001:db8::164 * 00:01:00:01:32:99:28:a3:02:00:00:00:00:01\n"
)


def test_dnsmasq_real_output() -> None:
    result = parse_dnsmasq(DNSMASQ_REAL, NOW)
    assert result.leases == (Lease("192.0.2.134", "02:00:00:00:00:01", "phone-c1", 1795581902.0),)
    assert result.problems == () and not result.truncated


def test_dnsmasq_infinite_unnamed_and_expired() -> None:
    text = (
        "0 02:00:00:00:00:0A 192.0.2.10 * 01:02:00:00:00:00:0a\n"  # infinite, no name, upper-case MAC
        f"{int(NOW) - 1} 02:00:00:00:00:0b 192.0.2.11 old *\n"  # expired a second ago
        f"{int(NOW)} 02:00:00:00:00:0c 192.0.2.12 now *\n"  # expires right now: gone
    )
    assert by_ip(parse_dnsmasq(text, NOW)) == {
        "192.0.2.10": Lease("192.0.2.10", "02:00:00:00:00:0a", None, None)
    }


def test_dnsmasq_ipv6_leases_after_duid_do_not_break_the_ipv4_map() -> None:
    text = (
        "1795581902 02:00:00:00:00:01 192.0.2.134 phone *\n"
        "duid 00:01:00:01:32:99:23:d6:6a:59:a5:4e:2a:44\n"
        "1795581902 1234567 2001:db8::1a2 phone 00:01:00:01:aa:bb\n"
        "1795581902 T1234 2001:db8::1a3 * 00:01:00:01:aa:cc\n"
    )
    result = parse_dnsmasq(text, NOW)
    assert [lease.ip for lease in result.leases] == ["192.0.2.134"]
    assert result.problems == ()


def test_dnsmasq_malformed_lines_are_skipped_with_their_line() -> None:
    text = (
        "garbage\n"
        "soon 02:00:00:00:00:01 192.0.2.1 a *\n"
        "0 02:00:00:00:00:02 192.0.2.300 b *\n"
        "0 06-02:00:00:00:00:03 192.0.2.3 c *\n"  # non-Ethernet hardware
        "0 02:00:00:00:00:04 192.0.2.4 d *\n"
    )
    result = parse_dnsmasq(text, NOW)
    assert list(by_ip(result)) == ["192.0.2.4"]
    assert [problem.line for problem in result.problems] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "text, truncated",
    [
        ("", False),
        ("0 02:00:00:00:00:01 192.0.2.4 d *\n", False),
        ("0 02:00:00:00:00:01 192.0.2.4 d *\n0 02:00:00:00", True),  # caught mid-write
        ("0 02:00:00:00:00:01 192.0.2.4 d *", True),
    ],
)
def test_dnsmasq_truncation(text: str, truncated: bool) -> None:
    assert parse_dnsmasq(text, NOW).truncated is truncated


# --- ISC dhcpd -----------------------------------------------------------------------

# As isc-dhcp-server 4.4.3-P1 wrote it in the lab: a grant to two clients, then
# the release of the first appended (later block, binding state free).
ISC_REAL = r"""# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\000\001\000\0012\231#\307\372D<\367\177u";

lease 192.0.2.50 {
  starts 3 2026/11/25 04:42:47;
  ends 3 2026/11/25 04:44:47;
  cltt 3 2026/11/25 04:42:47;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 02:00:00:00:00:01;
  client-hostname "phone-c1";
}
lease 192.0.2.51 {
  starts 3 2026/11/25 04:42:47;
  ends 3 2026/11/25 04:44:47;
  cltt 3 2026/11/25 04:42:47;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 02:00:00:00:00:02;
}
"""
ISC_RELEASE = """lease 192.0.2.50 {
  starts 3 2026/11/25 04:42:47;
  ends 3 2026/11/25 04:42:48;
  tstp 3 2026/11/25 04:42:48;
  cltt 3 2026/11/25 04:42:47;
  binding state free;
  hardware ethernet 02:00:00:00:00:01;
}
"""


def test_isc_real_output() -> None:
    result = parse_isc_dhcpd(ISC_REAL, NOW)
    ends = utc("2026/11/25 04:44:47")
    assert by_ip(result) == {
        "192.0.2.50": Lease("192.0.2.50", "02:00:00:00:00:01", "phone-c1", ends),
        "192.0.2.51": Lease("192.0.2.51", "02:00:00:00:00:02", None, ends),
    }
    assert result.problems == () and not result.truncated


def test_isc_later_block_overrides_earlier() -> None:
    result = parse_isc_dhcpd(ISC_REAL + ISC_RELEASE, NOW)
    assert list(by_ip(result)) == ["192.0.2.51"]
    # ... and a later active block brings the address back, for another MAC.
    again = ISC_REAL + ISC_RELEASE
    again += "lease 192.0.2.50 { binding state active; ends never; hardware ethernet 02:00:00:00:00:09; }\n"
    assert by_ip(parse_isc_dhcpd(again, NOW))["192.0.2.50"] == Lease(
        "192.0.2.50", "02:00:00:00:00:09", None, None
    )


def test_isc_ends_epoch_never_and_past() -> None:
    text = (
        "lease 192.0.2.1 { binding state active; ends never; hardware ethernet 02:00:00:00:00:01; }\n"
        f"lease 192.0.2.2 {{ binding state active; ends epoch {int(NOW) + 60}; # Wed Nov 25 ...\n"
        "  hardware ethernet 02:00:00:00:00:02; }\n"
        "lease 192.0.2.3 { binding state active; ends 3 2020/01/01 00:00:00; hardware ethernet 02:00:00:00:00:03; }\n"
        "lease 192.0.2.4 { binding state backup; ends never; hardware ethernet 02:00:00:00:00:04; }\n"
        "lease 192.0.2.5 { binding state expired; ends never; hardware ethernet 02:00:00:00:00:05; }\n"
    )
    result = parse_isc_dhcpd(text, NOW)
    assert by_ip(result) == {
        "192.0.2.1": Lease("192.0.2.1", "02:00:00:00:00:01", None, None),
        "192.0.2.2": Lease("192.0.2.2", "02:00:00:00:00:02", None, NOW + 60),
    }


def test_isc_quoted_strings_escapes_and_comments() -> None:
    text = r"""
# a comment with a lease 192.0.2.9 { binding state active; } in it
lease 192.0.2.7 {
  binding state active; # trailing comment; with } and {
  ends never;
  hardware ethernet 2:0:0:0:0:7;
  uid "\001\002\000\000\000\000\007";
  set vendor-class-identifier = "with \"quotes\" ; { } # inside";
  client-hostname "ann\'s \"phone\"\040\101";
  on expiry { set x = "y"; }
}
"""
    result = parse_isc_dhcpd(text, NOW)
    assert by_ip(result) == {
        "192.0.2.7": Lease("192.0.2.7", "02:00:00:00:00:07", 'ann\'s "phone" A', None),
    }
    assert result.problems == ()


def test_isc_other_declarations_are_skipped() -> None:
    text = (
        'failover peer "dhcp" state { my state normal at 1 2026/11/23 00:00:00; partner state normal; }\n'
        "host phone { dynamic; hardware ethernet 02:00:00:00:00:01; fixed-address 192.0.2.9; }\n"
        'subclass "allocation-class" 1:02:00:00:00:00:01;\n'
        "lease 2001:db8::5 { binding state active; ends never; }\n"
        "lease 192.0.2.8 { binding state active; ends never; hardware ethernet 02:00:00:00:00:08; }\n"
    )
    result = parse_isc_dhcpd(text, NOW)
    assert list(by_ip(result)) == ["192.0.2.8"]
    assert result.problems == ()


def test_isc_malformed_blocks_are_skipped_and_reported() -> None:
    text = (
        "lease 192.0.2.300 { binding state active; ends never; hardware ethernet 02:00:00:00:00:01; }\n"
        "lease 192.0.2.2 { binding state active; ends someday; hardware ethernet 02:00:00:00:00:02; }\n"
        "lease 192.0.2.3 { binding state active; ends never; }\n"
        "lease 192.0.2.4 { binding state active; ends never; hardware token-ring 02:00:00:00:00:04; }\n"
        "}\n"
        "lease 192.0.2.5 { binding state active; ends never; hardware ethernet 02:00:00:00:00:05; }\n"
    )
    result = parse_isc_dhcpd(text, NOW)
    assert list(by_ip(result)) == ["192.0.2.5"]
    assert [problem.line for problem in result.problems] == [1, 2, 3, 4, 5]
    assert not result.truncated


@pytest.mark.parametrize(
    "cut",
    [
        "lease 192.0.2.9 {\n  binding state active;\n  ends ne",
        'lease 192.0.2.9 { uid "\\001',
        "lease",
        "lease 192",
    ],
)
def test_isc_cut_short_is_truncated_and_keeps_earlier_blocks(cut: str) -> None:
    result = parse_isc_dhcpd(ISC_REAL + cut, NOW)
    assert result.truncated
    assert by_ip(result) == by_ip(parse_isc_dhcpd(ISC_REAL, NOW))


def test_isc_problem_lines_count_comments_and_strings() -> None:
    text = '# one\nserver-duid "a\nb";\n\nlease 192.0.2.1 {\n  ends never; # no state\n}\nlease 192.0.2.999 { binding state active; }\n'
    result = parse_isc_dhcpd(text, NOW)
    assert [problem.line for problem in result.problems] == [8]


# --- Kea -----------------------------------------------------------------------------

# As kea-dhcp4 2.2.0 wrote it in the lab: two grants, then a release (valid_lifetime 0).
KEA_REAL = (
    "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n"
    "192.0.2.50,02:00:00:00:00:01,,120,1795581892,1,0,0,phone-c1,0,\n"
    "192.0.2.51,02:00:00:00:00:02,,120,1795581892,1,0,0,,0,\n"
)
KEA_RELEASE = "192.0.2.50,02:00:00:00:00:01,,0,1795581772,1,0,0,phone-c1,0,\n"


def test_kea_real_output() -> None:
    result = parse_kea(KEA_REAL, NOW)
    assert by_ip(result) == {
        "192.0.2.50": Lease("192.0.2.50", "02:00:00:00:00:01", "phone-c1", 1795581892.0),
        "192.0.2.51": Lease("192.0.2.51", "02:00:00:00:00:02", None, 1795581892.0),
    }
    assert result.problems == () and not result.truncated


def test_kea_release_row_removes_the_lease() -> None:
    assert list(by_ip(parse_kea(KEA_REAL + KEA_RELEASE, NOW))) == ["192.0.2.51"]


def test_kea_states_infinite_escapes_and_expiry() -> None:
    text = (
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n"
        "192.0.2.1,02:00:00:00:00:01,,4294967295,6090549095,1,0,0,ann&#x2c the phone,0,,0\n"
        "192.0.2.2,02:00:00:00:00:02,,120,1795581892,1,0,0,,1,,0\n"  # declined
        "192.0.2.3,02:00:00:00:00:03,,120,1795581892,1,0,0,,2,,0\n"  # expired-reclaimed
        "192.0.2.4,02:00:00:00:00:04,,120,1795581000,1,0,0,,0,,0\n"  # expired, not yet reclaimed
        "192.0.2.5,,,120,1795581892,1,0,0,,0,,0\n"  # no hwaddr: reported
    )
    result = parse_kea(text, NOW)
    assert by_ip(result) == {"192.0.2.1": Lease("192.0.2.1", "02:00:00:00:00:01", "ann, the phone", None)}
    assert [problem.line for problem in result.problems] == [6]


def test_kea_header_required_and_short_rows_reported() -> None:
    assert parse_kea("192.0.2.50,02:00:00:00:00:01,,120,1795581892,1,0,0,x,0,\n", NOW).problems
    result = parse_kea(KEA_REAL + "192.0.2.52,02:00:00:00:00:03\n", NOW)
    assert len(result.leases) == 2 and [problem.line for problem in result.problems] == [4]
    assert parse_kea(KEA_REAL + "192.0.2.52,02:00", NOW).truncated


def test_kea_empty_file_is_empty() -> None:
    assert parse_kea("", NOW).leases == () and parse_kea("", NOW).problems == ()


# --- every parser, any input ---------------------------------------------------------

lease_like = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "lease",
                "192.0.2.5",
                "{",
                "}",
                ";",
                '"',
                "\\",
                "#",
                "ends",
                "never",
                "epoch",
                "99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999",
                "binding state active",
                "hardware ethernet 02:00:00:00:00:01",
                "3 2026/13/45 99:99:99",
                "duid",
                "0",
                ",",
                "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n",
                "4294967295",
                "\n",
                " ",
                "\x0b",
            ]
        ),
        st.text(max_size=20),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), lease_like), now=st.floats(allow_nan=False))
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_no_input_makes_a_parser_raise(name: str, text: str, now: float) -> None:
    result = PARSERS[name](text, now)
    for lease in result.leases:
        assert lease.ip.startswith(tuple("0123456789"))


@given(
    st.dictionaries(
        st.integers(1, 254).map(lambda n: f"192.0.2.{n}"),
        st.tuples(
            st.integers(0, 255).map(lambda n: f"02:00:00:00:00:{n:02x}"),
            st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)),
            st.one_of(st.none(), st.integers(int(NOW) + 1, 2**40)),
        ),
        max_size=20,
    )
)
def test_dnsmasq_round_trip(leases: dict) -> None:
    """What dnsmasq would write for these leases parses back to them."""
    text = "".join(
        f"{expiry or 0} {mac} {ip} {name or '*'} *\n" for ip, (mac, name, expiry) in leases.items()
    )
    expected = {
        ip: Lease(ip, mac, name, expiry and float(expiry)) for ip, (mac, name, expiry) in leases.items()
    }
    assert by_ip(parse_dnsmasq(text, NOW)) == expected


def test_hostnames_cannot_forge_log_lines_and_isc_escapes_are_utf8() -> None:
    isc = (
        "lease 192.0.2.7 { binding state active; ends never; hardware ethernet 02:00:00:00:00:07;\n"
        '  client-hostname "evil\\012lease 192.0.2.9 -> 02:00:00:00:00:09 caf\\303\\251"; }\n'
    )
    (lease,) = parse_isc_dhcpd(isc, NOW).leases
    assert lease.hostname == "evil?lease 192.0.2.9 -> 02:00:00:00:00:09 café"
    kea = KEA_REAL.replace("phone-c1", "a\x1b[2Jb")
    assert by_ip(parse_kea(kea, NOW))["192.0.2.50"].hostname == "a?[2Jb"


def test_kea_files_read_one_after_another_and_states_other_than_default() -> None:
    # The watcher reads lease4.csv.2 then lease4.csv: a header in the middle.
    later = KEA_REAL.splitlines(keepends=True)[0] + KEA_RELEASE
    assert list(by_ip(parse_kea(KEA_REAL + later, NOW))) == ["192.0.2.51"]
    released = KEA_REAL.replace(",phone-c1,0,", ",phone-c1,3,")  # state 3: released
    assert list(by_ip(parse_kea(released, NOW))) == ["192.0.2.51"]


def test_isc_text_is_tokenized_in_pieces_exactly_as_whole() -> None:
    from portald.leases import isc

    block = 'lease 192.0.2.{n} {{\n  hardware ethernet 02:00:00:00:00:{n:02x};\n  client-hostname "a\\"b {n}";\n}}\n'
    text = "".join(block.format(n=n % 250) for n in range(3000))
    # A string with a raw line break and a closing brace inside, where a cut would fall.
    tricky = text[: isc.PIECE] + 'lease 192.0.2.9 {\n  client-hostname "x\n}\ny";\n}\n' + text[isc.PIECE :]
    for sample in (text, tricky):
        pieces = isc._pieces(sample)
        assert len(pieces) > 1 and "".join(pieces) == sample
        assert [t for p in pieces for t in isc._TOKEN.findall(p)] == isc._TOKEN.findall(sample)


# --- reading again at the cost of what changed (the fast path) ------------------------


def _journal_of(name: str, count: int, released: int) -> str:
    """A journal as each server would grow it: grants, then releases appended."""
    if name == "isc-dhcpd":
        grant = "lease 192.0.2.{n} {{\n  binding state active;\n  ends never;\n  hardware ethernet 02:00:00:00:00:{n:02x};\n}}\n"
        release = (
            "lease 192.0.2.{n} {{\n  binding state free;\n  hardware ethernet 02:00:00:00:00:{n:02x};\n}}\n"
        )
        head = "# comment\nauthoring-byte-order little-endian;\n"
    elif name == "kea":
        grant = "192.0.2.{n},02:00:00:00:00:{n:02x},,3600,4294967295,1,0,0,h{n},0,\n"
        release = "192.0.2.{n},02:00:00:00:00:{n:02x},,0,0,1,0,0,h{n},0,\n"
        head = KEA_REAL.splitlines(keepends=True)[0]
    else:
        grant = "0 02:00:00:00:00:{n:02x} 192.0.2.{n} h{n} *\n"
        release = ""
        head = ""
    return (
        head
        + "".join(grant.format(n=n) for n in range(1, count + 1))
        + "".join(release.format(n=n) for n in range(1, released + 1))
    )


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.one_of(st.text(max_size=40), lease_like), min_size=1, max_size=6),
    grow=st.booleans(),
    now=st.sampled_from([NOW, 0.0]),
)
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_reading_again_says_what_a_first_read_says(
    name: str, texts: list[str], grow: bool, now: float
) -> None:
    """
    Whatever a file's texts one after another (grown by appends, as journals
    are, or anything at all), each read of the remembering parser is the pure
    parser's read of the same text.
    """
    parser = INCREMENTAL_PARSERS[name]()
    text = ""
    for part in texts:
        text = text + part if grow else part
        assert parser(text, now) == PARSERS[name](text, now)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_reading_again_after_appends_rewrites_and_cuts(name: str) -> None:
    parser = INCREMENTAL_PARSERS[name]()
    full = _journal_of(name, 200, 50)
    # Appends in uneven steps (some mid-record), a rewrite shorter than before,
    # garbage before the old cut, then growing again.
    versions = [full[:n] for n in range(0, len(full), 997)] + [full]
    versions += [
        full[: len(full) // 3],
        "x" + full[1:],
        full,
        full + full[:500],
        full + "lease 192.0.2.9 {\n",
    ]
    for text in versions:
        assert parser(text, NOW) == PARSERS[name](text, NOW)


def test_isc_read_again_reads_only_what_was_appended() -> None:
    parser = INCREMENTAL_PARSERS["isc-dhcpd"]()
    text = _journal_of("isc-dhcpd", 250, 0)
    parser(text, NOW)
    read: list[str] = []
    real = parser._read_journal
    parser._read_journal = lambda part, context: read.append(part) or real(part, context)
    appended = "lease 192.0.2.7 {\n  binding state free;\n  hardware ethernet 02:00:00:00:00:07;\n}\n"
    assert len(parser(text + appended, NOW).leases) == 249
    assert "".join(read) == appended
