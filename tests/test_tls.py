"""
HTTPS for the portal's name: the certificate checked at start (every way it
can be wrong is a keyed error), renewed files picked up, broken renewals
ignored, and a handshake naming another host never shown the portal's
certificate (real TLS handshakes, in memory).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from portald.config import ConfigError, TLSSettings
from portald.web.tls import PortalTLS, covers, load_certificate
from tests.tls_support import NOW, LabCA, handshake

HOST = "portal.example"


@pytest.fixture
def ca() -> LabCA:
    return LabCA.make()


def clock_at(when: datetime.datetime) -> Clock:
    clock = Clock()
    clock.advance(when.timestamp())
    return clock


def settings(cert: Path, key: Path) -> TLSSettings:
    return TLSSettings(certificate=cert, key=key, check_interval=60.0)


def test_a_good_certificate_is_served_for_the_portals_name_only(tmp_path: Path, ca: LabCA) -> None:
    cert, key = ca.issue(tmp_path, HOST)
    tls = PortalTLS(settings(cert, key), HOST, clock_at(NOW))
    trusted = ca.write_ca(tmp_path / "ca.pem")
    shown = handshake(tls.getContext(), HOST, trusted)
    assert not isinstance(shown, str), shown
    assert shown.subject.rfc4514_string() == f"CN={HOST}"
    # Another name (an intercepted site), or none: no certificate, no handshake.
    for other in ("bank.example", None):
        refused = handshake(tls.getContext(), other, trusted)
        assert isinstance(refused, str) and refused.startswith("failed"), refused
    assert tls.refused_names == 2


@pytest.mark.parametrize(
    ("problem", "key", "message"),
    [
        ("missing", "http.tls.certificate", "cannot read"),
        ("not-pem", "http.tls.certificate", "holds no PEM certificate"),
        ("other-key", "http.tls.key", "is not the key of the certificate"),
        ("expired", "http.tls.certificate", "expired on"),
        ("not-yet", "http.tls.certificate", "is not valid before"),
        ("other-name", "http.tls.certificate", "is for other.example, not portal.hostname portal.example"),
        ("encrypted-key", "http.tls.key", "holds no unencrypted PEM private key"),
    ],
)
def test_every_wrong_certificate_is_a_keyed_error(
    tmp_path: Path, ca: LabCA, problem: str, key: str, message: str
) -> None:
    cert, key_file = ca.issue(tmp_path, HOST)
    if problem == "missing":
        cert = tmp_path / "nowhere.crt"
    elif problem == "not-pem":
        cert.write_text("hello")
    elif problem == "other-key":
        _, key_file = ca.issue(tmp_path, HOST, stem="other")
    elif problem == "expired":
        cert, key_file = ca.issue(tmp_path, HOST, not_after=NOW - datetime.timedelta(days=1))
    elif problem == "not-yet":
        cert, key_file = ca.issue(tmp_path, HOST, not_before=NOW + datetime.timedelta(days=1))
    elif problem == "other-name":
        cert, key_file = ca.issue(tmp_path, "other.example")
    elif problem == "encrypted-key":
        key_file.write_text(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
    with pytest.raises(ConfigError) as caught:
        load_certificate(settings(cert, key_file), HOST, NOW)
    assert caught.value.key == key and message in str(caught.value)


def test_wildcards_cover_one_label() -> None:
    assert covers(["*.example"], "portal.example")
    assert not covers(["*.example"], "a.portal.example") and not covers(["*.example"], "example")


def test_renewed_files_are_picked_up_and_a_broken_renewal_keeps_the_old(tmp_path: Path, ca: LabCA) -> None:
    cert, key = ca.issue(tmp_path, HOST)
    clock = clock_at(NOW)
    tls = PortalTLS(settings(cert, key), HOST, clock)
    tls.startService()
    first = tls.certificate.leaf.serial_number
    clock.advance(60)
    assert tls.certificate.leaf.serial_number == first  # unchanged files: nothing read
    # A renewal half written (the key first): it does not load, the old one serves.
    ca.issue(tmp_path, HOST, stem="next")
    key.write_bytes((tmp_path / "next.key").read_bytes())
    clock.advance(60)
    assert tls.certificate.leaf.serial_number == first
    trusted = ca.write_ca(tmp_path / "ca.pem")
    assert not isinstance(handshake(tls.getContext(), HOST, trusted), str)
    # ... and the certificate follows: the new pair serves from the next connection.
    cert.write_bytes((tmp_path / "next.crt").read_bytes())
    clock.advance(60)
    renewed = tls.certificate.leaf.serial_number
    assert renewed != first
    shown = handshake(tls.getContext(), HOST, trusted)
    assert not isinstance(shown, str) and shown.serial_number == renewed
    tls.stopService()


def test_the_admin_pages_certificate_answers_any_name_and_its_errors_name_admin_tls(
    tmp_path: Path, ca: LabCA
) -> None:
    from portald.config import AdminTLSSettings

    cert, key = ca.issue(tmp_path, "gateway.venue.example")
    admin = AdminTLSSettings(certificate=cert, key=key)
    tls = PortalTLS(admin, None, clock_at(NOW), section="admin.tls")
    trusted = ca.write_ca(tmp_path / "ca.pem")
    # Staff reach it by the gateway's address or any name: the handshake is served.
    for name in ("gateway.venue.example", "other.example", None):
        shown = handshake(tls.getContext(), name, trusted)
        assert not isinstance(shown, str), (name, shown)
    with pytest.raises(ConfigError) as raised:
        load_certificate(
            AdminTLSSettings(certificate=tmp_path / "missing.pem", key=key), None, NOW, "admin.tls"
        )
    assert raised.value.key == "admin.tls.certificate"
