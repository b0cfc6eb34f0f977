"""A test CA and certificates made on the spot (cryptography), and a TLS handshake in memory."""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

# Real time: the handshakes check validity by the real clock.
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
PEM = serialization.Encoding.PEM


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@attrs.frozen
class LabCA:
    """A certificate authority for one test (its clients trust it)."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def make(cls, now: datetime.datetime = NOW) -> LabCA:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("portald test CA"))
            .issuer_name(_name("portald test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def write_ca(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(PEM))
        return path

    def issue(
        self,
        directory: Path,
        *names: str,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        stem: str = "portal",
    ) -> tuple[Path, Path]:
        """A server certificate for C{names}, written with its chain and key: (certificate, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if names else "nobody"))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
            .not_valid_after(not_after or NOW + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(PEM) + self.certificate.public_bytes(PEM))
        key_path.write_bytes(
            key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return cert_path, key_path


def handshake(server_context: SSL.Context, server_name: str | None, ca: Path) -> x509.Certificate | str:
    """
    A client naming C{server_name} (SNI) and trusting C{ca} shakes hands
    with C{server_context} in memory: the certificate it was shown, or why
    the handshake failed.
    """
    client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_context.load_verify_locations(str(ca))
    client_context.set_verify(SSL.VERIFY_PEER, lambda *args: args[-1])
    client = SSL.Connection(client_context, None)
    if server_name is not None:
        client.set_tlsext_host_name(server_name.encode())
    client.set_connect_state()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    for _ in range(10):
        for one, other in ((client, server), (server, client)):
            try:
                one.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                return f"failed: {e}"
            try:
                other.bio_write(one.bio_read(65536))
            except SSL.WantReadError:
                pass
        if client.get_peer_certificate() is not None and server.get_cipher_name() is not None:
            try:
                client.do_handshake()
                return client.get_peer_certificate().to_cryptography()
            except SSL.WantReadError:
                continue
            except SSL.Error as e:
                return f"failed: {e}"
    return "failed: no handshake"
