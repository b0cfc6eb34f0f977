"""
The printable voucher sheet: what each card says, the two QR codes' texts,
the layouts, and input that must not reach the page as markup.  (Chromium
renders and prints it in tests/lab/test_voucher_sheet.py.)
"""

from __future__ import annotations

import urllib.parse
from html.parser import HTMLParser

import pytest
import segno

from portald.vouchers.sheet import LAYOUTS, Slip, render_sheet

CODES = ("K7QD-M4XP-R2", "H3NW-PA9T-CE")
SLIP = Slip("Café <Bar> & Grill", "http://portal.example/", "Café Guest", "pass;word:1", False)


def rows(*codes: str, **terms) -> list[dict]:
    base = {"duration": 86400.0, "devices": 2, "quota": 2 * 10**9, "valid_until": None}
    return [dict(base, code=code, **terms) for code in codes]


class Cards(HTMLParser):
    """Each card's code, its QR codes' texts and images, and all of its text."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        values = dict(attrs)
        self.tags.add(tag)
        if tag == "article":
            self.cards.append({"code": values["data-code"], "qr": [], "images": [], "text": ""})
        elif tag == "figure":
            self.cards[-1]["qr"].append(values["data-qr"])
        elif tag == "img":
            self.cards[-1]["images"].append(values["src"])

    def handle_data(self, data) -> None:
        if self.cards:
            self.cards[-1]["text"] += data


def parsed(html: str) -> Cards:
    cards = Cards()
    cards.feed(html)
    return cards


def test_each_card_joins_the_wifi_then_opens_the_portal_with_its_code() -> None:
    cards = parsed(render_sheet(SLIP, rows(*CODES))).cards
    assert [card["code"] for card in cards] == list(CODES)
    for card in cards:
        join, sign_in = card["qr"]
        # Special characters escaped as the WIFI: format wants (; and : with a backslash).
        assert join == r"WIFI:T:WPA;S:Café Guest;P:pass\;word\:1;;"
        assert sign_in == "http://portal.example/?" + urllib.parse.urlencode({"voucher": card["code"]})
        # Each image is the QR code of exactly that text (segno is deterministic).
        for text, image in zip(card["qr"], card["images"], strict=True):
            assert image.startswith("data:image/svg+xml")
            assert image == segno.make(text, error="m").svg_data_uri(
                scale=4, border=2, xmldecl=False, nl=False
            )
        text = " ".join(card["text"].split())
        assert card["code"] in text and "1 day from its first use" in text
        assert "up to 2 devices at once" in text and "2 GB of data" in text
        assert "Join Café Guest (password pass;word:1)" in text


def test_an_open_network_or_none_named_and_terms_left_out_when_unset() -> None:
    open_net = Slip("Bar", "http://portal.example/", "Bar Free", None)
    (card,) = parsed(render_sheet(open_net, rows(CODES[0], devices=1, quota=None))).cards
    assert card["qr"][0] == "WIFI:T:nopass;S:Bar Free;;"
    assert "password" not in card["text"] and "of data" not in card["text"] and "1 device" in card["text"]
    (card,) = parsed(render_sheet(Slip("Bar", "http://portal.example/"), rows(CODES[0]))).cards
    assert card["qr"] == ["http://portal.example/?voucher=" + CODES[0]]
    assert "Join the Wi-Fi, then open any web page" in card["text"]


def test_the_venue_is_text_never_markup() -> None:
    html = render_sheet(SLIP, rows(CODES[0]))
    assert "Café &lt;Bar&gt; &amp; Grill" in html and "<bar>" not in html.lower()
    assert parsed(html).tags <= {"html", "head", "meta", "title", "style", "body", "article", "header",
                                 "p", "ul", "li", "div", "figure", "img", "figcaption", "strong", "code"}  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_sets_its_paper(layout: str) -> None:
    html = render_sheet(SLIP, rows(*CODES), layout)
    paper = {"a4": "size: A4", "80mm": "size: 80mm auto", "58mm": "size: 58mm auto"}[layout]
    assert paper in html and f'class="layout-{layout}"' in html


def test_what_is_not_a_sheet_is_refused() -> None:
    with pytest.raises(ValueError, match="layout: expected one of a4, 80mm, 58mm"):
        render_sheet(SLIP, rows(*CODES), "letter")
    with pytest.raises(ValueError, match="not a voucher code"):
        render_sheet(SLIP, rows("<script>"))
