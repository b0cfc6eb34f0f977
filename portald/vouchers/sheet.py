"""
The printable voucher sheet (``portald-ctl vouchers create … --sheet FILE``):
one card per voucher with its code, its terms, a QR code that joins the
guest Wi-Fi (when C{vouchers.wifi} names it) and one that opens the portal
with the code filled in.  A4 cards to cut out, or slips for a 58 or 80 mm
receipt printer.  QR codes are SVG (segno), inline, so the file stands alone.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.web.template import Tag, tags

from portald.html import flatten_now
from portald.rates import rate_text
from portald.vouchers.codes import read_typed
from portald.web.words import describe_allowance, describe_period

LAYOUTS = ("a4", "80mm", "58mm")
PREFILL = "voucher"


@attrs.frozen
class Slip:
    """What every card of a sheet says besides its code: the venue, the portal, the Wi-Fi."""

    venue: str
    portal_url: str
    ssid: str | None = None
    password: str | None = None
    hidden: bool = False

    @classmethod
    def from_config(cls, config: Any) -> Slip:
        wifi = config.vouchers.wifi
        if wifi is None:
            return cls(config.portal.venue, config.portal_url)
        return cls(config.portal.venue, config.portal_url, wifi.ssid, wifi.password, wifi.hidden)

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Slip:
        return cls(**{field.name: values.get(field.name, field.default) for field in attrs.fields(cls)})

    def sign_in_url(self, code: str) -> str:
        """What the slip's QR code opens: the portal, with the code filled in."""
        return f"{self.portal_url}?{urllib.parse.urlencode({PREFILL: code})}"

    def join_wifi(self) -> str | None:
        """The Wi-Fi QR code's text (``WIFI:T:WPA;S:…;P:…;;``), if the network is named."""
        if self.ssid is None:
            return None
        security = "WPA" if self.password is not None else "nopass"
        import segno.helpers  # imported when a sheet is made: portald runs without it loaded (11 MB)

        return segno.helpers.make_wifi_data(self.ssid, self.password, security, self.hidden)


def _qr(text: str, caption: str, alt: str) -> Tag:
    import segno

    symbol = segno.make(text, error="m")
    image = symbol.svg_data_uri(scale=4, border=2, xmldecl=False, nl=False)
    return tags.figure(tags.img(src=image, alt=alt), tags.figcaption(caption), **{"data-qr": text})


def _terms(voucher: Mapping[str, Any]) -> list[Tag]:
    terms = [tags.li(describe_period(float(voucher["duration"])), " from its first use")]
    devices = int(voucher["devices"])
    terms.append(tags.li("1 device" if devices == 1 else f"up to {devices} devices at once"))
    if voucher.get("quota"):
        terms.append(tags.li(describe_allowance(int(voucher["quota"])), " of data"))
    if voucher.get("rate_down"):
        terms.append(tags.li("up to ", rate_text(int(voucher["rate_down"]))))
    if voucher.get("valid_until"):
        terms.append(
            tags.li("use by ", time.strftime("%d %b %Y %H:%M", time.localtime(voucher["valid_until"])))
        )
    return terms


def _card(slip: Slip, voucher: Mapping[str, Any]) -> Tag:
    code = voucher["code"]
    figures = []
    join = slip.join_wifi()
    if join is not None:
        figures.append(_qr(join, f"1. Scan to join {slip.ssid}", f"QR code: join the Wi-Fi {slip.ssid}"))
    step = "2. " if join is not None else ""
    figures.append(
        _qr(slip.sign_in_url(code), f"{step}Scan to sign in", "QR code: sign in with this voucher")
    )
    how: list[Any] = []
    if slip.ssid is not None:
        how += ["Join ", tags.strong(slip.ssid)]
        if slip.password is not None:
            how += [" (password ", tags.code(slip.password), ")"]
        how.append(", then open any web page and type the code.")
    else:
        how.append("Join the Wi-Fi, then open any web page and type the code.")
    return tags.article(
        tags.header(tags.p(slip.venue, class_="venue"), tags.p("Wi-Fi voucher", class_="what")),
        tags.p(code, class_="code"),
        tags.ul(*_terms(voucher), class_="terms"),
        tags.div(*figures, class_="qrs"),
        tags.p(*how, class_="how"),
        class_="card",
        **{"data-code": code},
    )


STYLE = {
    # 190 mm: A4's width inside the page margins, on screen as on paper.
    "a4": """
@page { size: A4; margin: 10mm; }
body { width: 190mm; display: grid; grid-template-columns: 1fr 1fr; }
.card { height: 54mm; border: 1px dashed #999; padding: 3mm 4mm; display: grid; column-gap: 3mm;
        grid-template-columns: 1fr auto; grid-template-rows: auto auto 1fr auto;
        grid-template-areas: "head qrs" "code qrs" "terms qrs" "how how"; }
.qrs { grid-area: qrs; display: flex; gap: 2mm; }
.qrs img { width: 24mm; height: 24mm; }
figure { width: 24mm; }
""",
    "80mm": "@page { size: 80mm auto; margin: 3mm; } body { width: 74mm; }",
    "58mm": "@page { size: 58mm auto; margin: 2mm; } body { width: 54mm; } .code { font-size: 13pt; }",
}
COMMON = """
* { box-sizing: border-box; }
body { margin: 0; font: 9pt/1.3 system-ui, sans-serif; color: #000; background: #fff; }
.card { break-inside: avoid; overflow: hidden; }
header { grid-area: head; }
header p { margin: 0; }
.venue { font-weight: bold; font-size: 11pt; }
.what { color: #444; }
.code { grid-area: code; font: bold 15pt/1.2 ui-monospace, monospace; white-space: nowrap; margin: 1.5mm 0; }
.terms { grid-area: terms; margin: 0; padding: 0; list-style: none; }
.terms li { display: inline; }
.terms li + li::before { content: " · "; }
.how { grid-area: how; margin: 1mm 0 0; font-size: 8pt; }
figure { margin: 0; text-align: center; font-size: 6.5pt; line-height: 1.2; }
figure img { display: block; margin: 0 auto; }
"""
RECEIPT = """
.card { border-bottom: 1px dashed #000; padding: 3mm 0; break-after: page; text-align: center; }
.qrs { display: flex; flex-direction: column; align-items: center; gap: 2mm; margin-top: 2mm; }
.qrs img { width: 36mm; height: 36mm; }
figure { font-size: 8pt; }
"""


def render_sheet(slip: Slip, vouchers: Sequence[Mapping[str, Any]], layout: str = "a4") -> str:
    """The sheet as a standalone HTML page (C{vouchers}: rows with their C{code}, as created)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {', '.join(LAYOUTS)}, not {layout!r}")
    for voucher in vouchers:
        if read_typed(str(voucher.get("code", ""))) is None:
            raise ValueError(f"not a voucher code: {voucher.get('code')!r}")
    style = COMMON + STYLE[layout] + ("" if layout == "a4" else RECEIPT)
    page = tags.html(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.title(f"Wi-Fi vouchers · {slip.venue}"),
            tags.style(style),
        ),
        tags.body(*(_card(slip, voucher) for voucher in vouchers), class_=f"layout-{layout}"),
        lang="en",
    )
    return flatten_now(page).decode("utf-8")
