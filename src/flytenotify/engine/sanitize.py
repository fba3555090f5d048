"""HTML written by users, made fit to send from the company's address.

A notification's ``template`` (and Flyte 2's ``html_template``) is written by
whoever can register a launch plan, and goes out as the HTML part of an email
from the configured sender. :func:`sanitize_html` keeps what a message needs
and drops everything that could run, listen or lead elsewhere. It is Ammonia
(through nh3): a maintained sanitiser that parses as browsers do, so no
spelling of a tag or URL gets past it that a mail client would still honour.

What is kept:

- Ammonia's safe tags: text formatting, headings, paragraphs, lists, tables,
  links and images; any other tag is dropped and its text kept, except
  ``<script>`` and ``<style>``, which go with their content;
- Ammonia's attributes for each tag (``href`` on links, ``src`` and ``alt``
  on images, table layout...) plus ``title``, ``lang`` and ``dir``: no event
  handler (``onclick``, ``onerror``), no ``style`` (CSS can fetch URLs), no
  ``class`` or ``id``;
- URLs that are absolute ``http``, ``https`` or ``mailto``; any other URL
  (``javascript:``, ``data:``, a relative or scheme-relative one) is dropped
  with its attribute, the link's words stay;
- links as written: no ``rel`` is added, so a template's markup is unchanged
  when it was safe already.

Comments are dropped. The result is well-formed: unclosed tags are closed.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nh3

__all__ = ["sanitize_html"]

_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_ANY_TAG_MAY_HAVE = frozenset({"title", "lang", "dir"})


@functools.cache
def _cleaner() -> nh3.Cleaner:
    # Built on first use: nh3's library is about 1.5 MiB of a process's memory,
    # which a service whose templates hold no HTML never needs.
    import nh3

    return nh3.Cleaner(
        tags=set(nh3.ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={
            **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
            "*": set(_ANY_TAG_MAY_HAVE),
        },
        url_schemes=set(_URL_SCHEMES),
        url_relative="deny",
        link_rel=None,
        strip_comments=True,
    )


def sanitize_html(markup: str) -> str:
    """``markup`` with nothing that could run, listen or lead anywhere but http(s) and mailto."""
    return _cleaner().clean(markup)
