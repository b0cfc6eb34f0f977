"""
What each admin page shows, built from the operations' JSON answers (the
same ones portald-ctl prints).  Everything shown goes through
twisted.web.template, which escapes it: a hostname a guest chose is text.
"""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.web.template import Tag, tags

from portald.admin.chart import Hour, day_chart, day_table
from portald.admin.layout import choice, field, form
from portald.humane import bytes_text, count_text, duration_text, when_text
from portald.rates import rate_text
from portald.vouchers.sheet import LAYOUTS

EXTENSIONS = (("30m", "30 minutes"), ("1h", "1 hour"), ("4h", "4 hours"), ("1d", "1 day"))
VOUCHER_STATES = ("unused", "active", "used-up", "expired", "revoked")
# Vouchers that still let someone in, and so can be revoked.
REVOCABLE = ("unused", "active")
# Vouchers listed on one page at most (portald-ctl lists them all).
LISTED = 500


def _table(caption: str, headings: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> Tag:
    if not rows:
        return tags.p(empty, class_="empty")
    return tags.table(
        tags.caption(caption),
        tags.thead(tags.tr(*(tags.th(heading, scope="col") for heading in headings))),
        tags.tbody(*(tags.tr(*(tags.td(cell) for cell in row)) for row in rows)),
    )


def _batch_url(path: str, batch: str) -> str:
    return f"{path}?{urllib.parse.urlencode({'batch': batch})}"


def _health(value: object) -> str:
    """A subsystem's health as one line: its fields, not its JSON."""
    if isinstance(value, Mapping):
        return ", ".join(
            f"{key.replace('_', ' ')}: {_health_field(key, item)}" for key, item in value.items()
        )
    if isinstance(value, list):
        return "; ".join(_health(item) for item in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _health_field(key: str, value: object) -> str:
    # Moments are Unix times in the API: shown as the time they are.
    if key.startswith("last") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return when_text(value)
    return _health(value)


def now_page(status: Mapping[str, Any], devices: Sequence[Mapping[str, Any]], csrf: str) -> list[Tag]:
    online = [row for row in devices if row["signed_in"]]
    seen = [row for row in devices if not row["signed_in"]]

    def used(row: Mapping[str, Any]) -> str:
        if row["bytes_down"] is None:
            return "-"
        text = f"{bytes_text(row['bytes_down'])} down, {bytes_text(row['bytes_up'])} up"
        if row["quota_remaining"] is not None:
            text += f" ({bytes_text(row['quota_remaining'])} left)"
        return text

    def actions(row: Mapping[str, Any]) -> Tag:
        extend = form(
            csrf,
            "/sessions/extend",
            tags.input(type="hidden", name="device", value=row["mac"]),
            choice("by", "duration", EXTENSIONS, "1h"),
            button="Extend",
        )
        end = form(
            csrf,
            "/sessions/end",
            tags.input(type="hidden", name="device", value=row["mac"]),
            button="End",
            danger=True,
        )
        return tags.div(*([extend] if row["seconds_remaining"] is not None else []), end, class_="actions")

    online_rows = [
        (
            row["hostname"] or "-",
            tags.code(row["mac"]),
            row["ip"] or "-",
            row["method"],
            "no end" if row["seconds_remaining"] is None else duration_text(row["seconds_remaining"]),
            used(row),
            actions(row),
        )
        for row in online
    ]

    def let_in(row: Mapping[str, Any]) -> Tag:
        if row["method"] == "allowed":
            return tags.span("always allowed")
        return form(
            csrf,
            "/sessions/auth",
            tags.input(type="hidden", name="device", value=row["mac"]),
            button="Let in",
        )

    seen_rows = [
        (row["hostname"] or "-", tags.code(row["mac"]), row["ip"] or "-", let_in(row)) for row in seen
    ]
    health = [
        tags.div(tags.dt(name), tags.dd(_health(value))) for name, value in status.get("health", {}).items()
    ]
    return [
        tags.p(
            f"{status['signed_in']} signed in, {count_text(status['devices_known'], 'device')} known, "
            f"{status['always_allowed']} always allowed; portald {status['version']}, "
            f"up {duration_text(status['uptime_seconds'])}.",
            class_="summary",
        ),
        tags.section(
            tags.h2("Online"),
            _table(
                "Devices signed in",
                ("Name", "MAC", "IP", "Way in", "Time left", "Data used", ""),
                online_rows,
                "No device is signed in.",
            ),
        ),
        tags.section(
            tags.h2("Seen, not signed in"),
            _table(
                "Devices with a lease that have not signed in",
                ("Name", "MAC", "IP", ""),
                seen_rows,
                "Every device portald knows of is signed in.",
            ),
        ),
        tags.section(tags.h2("Health"), tags.dl(*health, class_="health")),
    ]


def _voucher_terms(row: Mapping[str, Any]) -> str:
    terms = [duration_text(row["duration"])]
    if row["devices"] != 1:
        terms.append(f"{row['devices']} devices")
    if row["quota"]:
        terms.append(bytes_text(row["quota"]))
    if row.get("rate_down") is not None:
        terms.append(f"{rate_text(row['rate_down'])} down, {rate_text(row['rate_up'])} up")
    return ", ".join(terms)


def create_form(csrf: str) -> Tag:
    return tags.section(
        tags.h2("Make vouchers"),
        form(
            csrf,
            "/vouchers/create",
            tags.div(
                field("How many", "count", kind="number", value="10", min="1", max="500", required=True),
                field("Each lasts", "duration", value="1d", required=True, placeholder="2h, 1d, 7d"),
                field("Devices each", "devices", kind="number", value="1", min="1", max="100"),
                field("Data each", "quota", placeholder="none, or 2GB"),
                field("Usable until (0:00 UTC)", "valid_until", kind="date"),
                field("Download rate", "rate_down", placeholder="its way in's, or 10Mbit"),
                field("Upload rate", "rate_up", placeholder="its way in's, or 2Mbit"),
                field("Note", "note", maxlength="200", placeholder="conference, room 12"),
                choice("Print as", "layout", [(layout, layout.upper()) for layout in LAYOUTS]),
                class_="fields",
            ),
            button="Make and show them",
        ),
        class_="create",
    )


def vouchers_page(
    rows: Sequence[Mapping[str, Any]], csrf: str, *, batch: str | None, state: str | None, now: float
) -> list[Tag]:
    by_batch: dict[str, Counter[str]] = {}
    notes: dict[str, str] = {}
    for row in rows:
        by_batch.setdefault(row["batch"], Counter())[row["state"]] += 1
        notes.setdefault(row["batch"], row["note"])
    batch_rows = [
        (
            tags.a(name, href=_batch_url("/vouchers", name)),
            notes[name] or "",
            ", ".join(f"{count} {state_name}" for state_name, count in sorted(counts.items())),
            form(
                csrf,
                "/vouchers/revoke",
                tags.input(type="hidden", name="batch", value=name),
                button="Revoke the batch",
                danger=True,
            )
            if any(s in counts for s in REVOCABLE)
            else "",
        )
        for name, counts in sorted(by_batch.items())
    ]
    filters = tags.form(method="get", action="/vouchers", class_="filters")(
        field("Batch", "batch", value=batch or ""),
        choice(
            "State", "state", [("", "any"), *((s, s.replace("-", " ")) for s in VOUCHER_STATES)], state or ""
        ),
        tags.button("Show", type="submit"),
    )
    voucher_rows = [
        (
            tags.code(row["id"]),
            row["batch"],
            row["state"],
            _voucher_terms(row),
            ", ".join(row["devices_now"]) or "-",
            when_text(row["ends"]) if row["ends"] else "-",
            row["note"] or "",
            form(
                csrf,
                "/vouchers/revoke",
                tags.input(type="hidden", name="code", value=row["id"]),
                button="Revoke",
                danger=True,
            )
            if row["state"] in REVOCABLE
            else "",
        )
        for row in rows[:LISTED]
    ]
    more = [tags.p(f"The first {LISTED} of {len(rows)} are shown.")] if len(rows) > LISTED else []
    return [
        create_form(csrf),
        tags.section(
            tags.h2("Batches"),
            _table("Batches of vouchers", ("Batch", "Note", "Vouchers", ""), batch_rows, "No voucher yet."),
        ),
        tags.section(
            tags.h2("Vouchers"),
            filters,
            _table(
                "Vouchers",
                ("Id", "Batch", "State", "Each", "Devices on it", "Ends", "Note", ""),
                voucher_rows,
                "No voucher matches.",
            ),
            *more,
        ),
    ]


def created_page(answer: Mapping[str, Any], layout: str) -> list[Tag]:
    vouchers = answer["vouchers"]
    batch = answer["batch"]
    rows = [
        (tags.code(row["code"], class_="code"), _voucher_terms(row), row["note"] or "") for row in vouchers
    ]
    return [
        tags.p(
            f"{len(vouchers)} vouchers made in batch {batch}. Their codes are shown only now: print them ",
            "or copy them before leaving this page.",
        ),
        tags.p(
            tags.a(
                f"Open the printable sheet ({layout.upper()})",
                href=_batch_url("/vouchers/sheet", batch),
                target="_blank",
                rel="noopener",
                class_="button",
            )
        ),
        _table(f"Batch {batch}", ("Code", "Each", "Note"), rows, "No voucher was made."),
        tags.p(tags.a("Back to the vouchers", href="/vouchers")),
    ]


def today_page(
    hours: Sequence[Hour],
    intercepts: Mapping[str, int],
    logins: Mapping[tuple[str, str], int],
) -> list[Tag]:
    total_signins = sum(hour.sign_ins for hour in hours)
    intercept_rows = [(answer, str(count)) for answer, count in intercepts.items()]
    login_rows = [(method, result, str(count)) for (method, result), count in sorted(logins.items())]
    return [
        tags.section(
            tags.h2("The last 24 hours"),
            tags.p(
                f"{count_text(total_signins, 'sign-in')}; at most "
                f"{count_text(max((h.online for h in hours), default=0), 'device')} online in an hour. "
                "Bars: sign-ins in each hour. Line: devices online in it.",
            ),
            tags.figure(day_chart(hours), class_="chart"),
            tags.details(tags.summary("The figures, hour by hour"), day_table(hours)),
        ),
        tags.section(
            tags.h2("Since portald started"),
            _table(
                "Intercepted web requests, by answer",
                ("Answer", "Requests"),
                intercept_rows,
                "No web request has been intercepted yet.",
            ),
            _table(
                "Sign-ins, by way in and result", ("Way in", "Result", "Count"), login_rows, "No sign-in yet."
            ),
        ),
    ]


def allowed_page(rows: Sequence[Mapping[str, Any]], csrf: str) -> list[Tag]:
    def remove(row: Mapping[str, Any]) -> object:
        if row["source"] != "staff":
            return "in the configuration file"
        return form(
            csrf,
            "/allowed/remove",
            tags.input(type="hidden", name="mac", value=row["mac"]),
            button="Remove",
            danger=True,
        )

    listed = [(tags.code(row["mac"]), row["note"] or "", remove(row)) for row in rows]
    return [
        tags.p(
            "These devices pass without signing in, until removed: a till, a printer, the manager's laptop."
        ),
        _table("Always-allowed devices", ("MAC", "Note", ""), listed, "No device is always allowed."),
        tags.section(
            tags.h2("Allow a device"),
            form(
                csrf,
                "/allowed/add",
                field("MAC address", "mac", required=True, placeholder="02:00:00:aa:bb:cc"),
                field("Note", "note", maxlength="200", placeholder="whose device"),
                button="Allow",
            ),
        ),
    ]


def login_page(token: str) -> list[Tag]:
    return [
        tags.form(method="post", action="/login", class_="login")(
            tags.input(type="hidden", name="csrf", value=token),
            field("Name", "name", required=True, autocomplete="username", autofocus="autofocus"),
            field("Password", "password", kind="password", required=True, autocomplete="current-password"),
            tags.button("Sign in", type="submit"),
        )
    ]
