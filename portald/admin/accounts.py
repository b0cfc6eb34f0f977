"""
Staff accounts: the file named by C{admin.users_file}, one C{name:hash}
line per member of staff, made by ``portald-ctl admin add-user NAME``.

A hash is C{scrypt$N$r$p$salt$digest} (the standard library's
C{hashlib.scrypt}, salt and digest in unpadded base64).  Lines starting
with C{#} are comments; a comment that starts with C{# try:} is shown in
portald's welcome lines at start (the development account says so).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path

import attrs
from twisted.logger import Logger

log = Logger()

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# scrypt's interactive cost (RFC 7914, section 2): about 16 MB and tens of ms per check.
COST, BLOCK, PARALLEL = 2**14, 8, 1
SALT_BYTES, DIGEST_BYTES = 16, 32
# A password is typed by a person: this is more than enough, and bounds the work.
LONGEST_PASSWORD = 1024
SHORTEST_PASSWORD = 8
TRY_NOTE = "# try:"


class AccountsError(Exception):
    """The users file cannot be used; the message names the file and line."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@attrs.frozen
class PasswordHash:
    """One account's scrypt hash, as its line in the users file holds it."""

    cost: int
    block: int
    parallel: int
    salt: bytes
    digest: bytes

    @classmethod
    def make(cls, password: str, cost: int = COST) -> PasswordHash:
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(cost, BLOCK, PARALLEL, salt, _scrypt(password, salt, cost, BLOCK, PARALLEL))

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """@raise ValueError: not a hash this module makes."""
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("expected scrypt$N$r$p$salt$digest")
        cost, block, parallel = (int(part) for part in parts[1:4])
        if cost < 2 or cost & (cost - 1) or not 1 <= block <= 64 or not 1 <= parallel <= 16 or cost > 2**20:
            raise ValueError("scrypt parameters out of range")
        return cls(cost, block, parallel, _unb64(parts[4]), _unb64(parts[5]))

    def text(self) -> str:
        return f"scrypt${self.cost}${self.block}${self.parallel}${_b64(self.salt)}${_b64(self.digest)}"

    def matches(self, password: str) -> bool:
        """Whether C{password} is this hash's (slow on purpose: call it off the reactor)."""
        if len(password) > LONGEST_PASSWORD:
            return False
        computed = _scrypt(password, self.salt, self.cost, self.block, self.parallel, len(self.digest))
        return hmac.compare_digest(computed, self.digest)


def _scrypt(
    password: str, salt: bytes, cost: int, block: int, parallel: int, size: int = DIGEST_BYTES
) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=cost, r=block, p=parallel, dklen=size, maxmem=256 * 1024 * 1024
    )


@functools.cache
def unknown_name() -> PasswordHash:
    """Checked when a name is unknown, so that a wrong name takes as long as a wrong password."""
    return PasswordHash.make(secrets.token_urlsafe(16))


@attrs.frozen
class Accounts:
    """What one reading of the users file found."""

    hashes: dict[str, PasswordHash] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()


def parse_accounts(text: str, source: str) -> Accounts:
    """@raise AccountsError: naming C{source}'s line that is wrong."""
    hashes: dict[str, PasswordHash] = {}
    notes: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line.startswith(TRY_NOTE):
            notes.append(line[len(TRY_NOTE) :].strip())
        if not line or line.startswith("#"):
            continue
        name, colon, hashed = line.partition(":")
        if not colon or not NAME.fullmatch(name):
            raise AccountsError(
                f"{source} line {number}: expected name:hash (made by portald-ctl admin add-user)"
            )
        if name in hashes:
            raise AccountsError(f"{source} line {number}: {name} is listed twice")
        try:
            hashes[name] = PasswordHash.parse(hashed)
        except ValueError as e:
            raise AccountsError(f"{source} line {number}: {name}'s hash is not usable ({e})") from None
    return Accounts(hashes, tuple(notes))


def read_accounts(path: Path) -> Accounts:
    """The users file at C{path}; none at all if it does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Accounts()
    except (OSError, UnicodeDecodeError) as e:
        raise AccountsError(f"cannot read the staff accounts in {path}: {e}") from None
    return parse_accounts(text, str(path))


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise AccountsError(
            f"{name!r} is not a usable name: letters, digits and . _ @ -, at most 64, starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if not SHORTEST_PASSWORD <= len(password) <= LONGEST_PASSWORD:
        raise AccountsError(f"a password needs {SHORTEST_PASSWORD} to {LONGEST_PASSWORD} characters")
    return password


def set_account(path: Path, name: str, password: str, cost: int = COST) -> bool:
    """
    Add C{name} to the users file with C{password}, or give it that password
    if it is there (returns whether it was).  Its other lines are kept as they were.
    """
    check_name(name)
    check_password(password)
    read_accounts(path)  # a broken file is not rewritten
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = ["# portald's staff accounts (admin.users_file): name:scrypt hash, one per line."]
    entry = f"{name}:{PasswordHash.make(password, cost).text()}"
    replaced = False
    for index, line in enumerate(lines):
        if line.strip().partition(":")[0] == name and not line.lstrip().startswith("#"):
            lines[index], replaced = entry, True
    if not replaced:
        lines.append(entry)
    _write(path, lines)
    return replaced


def remove_account(path: Path, name: str) -> bool:
    """Take C{name} out of the users file; whether it was there."""
    if name not in read_accounts(path).hashes:
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    _write(
        path,
        [line for line in lines if line.lstrip().startswith("#") or line.strip().partition(":")[0] != name],
    )
    return True


def _write(path: Path, lines: list[str]) -> None:
    """Replace the file whole: readable by its owner and group only, owned as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.chmod(temporary, 0o640)
        if path.exists():
            status = path.stat()
            try:
                os.chown(temporary, status.st_uid, status.st_gid)
            except PermissionError:
                pass
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class StaffAccounts:
    """The users file as the admin page sees it: read again when it changes; a broken one keeps the last good."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._accounts = Accounts()
        self.current()

    def current(self) -> Accounts:
        try:
            status = os.stat(self.path)
            seen = (status.st_mtime_ns, status.st_size)
        except OSError:
            seen = None
        if seen != self._seen:
            self._seen = seen
            try:
                self._accounts = read_accounts(self.path)
            except AccountsError as e:
                log.error("staff accounts not reloaded, the last good ones stay: {error}", error=str(e))
        return self._accounts

    def hash_of(self, name: str) -> PasswordHash | None:
        return self.current().hashes.get(name)
