"""The report's page skeleton from its Jinja2 templates (:mod:`darkfab.scenarios.templating`):
title escaped, the section fragments inlined in order as HTML, the stylesheet inlined, and the
templates shipped as package data (found through the package, not the source tree)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from jinja2 import UndefinedError

from darkfab.scenarios.templating import asset, render


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_report_page_skeleton():
    sections = ['<h2>Plant</h2><table><tr><td>1 &lt; 2</td></tr></table>',
                '<figure><img alt="x" src="data:image/png;base64,AAAA"></figure>']
    page = render("report_assets", "report.html", title="run <A & B>", subtitle="<code>s</code>",
                  css="h1{color:red}", sections=sections, stamp="2026-01-01 00:00 UTC")
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</html>\n")
    assert page.count("<title>run &lt;A &amp; B&gt;</title>") == 1
    assert "<h1>run &lt;A &amp; B&gt;</h1>" in page
    assert '<p class="sub"><code>s</code></p>' in page  # the subtitle is HTML
    assert "<style>h1{color:red}</style>" in page
    assert "\n".join(sections) in page  # fragments verbatim, in order
    assert "Written by darkfab report on 2026-01-01 00:00 UTC." in page
    p = Tags()
    p.feed(page)
    assert p.tags == ["html", "head", "meta", "meta", "title", "style", "body", "h1", "p", "code",
                      "h2", "table", "tr", "td", "figure", "img", "footer"]


def test_a_missing_value_is_an_error():
    with pytest.raises(UndefinedError):
        render("report_assets", "report.html", title="t", subtitle="", css="", sections=[])


def test_templates_and_assets_are_package_data():
    assert "{% extends" in asset("report_assets", "report.html")
    assert "{% block sections %}" in asset("report_assets", "base.html")
    assert "{{ script|safe }}" in asset("view_assets", "view.html")
