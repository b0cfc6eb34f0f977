"""Durations, data amounts and times as staff read them (portald-ctl's tables, the admin page)."""

from __future__ import annotations

import datetime
import time


def duration_text(seconds: float | None) -> str:
    """C{seconds} as ``45s``, ``12m05s``, ``3h20m`` or ``2d04h``; ``-`` for none."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def count_text(number: int, thing: str) -> str:
    """``1 device``, ``3 devices``."""
    return f"{number} {thing}" + ("" if number == 1 else "s")


def bytes_text(count: int | None) -> str:
    """C{count} bytes as ``512 B``, ``1.5 MB`` or ``2.0 GB`` (decimal units); ``-`` for none."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} B"


def when_text(at: float | None) -> str:
    """A moment in local time, to the minute; ``-`` for none."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def deadline(text: str) -> float:
    """
    A voucher's deadline as staff give it: YYYY-MM-DD (that day's first
    moment, UTC) or a Unix time.

    @raise ValueError: saying what was expected.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: expected YYYY-MM-DD or a Unix time") from None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()
