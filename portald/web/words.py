"""Durations, amounts and reasons as a guest reads them on the portal's pages."""

from __future__ import annotations

from portald.table import EndReason


def describe_duration(seconds: float) -> str:
    """Time left as a person says it: ``1 h 05 min``, ``4 min``, ``less than a minute``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def describe_bytes(amount: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if amount >= size:
            return f"{amount / size:.1f} {unit}"
    return f"{amount} bytes"


def describe_period(seconds: float) -> str:
    """A configured length in words: ``30 minutes``, ``1 hour 30 minutes``, ``2 days``, ``45 seconds``."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} second{'s' if whole != 1 else ''}"
    hours, minutes = divmod(whole // 60, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def describe_allowance(amount: int) -> str:
    """A data allowance as configured: ``500 MB``, ``1.5 GB``."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if amount >= size:
            return f"{round(amount / size, 1):g} {unit}"
    return f"{amount} bytes"


def describe_ending(reason: EndReason, *, idle_timeout: float, quota: int) -> str | None:
    """
    Why a session ended, as the sentence's end after "your session ended";
    C{None} for a reason a guest has nothing to learn from (a replaced
    session is followed by a new one).
    """
    if reason is EndReason.LOGOUT:
        return "because you signed out"
    if reason is EndReason.EXPIRED:
        return "because its time was up"
    if reason is EndReason.IDLE:
        if idle_timeout > 0:
            return f"because you were inactive for {describe_period(idle_timeout)}"
        return "because you were inactive for too long"
    if reason is EndReason.QUOTA:
        if quota > 0:
            return f"because your data allowance of {describe_allowance(quota)} was used"
        return "because your data allowance was used"
    if reason is EndReason.ADMIN:
        return "because the network's staff ended it"
    if reason is EndReason.VOUCHER_REVOKED:
        return "because the network's staff withdrew its voucher"
    if reason is EndReason.VOUCHER_ELSEWHERE:
        return "because its voucher was used on another device"
    return None
