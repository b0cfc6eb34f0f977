"""
HTTPS for the portal's own name (C{http.tls}): the operator's certificate
for C{portal.hostname}, checked before it is used, renewed files picked up
without a restart, and no other name ever answered: a handshake that names
another host (an intercepted site) is refused, never answered with the
portal's certificate.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID
from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from portald.config import AdminTLSSettings, ConfigError, TLSSettings
from portald.periodic import Periodic

log = Logger()

# The portal's certificate files, or the admin page's.
TLSFiles = TLSSettings | AdminTLSSettings


@attrs.frozen
class PortalCertificate:
    """A certificate chain and its key, checked: they match, are valid now, and name the portal."""

    chain: tuple[x509.Certificate, ...]
    key: object
    not_after: datetime.datetime

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in extension.value.get_values_for_type(x509.DNSName)]


def covers(names: list[str], hostname: str) -> bool:
    """Whether a certificate's DNS names cover C{hostname} (a wildcard covers one label)."""
    for name in names:
        if name == hostname:
            return True
        if name.startswith("*.") and "." in hostname and hostname.split(".", 1)[1] == name[2:]:
            return True
    return False


def load_certificate(
    settings: TLSFiles, hostname: str | None, now: datetime.datetime, section: str = "http.tls"
) -> PortalCertificate:
    """
    The certificate files of C{settings}, checked at C{now}, and for
    C{hostname} unless it is C{None} (the admin page is reached by any name).

    @raise ConfigError: keyed C{<section>.certificate} or C{<section>.key}, saying what is wrong.
    """
    certificate_key, key_key = f"{section}.certificate", f"{section}.key"

    def read(path: Path, key: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}", key=key) from None

    chain_pem = read(settings.certificate, certificate_key)
    key_pem = read(settings.key, key_key)
    try:
        chain = tuple(x509.load_pem_x509_certificates(chain_pem))
    except ValueError:
        raise ConfigError(f"{settings.certificate} holds no PEM certificate", key=certificate_key) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{settings.key} holds no unencrypted PEM private key ({e})", key=key_key) from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if leaf.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(encoding, public):  # type: ignore[union-attr]
        raise ConfigError(
            f"{settings.key} is not the key of the certificate in {settings.certificate}", key=key_key
        )
    if now < leaf.not_valid_before_utc:
        raise ConfigError(
            f"the certificate in {settings.certificate} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            key=certificate_key,
        )
    if now >= leaf.not_valid_after_utc:
        raise ConfigError(
            f"the certificate in {settings.certificate} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            key=certificate_key,
        )
    names = _names(leaf)
    if hostname is not None and not covers(names, hostname):
        raise ConfigError(
            f"the certificate in {settings.certificate} is for {', '.join(names) or 'no DNS name'}, "
            f"not portal.hostname {hostname}",
            key=certificate_key,
        )
    return PortalCertificate(chain, key, leaf.not_valid_after_utc)


# TLS 1.2's forward-secret AEAD suites (TLS 1.3's are OpenSSL's own).
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


def _context_of(certificate: PortalCertificate) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET)
    context.set_cipher_list(CIPHERS)
    context.use_certificate(certificate.leaf)
    for intermediate in certificate.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(certificate.key)
    context.check_privatekey()
    return context


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


class PortalTLS(Service):
    """
    The contexts the HTTPS listener hands out (C{getContext}, one per
    connection: a renewed certificate is used from the next one), and the
    watch on the files that renews it.
    """

    name = "tls"

    def __init__(
        self, settings: TLSFiles, hostname: str | None, clock: IReactorTime, section: str = "http.tls"
    ) -> None:
        self._settings = settings
        # None: any name is answered (the admin page's certificate).
        self._hostname = hostname
        self._section = section
        self._clock = clock
        # Raises the keyed ConfigError at start: portald does not start without it.
        self.certificate = load_certificate(settings, hostname, self._now(), section)
        self._seen = self._files()
        self._context = self._serving(self.certificate)
        # No certificate at all: a handshake naming another host fails.
        self._refusing = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.refused_names = 0
        self._watch = Periodic(clock, settings.check_interval, self.check)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.UTC)

    def _files(self) -> tuple[object, object]:
        return (_file_state(self._settings.certificate), _file_state(self._settings.key))

    def _serving(self, certificate: PortalCertificate) -> SSL.Context:
        context = _context_of(certificate)
        if self._hostname is not None:
            context.set_tlsext_servername_callback(self._server_name)
        return context

    def _server_name(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if name is None or name.decode("ascii", "replace").lower().rstrip(".") != self._hostname:
            # Never the portal's certificate for another name: the handshake fails.
            self.refused_names += 1
            connection.set_context(self._refusing)

    def getContext(self) -> SSL.Context:
        return self._context

    def startService(self) -> None:
        super().startService()
        self._watch.start()

    def stopService(self) -> None:
        self._watch.stop()
        return super().stopService()

    def check(self, force: bool = False) -> None:
        """Load the files again if they changed (or if C{force}); keep the old certificate if they do not load."""
        seen = self._files()
        if seen == self._seen and not force:
            return
        self._seen = seen
        try:
            certificate = load_certificate(self._settings, self._hostname, self._now(), self._section)
        except ConfigError as e:
            log.error(
                "the certificate files changed but cannot be used, the old one stays: {error}", error=str(e)
            )
            return
        self._context = self._serving(certificate)
        self.certificate = certificate
        log.info(
            "HTTPS certificate for {hostname} loaded from {path}, valid until {until}",
            hostname=self._hostname or "the admin page",
            path=str(self._settings.certificate),
            until=certificate.not_after.strftime("%Y-%m-%d %H:%M UTC"),
        )
