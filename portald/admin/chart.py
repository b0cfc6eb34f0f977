"""
The last 24 hours from the session store: sign-ins and devices online per
hour, and the same as an SVG chart drawn on the server (no script).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import attrs
from twisted.web.template import Tag, tags

HOUR = 3600.0
HOURS = 24

# The chart's drawing area, in SVG units.
WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP, RIGHT = 40, 28, 24, 40


@attrs.frozen
class Hour:
    start: float
    sign_ins: int
    # Distinct devices with a session open at some time in the hour.
    online: int

    def label(self) -> str:
        return time.strftime("%H:00", time.localtime(self.start))


def last_day(sessions: Iterable[tuple[float, float | None, str]], now: float) -> list[Hour]:
    """The 24 hours up to the end of C{now}'s hour, from (started, ended or None, MAC) rows."""
    first = (math.floor(now / HOUR) + 1 - HOURS) * HOUR
    sign_ins = [0] * HOURS
    online: list[set[str]] = [set() for _ in range(HOURS)]
    for started, ended, mac in sessions:
        if first <= started < first + HOURS * HOUR:
            sign_ins[int((started - first) // HOUR)] += 1
        # The hours the session spans, clipped to the day shown (an open one lasts until now).
        begin = max(0, int((started - first) // HOUR))
        until = now if ended is None else ended
        # An end on the hour is not in the next hour.
        last = min(HOURS - 1, max(begin, math.ceil((until - first) / HOUR) - 1))
        for index in range(begin, last + 1):
            online[index].add(mac)
    return [Hour(first + index * HOUR, sign_ins[index], len(online[index])) for index in range(HOURS)]


def _scale(highest: int) -> int:
    """A round top for an axis that must reach C{highest}."""
    for top in (4, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000):
        if highest <= top:
            return top
    return int(10 ** math.ceil(math.log10(highest)))


def _svg(name: str, **attributes: str) -> Tag:
    return Tag(name)(**attributes)


def day_chart(hours: Sequence[Hour]) -> Tag:
    """Sign-ins per hour as bars (left axis), devices online as a line (right axis)."""
    inner_width, inner_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_width / len(hours)
    bars_top = _scale(max((hour.sign_ins for hour in hours), default=0))
    line_top = _scale(max((hour.online for hour in hours), default=0))

    def y(value: int, top: int) -> float:
        return TOP + inner_height - inner_height * value / top

    chart = _svg(
        "svg",
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {WIDTH} {HEIGHT}",
        role="img",
        **{"aria-labelledby": "day-chart-title", "class": "chart"},
    )
    chart(_svg("title", id="day-chart-title")("Sign-ins per hour and devices online, the last 24 hours"))
    chart(_svg("text", x="0", y=str(TOP - 2), **{"class": "bars-axis"})("sign-ins"))
    chart(
        _svg("text", x=str(WIDTH), y=str(TOP - 2), **{"class": "line-axis", "text-anchor": "end"})("online")
    )
    chart(
        _svg(
            "line",
            x1=str(LEFT),
            y1=str(TOP + inner_height),
            x2=str(WIDTH - RIGHT),
            y2=str(TOP + inner_height),
            **{"class": "axis"},
        )
    )
    for fraction in (0.5, 1.0):
        level = TOP + inner_height - inner_height * fraction
        chart(
            _svg(
                "line",
                x1=str(LEFT),
                y1=f"{level:.1f}",
                x2=str(WIDTH - RIGHT),
                y2=f"{level:.1f}",
                **{"class": "grid"},
            )
        )
        chart(
            _svg(
                "text", x=str(LEFT - 4), y=f"{level + 4:.1f}", **{"class": "bars-axis", "text-anchor": "end"}
            )(str(round(bars_top * fraction)))
        )
        chart(
            _svg("text", x=str(WIDTH - RIGHT + 4), y=f"{level + 4:.1f}", **{"class": "line-axis"})(
                str(round(line_top * fraction))
            )
        )
    points = []
    for index, hour in enumerate(hours):
        x = LEFT + index * step
        top = y(hour.sign_ins, bars_top)
        bar = _svg(
            "rect",
            x=f"{x + 2:.1f}",
            y=f"{top:.1f}",
            width=f"{step - 4:.1f}",
            height=f"{TOP + inner_height - top:.1f}",
            **{"class": "bar"},
        )
        chart(bar(_svg("title")(f"{hour.label()}: {hour.sign_ins} sign-ins, {hour.online} devices online")))
        points.append(f"{x + step / 2:.1f},{y(hour.online, line_top):.1f}")
        if index % 3 == 0:
            chart(
                _svg(
                    "text",
                    x=f"{x + step / 2:.1f}",
                    y=str(HEIGHT - 8),
                    **{"class": "hours", "text-anchor": "middle"},
                )(hour.label())
            )
    chart(_svg("polyline", points=" ".join(points), **{"class": "online"}))
    return chart  # fmt: skip


def day_table(hours: Sequence[Hour]) -> Tag:
    """The chart's figures as a table, for screen readers and for copying."""
    rows = [
        tags.tr(tags.th(hour.label(), scope="row"), tags.td(str(hour.sign_ins)), tags.td(str(hour.online)))
        for hour in hours
    ]
    return tags.table(class_="figures")(
        tags.caption("Sign-ins and devices online, hour by hour"),
        tags.thead(tags.tr(tags.th("Hour", scope="col"), tags.th("Sign-ins", scope="col"), tags.th("Devices online", scope="col"))),
        tags.tbody(*rows),
    )  # fmt: skip
