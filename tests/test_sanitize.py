"""``sanitize_html``: what of a user's HTML may leave flytenotify.

Users write HTML (a notification's ``template``; Flyte 2's ``html_template``)
and it goes out from the company's sender, so nothing in it may run, listen
for events or point anywhere but http(s) and mailto.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flytenotify.engine.sanitize import sanitize_html
from tests.helpers import HtmlMarkup

REMOVED = [
    ("<script>alert(1)</script>kept", "kept"),
    ("<SCRIPT SRC=https://evil.example/x.js></SCRIPT>kept", "kept"),
    (
        '<img src="https://x.example/a.png" onerror="alert(1)">',
        '<img src="https://x.example/a.png">',
    ),
    ('<div onclick="steal()" onmouseover="steal()">x</div>', "<div>x</div>"),
    ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="JaVaScRiPt:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="java\tscript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="&#106;avascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="vbscript:msgbox(1)">x</a>', "<a>x</a>"),
    ('<a href="data:text/html,<script>alert(1)</script>">x</a>', "<a>x</a>"),
    ('<a href="tel:+100">x</a>', "<a>x</a>"),
    ('<a href="ftp://files.example/x">x</a>', "<a>x</a>"),
    ('<a href="//evil.example/x">x</a>', "<a>x</a>"),  # no scheme of its own
    ('<a href="/relative">x</a>', "<a>x</a>"),
    ('<img src="data:image/png;base64,AAAA">', "<img>"),
    ('<iframe src="https://evil.example"></iframe>kept', "kept"),
    ('<svg onload="alert(1)"><a href="javascript:1">s</a></svg>kept', "kept"),
    ('<math><mi href="javascript:alert(1)">x</mi></math>kept', "kept"),
    ('<form action="https://evil.example"><input name="p"></form>kept', "kept"),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example">kept', "kept"),
    ('<base href="https://evil.example/">kept', "kept"),
    ('<link rel="stylesheet" href="https://evil.example/x.css">kept', "kept"),
    ("<style>body{background:url(https://evil.example/t.png)}</style>kept", "kept"),
    ('<p style="background:url(https://evil.example/t.png)">x</p>', "<p>x</p>"),
    ("<!-- a comment -->kept", "kept"),
    ('<object data="https://evil.example/x.swf"></object>kept', "kept"),
]


@pytest.mark.parametrize(("markup", "safe"), REMOVED)
def test_scripts_handlers_and_other_urls_never_leave(markup: str, safe: str) -> None:
    assert sanitize_html(markup) == safe


KEPT = [
    '<a href="https://flyte.example.com/runs/e1">run</a>',
    '<a href="http://flyte.example.com/">run</a>',
    '<a href="mailto:oncall@example.com">mail</a>',
    '<img src="https://flyte.example.com/logo.png" alt="logo">',
    "<p>Run <b>e1</b> <i>failed</i>: <code>exit 1</code></p>",
    "<ul><li>one</li><li>two</li></ul>",
    "<table><tbody><tr><th>phase</th><td>FAILED</td></tr></tbody></table>",
    "line<br>next",
    "&lt;script&gt; stays text",
]


@pytest.mark.parametrize("markup", KEPT)
def test_what_mail_needs_is_kept_as_written(markup: str) -> None:
    assert sanitize_html(markup) == markup


_PIECES = st.sampled_from(
    [
        "<script>",
        "</script>",
        "<a href='",
        "javascript:",
        "java\tscript:",
        "https://ok.example/",
        "'>",
        "</a>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=",
        "<",
        ">",
        '"',
        "'",
        "&#106;",
        "onclick=",
        "text",
        " ",
        "<p>",
        "<!--",
        "-->",
    ]
)


@given(st.lists(_PIECES, max_size=20).map("".join))
def test_no_arrangement_of_pieces_gets_a_script_through(markup: str) -> None:
    safe = sanitize_html(markup)
    seen = HtmlMarkup(safe)
    assert set(seen.tags).isdisjoint({"script", "svg", "iframe", "style"}), seen.tags
    assert not [name for name, _ in seen.attributes if name.startswith("on")]
    for name, value in seen.attributes:
        if name in ("href", "src"):
            assert value.startswith(("https://", "http://", "mailto:")), (name, value)
    assert sanitize_html(safe) == safe  # what comes out is already as safe as it gets
