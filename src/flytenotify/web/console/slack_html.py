"""Slack Block Kit drawn as HTML, close to how Slack shows it.

Every piece of text is escaped here before any markup is added, so the
result is safe to insert into a page: a ``<script>`` in an error message is
shown as text. Slack's mrkdwn is rendered the way Slack does: ``*bold*``,
``_italic_``, ``~strike~``, ``` `code` ```, fenced blocks, ``<url|label>``
links (http and https only), ``<!channel>``-style mentions and the few emoji
shortcodes our messages use. ``&amp; &lt; &gt;`` in mrkdwn are literal
characters, as in Slack.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

# The shortcodes the Slack channel writes (and a few common ones); others stay as text.
EMOJI = {
    "white_check_mark": "\u2705",
    "x": "\u274c",
    "no_entry_sign": "\U0001f6ab",
    "hourglass": "\u231b",
    "information_source": "\u2139\ufe0f",
    "warning": "\u26a0\ufe0f",
    "rotating_light": "\U0001f6a8",
    "fire": "\U0001f525",
}

_CONTROL = re.compile(r"<([^<>]*)>")
_FENCE = re.compile(r"```\n?(.*?)\n?```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_STYLES = (
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), "strong"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), "em"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), "del"),
)
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")


def mrkdwn(text: str) -> Markup:
    """Slack mrkdwn as safe HTML."""
    parts: list[str] = []
    at = 0
    for fence in _FENCE.finditer(text):
        parts.append(_inline(text[at : fence.start()]))
        parts.append(f'<pre class="slack-pre">{_plain(fence.group(1))}</pre>')
        at = fence.end()
    parts.append(_inline(text[at:]))
    return Markup("".join(parts))


def plain_text(text: str, emoji: bool = True) -> Markup:
    """A ``plain_text`` object: no formatting, emoji shortcodes drawn when allowed."""
    escaped = html.escape(text)
    return Markup(_emoji(escaped) if emoji else escaped)


def text_object(obj: Any) -> Markup:
    if not isinstance(obj, dict):
        return Markup("")
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return mrkdwn(text)
    return plain_text(text, bool(obj.get("emoji", True)))


def blocks(message: dict[str, Any]) -> Markup:
    """A message's ``blocks`` (or its ``text`` fallback alone) as HTML."""
    found = message.get("blocks")
    if not isinstance(found, list) or not found:
        return Markup(f'<div class="slack-section">{mrkdwn(str(message.get("text", "")))}</div>')
    drawn = [_block(b) for b in found if isinstance(b, dict)]
    return Markup("".join(drawn))


def _block(block: dict[str, Any]) -> str:
    draw = _DRAWERS.get(str(block.get("type")))
    if draw is None:
        kind = html.escape(str(block.get("type")))
        return f'<div class="slack-unknown">[{kind} block]</div>'
    return draw(block)


def _header(block: dict[str, Any]) -> str:
    return f'<div class="slack-header">{text_object(block.get("text"))}</div>'


def _section(block: dict[str, Any]) -> str:
    inner = ""
    if block.get("text"):
        inner += f'<div class="slack-text">{text_object(block["text"])}</div>'
    fields = block.get("fields")
    if isinstance(fields, list) and fields:
        cells = "".join(f'<div class="slack-field">{text_object(f)}</div>' for f in fields)
        inner += f'<div class="slack-fields">{cells}</div>'
    return f'<div class="slack-section">{inner}</div>'


def _context(block: dict[str, Any]) -> str:
    elements = block.get("elements") or []
    drawn = "".join(
        f"<span>{text_object(e)}</span>" for e in elements if isinstance(e, dict) and "text" in e
    )
    return f'<div class="slack-context">{drawn}</div>'


def _divider(block: dict[str, Any]) -> str:
    return '<hr class="slack-divider">'


def _actions(block: dict[str, Any]) -> str:
    buttons = []
    for element in block.get("elements") or []:
        if not isinstance(element, dict) or element.get("type") != "button":
            continue
        label = text_object(element.get("text"))
        url = str(element.get("url", ""))
        if url.startswith(("https://", "http://")):
            buttons.append(
                f'<a class="slack-button" href="{html.escape(url)}" rel="noopener noreferrer"'
                f' target="_blank">{label}</a>'
            )
        else:
            buttons.append(f'<span class="slack-button">{label}</span>')
    return f'<div class="slack-actions">{"".join(buttons)}</div>'


_DRAWERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "header": _header,
    "section": _section,
    "context": _context,
    "divider": _divider,
    "actions": _actions,
}


def _inline(text: str) -> str:
    """Text outside fenced blocks: control sequences, then code spans, then styles."""
    out: list[str] = []
    at = 0
    for control in _CONTROL.finditer(text):
        out.append(_styled(text[at : control.start()]))
        out.append(_control(control.group(1)))
        at = control.end()
    out.append(_styled(text[at:]))
    return "".join(out).replace("\n", "<br>")


def _styled(text: str) -> str:
    escaped = _plain(text)
    pieces = _CODE.split(escaped)  # odd indexes are code spans, left unstyled
    for i, piece in enumerate(pieces):
        if i % 2:
            pieces[i] = f"<code>{piece}</code>"
            continue
        for pattern, tag in _STYLES:
            piece = pattern.sub(rf"<{tag}>\1</{tag}>", piece)
        pieces[i] = _emoji(piece)
    return "".join(pieces)


def _control(inner: str) -> str:
    """``<...>``: a link, a mention or a special mention (``!here``)."""
    target, _, label = inner.partition("|")
    target_text = html.unescape(target)
    if target_text.startswith(("https://", "http://", "mailto:")):
        shown = _plain(label) if label else html.escape(target_text)
        return (
            f'<a href="{html.escape(target_text)}" rel="noopener noreferrer" target="_blank">'
            f"{shown}</a>"
        )
    if target.startswith("!"):
        name = label or target[1:].split("^", 1)[0]
        return f'<span class="slack-mention">@{_plain(name)}</span>'
    if target.startswith(("@", "#")):
        shown = label or target[1:]
        return f'<span class="slack-mention">{target[0]}{_plain(shown)}</span>'
    return _plain(label or target)


def _plain(text: str) -> str:
    """mrkdwn text (with Slack's ``&amp; &lt; &gt;``) as escaped HTML."""
    return html.escape(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def _emoji(escaped: str) -> str:
    return _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), escaped)
