"""
Voucher codes: random, read off a slip and typed on a phone, and never
stored as they are.

A code is 10 characters from an alphabet without look-alikes (no 0/O, no
1/I/L): 31^10, about 2^49.5, shown as C{K7QD-M4XP-R2}.  What is typed is
read ignoring case, spaces and dashes.  The store keeps only an HMAC of the
code under a key kept in its own file, so a stolen database gives away no
unused code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 10
GROUPS = (4, 4, 2)
# Longer input is not a code; it is refused before any hashing.
LONGEST_TYPED = 64
KEY_BYTES = 32


class KeyFileError(Exception):
    """The key file cannot be read or made (the message says which and why)."""


_SPACE = len(ALPHABET) ** LENGTH


def new_code() -> str:
    """A fresh code, without its dashes (one draw from the whole space: every code equally likely)."""
    number = secrets.randbelow(_SPACE)
    letters = []
    for _ in range(LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        letters.append(ALPHABET[digit])
    return "".join(letters)


def shown(code: str) -> str:
    """C{code} grouped for reading: K7QD-M4XP-R2."""
    parts, at = [], 0
    for size in GROUPS:
        parts.append(code[at : at + size])
        at += size
    return "-".join(parts)


def read_typed(typed: str) -> str | None:
    """
    What a guest typed, as a code (upper case, no spaces or dashes); C{None}
    if it cannot be one (wrong length or a character no code has).
    """
    if len(typed) > LONGEST_TYPED:
        return None
    code = "".join(c for c in typed.upper() if c not in " -\t")
    if len(code) != LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


class VoucherKey:
    """The HMAC key codes are stored under."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, code: str) -> str:
        return hmac.new(self._key, code.encode("ascii"), hashlib.sha256).hexdigest()

    @classmethod
    def load_or_create(cls, path: Path) -> VoucherKey:
        """
        The key in C{path}, made (mode 0600) if there is none yet.

        @raise KeyFileError: if it cannot be read or written, or is not a key.
        """
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(KEY_BYTES)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
            except OSError as e:
                raise KeyFileError(f"cannot create the voucher key {path}: {e.strerror}") from None
        except OSError as e:
            raise KeyFileError(f"cannot read the voucher key {path}: {e.strerror}") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(
                f"the voucher key {path} is not a key ({len(key)} bytes, expected {KEY_BYTES}); "
                "restore it from a backup (without it no voucher made with it can be used)"
            )
        return cls(key)
