"""What the Markdown chat channels (Teams, Mattermost) share.

Both render a message in a Markdown dialect from values that come from the
execution (an error message can hold anything), both post to URLs that are
credentials, and both must fit a provider's size limit by cutting the least
useful text first, visibly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator

from flytenotify.channels.slack import TRUNCATED, truncate
from flytenotify.sections import Section, read_secret_url, secret_http_url

__all__ = [
    "TRUNCATED",
    "SecretUrlTarget",
    "escape_markdown",
    "host_of",
    "scrub_url",
    "shrink_to_fit",
    "truncate",
]

T = TypeVar("T")


class SecretUrlTarget(Section):
    """A destination whose URL is its credential: ``url``, or ``url_file`` holding it."""

    url: SecretStr | None = None
    url_file: Path | None = None

    _secret_pairs = (("url", "url_file"),)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr | None) -> SecretStr | None:
        return None if url is None else secret_http_url(url)

    @model_validator(mode="after")
    def _url_given(self) -> Self:
        if self.url is None and self.url_file is None:
            raise ValueError("give url or url_file")
        return self

    def resolved_url(self, where: str) -> str:
        """The URL (read from ``url_file`` now); ``where`` names the target in errors."""
        return read_secret_url(self.url, self.url_file, where)


# Characters that start Markdown anywhere in a line: emphasis, code, strike-through,
# links and images, autolinks and HTML, tables. A backslash before any ASCII
# punctuation shows it as itself (CommonMark; Teams' and Mattermost's parsers).
_INLINE = re.compile(r"([\\`*_~\[\]<>|])")
# And at the start of a line: headings, quotes, list items, thematic breaks.
_LINE_START = re.compile(r"(?m)^(\s*)([#>+=-]|\d+[.)])")


def escape_markdown(text: str) -> str:
    """``text`` shown as written: "**x**" stays two asterisks, "[a](b)" is no link."""
    escaped = _INLINE.sub(r"\\\1", text)
    return _LINE_START.sub(_escape_line_start, escaped)


def _escape_line_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    if marker[-1] in ".)":  # "1." or "1)": escape the punctuation, not the digits
        return f"{indent}{marker[:-1]}\\{marker[-1]}"
    return f"{indent}\\{marker}"


def host_of(url: str) -> str:
    """The host of ``url``: what logs and summaries may say about a secret URL."""
    return urlsplit(url).hostname or "?"


def scrub_url(text: str, url: str) -> str:
    """``text`` with ``url`` (and its path, which is the secret part) replaced by its host."""
    parts = urlsplit(url)
    for secret in (url, parts.path):
        if len(secret) > 1:
            text = text.replace(secret, f"<{host_of(url)}>")
    return text


def shrink_to_fit(
    build: Callable[[Sequence[int]], T], lengths: Sequence[int], fits: Callable[[T], bool]
) -> T:
    """``build(lengths)``, or with the longest parts cut to a common cap, as high as fits.

    ``lengths`` are the full lengths of the parts that may be cut (an error,
    the message text); ``build`` gets the characters each may keep. Capping
    them together cuts the longest first (in practice the error, and the
    message text quoting it) and leaves short ones whole. A cap never goes
    below the truncation marker's length, so a cut is always visible; what
    cannot be made to fit is returned at its smallest.
    """
    result = build(lengths)
    if fits(result) or not lengths:
        return result
    low, high = min(len(TRUNCATED), max(lengths)), max(lengths) - 1
    while low < high:  # the highest cap that fits
        middle = (low + high + 1) // 2
        if fits(build([min(length, middle) for length in lengths])):
            low = middle
        else:
            high = middle - 1
    return build([min(length, low) for length in lengths])


def most_that_fit(total: int, fits: Callable[[int], bool]) -> int:
    """The largest ``n <= total`` with ``fits(n)`` (``fits`` holds for 0 and is monotone):
    how many executions a digest can list before a provider's size limit."""
    if fits(total):
        return total
    low, high = 0, total - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
