"""Where a URL written in users' code may be sent, and how it is shown.

A Flyte 2 workflow names its own webhook URL, so the URL is untrusted: it is
sent only when it matches an ``[allow] inline_webhook_urls`` pattern, and
only to an address on the public internet unless that pattern names its host.
Matching is structural: the URL is parsed once (by yarl, the parser aiohttp
sends with) and its scheme, host, port and path are each compared with the
pattern's, so no text placed in one part can satisfy another
(``https://hooks.slack.com.evil.com/``, ``https://hooks.slack.com@evil.com/``,
``https://evil.com#.webhook.office.com/`` match nothing meant for Slack or
Teams). Anything a parser could read two ways (spaces, control characters,
backslashes, ``user@``, a ``#fragment``, numeric host forms such as
``127.1``, a trailing dot, encoded ``/`` or ``.`` in the path) is refused
rather than interpreted.

The URL is also a credential (a Slack or Teams webhook URL is all it takes to
post), so everything people see says it through :func:`display_url`, and a
receiver's answer quoting it goes through :func:`redact`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qsl

from yarl import URL

__all__ = [
    "ELIDED",
    "MAX_URL_LENGTH",
    "HostPattern",
    "IPAddress",
    "Target",
    "UrlPattern",
    "UrlRefused",
    "display_url",
    "forbidden_address",
    "parse_target",
    "printable",
    "redact",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Flyte's WebhookDeliveryTemplate allows URLs up to this length.
MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlRefused(ValueError):
    """Why a URL is not sent; the message never repeats the URL's secret parts."""


# --------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _unsafe_character(text: str) -> str | None:
    """The first character two parsers could read differently (space, control, backslash)."""
    for char in text:
        if char.isspace() or char == "\\" or unicodedata.category(char) in ("Cc", "Cf"):
            return char
    return None


def normal_host(host: str) -> str:
    """``host`` as compared and connected to: an IP address in its canonical form, or
    a lower-case ASCII DNS name. Raises :class:`UrlRefused` for anything else."""
    if ":" in host:  # an IPv6 literal (its brackets already removed)
        if "%" in host:
            raise UrlRefused("an IPv6 zone (%...) is not allowed in a host")
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise UrlRefused(f"host [{host}] is not an IPv6 address") from None
    if host.endswith("."):
        raise UrlRefused(f"host {host!r} ends in a dot: write it without")
    labels = host.split(".")
    # Top-level domains start with a letter: a host ending in a digit is an IPv4
    # address, and only its dotted-quad form (not 127.1, 2130706433, 0x7f.1).
    if labels[-1][:1].isdigit():
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise UrlRefused(
                f"host {host!r} is neither a DNS name nor an IPv4 address in dotted-quad form"
            ) from None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UrlRefused(f"host {host!r} is not a DNS name")
    return host


def _ascii_host(text: str) -> str:
    """``text`` lower-cased, an international name in its IDNA (punycode) form, as yarl does."""
    try:
        return URL.build(scheme="http", host=text.lower()).raw_host or ""
    except (ValueError, UnicodeError):
        raise UrlRefused(f"host {text!r} is not a DNS name or an IP address") from None


# What ``*`` stands for in a host: one or more characters of a host name. The
# host it is compared with was checked by normal_host, so it never reaches
# past the host into a port, userinfo, path, query or fragment.
_HOST_WILDCARD = "[a-z0-9.-]+"


@dataclass(frozen=True)
class HostPattern:
    """A host, or hosts with ``*`` wildcards (``*.webhook.office.com``); ``*`` alone is any host.

    A wildcard host must end in a fixed domain of at least two labels, so
    ``*.com`` or ``example.*`` cannot allow the world by accident.
    """

    text: str  # normalised: lower-case, IDNA, IP addresses canonical
    wildcard: re.Pattern[str] | None  # None: this exact host

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        host = text.strip().lower()
        if not host:
            raise UrlRefused("the host is empty")
        bad = _unsafe_character(host)
        if bad is not None:
            raise UrlRefused(f"the host holds {bad!r}")
        if host == "*":
            return cls("*", re.compile(".+"))
        if "*" not in host:
            if host.startswith("[") and host.endswith("]"):
                return cls(normal_host(host[1:-1]), None)
            return cls(normal_host(_ascii_host(host)), None)
        return cls(host, _wildcard(host))

    @property
    def explicit(self) -> bool:
        """Whether it names one host, without a wildcard."""
        return self.wildcard is None

    def matches(self, host: str) -> bool:
        """Whether ``host`` (normalised, see :func:`normal_host`) is one of these."""
        if self.wildcard is None:
            return host == self.text
        return self.wildcard.fullmatch(host) is not None


def _wildcard(host: str) -> re.Pattern[str]:
    fixed = host[host.rindex("*") + 1 :]
    if not fixed.startswith(".") or fixed.count(".") < 2:
        raise UrlRefused(
            f"host {host!r}: a wildcard must be followed by a fixed domain of two labels"
            " or more (*.example.com), or stand alone (*, any host)"
        )
    labels = host.split(".")
    if labels[-1][:1].isdigit():
        raise UrlRefused(f"host {host!r}: a wildcard cannot stand for part of an IP address")
    parts = []
    for label in labels:
        pieces = [_ascii_host(piece) if piece else "" for piece in label.split("*")]
        if not label or not all(re.fullmatch(r"[a-z0-9-]*", piece) for piece in pieces):
            raise UrlRefused(f"host {host!r}: {label!r} is not a DNS label")
        parts.append(_HOST_WILDCARD.join(re.escape(piece) for piece in pieces))
    return re.compile(r"\.".join(parts))


# --------------------------------------------------------------------------
# The URL to send to
# --------------------------------------------------------------------------

_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)
# Encoded '/', '\', '.' or NUL in a path: a server that decodes them could
# route the request somewhere the pattern did not allow.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """A URL from users' code, parsed once: what is matched is what is requested."""

    url: URL  # handed to aiohttp as it is, never parsed again
    scheme: str
    host: str  # see normal_host
    port: int
    path_qs: str  # the path and query as sent (percent-encoded)

    @property
    def address(self) -> IPAddress | None:
        """The host when it is an IP address (no name to resolve)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_target(raw: str) -> Target:
    """``raw`` as the request it would be, or :class:`UrlRefused` saying why it cannot be."""
    if len(raw) > MAX_URL_LENGTH:
        raise UrlRefused(f"the URL is {len(raw)} characters long, over {MAX_URL_LENGTH}")
    bad = _unsafe_character(raw)
    if bad is not None:
        raise UrlRefused(f"the URL holds {bad!r} (a space, control character or backslash)")
    found = _ABSOLUTE.fullmatch(raw)
    if found is None:
        raise UrlRefused("the URL is not absolute (scheme://host/path)")
    scheme, authority = found.group(1).lower(), found.group(2)
    if scheme not in DEFAULT_PORTS:
        raise UrlRefused(f"the URL's scheme is {scheme!r}: only http and https are sent")
    if "@" in authority:
        raise UrlRefused("the URL carries user:password@ (send credentials in a header)")
    if "#" in raw:
        raise UrlRefused("the URL has a #fragment, which is never sent: remove it")
    try:
        url = URL(raw)
    except (ValueError, UnicodeError) as error:
        raise UrlRefused(f"the URL cannot be parsed: {error}") from None
    if url.user is not None or url.password is not None or not url.raw_host:
        raise UrlRefused("the URL has no host, or carries user:password@")
    port = url.port
    if not port:
        raise UrlRefused("the URL's port is 0")
    if _ENCODED_SEPARATOR.search(url.raw_path):
        raise UrlRefused("the URL's path encodes '/', '\\', '.' or NUL (%2F, %5C, %2E, %00)")
    return Target(url, scheme, normal_host(url.raw_host), port, url.raw_path_qs)


# --------------------------------------------------------------------------
# [allow] inline_webhook_urls
# --------------------------------------------------------------------------

_PATTERN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[^\]/]*\]|[^/?#:@\[\]]*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[^#]*)?"
)


@dataclass(frozen=True)
class UrlPattern:
    """``scheme://host[:port]/path``, ``*`` a wildcard in the host and the path.

    The scheme is compared exactly, the port equals the pattern's (80 or 443
    when it gives none), and the path glob covers the path and query as sent
    (``*`` there stands for anything, ``/`` and ``?`` included).
    """

    text: str
    scheme: str
    host: HostPattern
    port: int
    path: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> UrlPattern:
        """The pattern ``text``; ValueError saying what is wrong with it."""
        bad = _unsafe_character(text)
        if bad is not None:
            raise UrlRefused(f"holds {bad!r} (a space, control character or backslash)")
        if "#" in text:
            raise UrlRefused("has a #fragment: fragments are never sent")
        found = _PATTERN.fullmatch(text)
        authority = text.partition("://")[2].split("/", 1)[0]
        if "@" in authority:
            raise UrlRefused("has user:password@: URLs carrying credentials are never sent")
        if found is None:
            raise UrlRefused("is not scheme://host[:port]/path (e.g. https://hooks.slack.com/*)")
        scheme = found.group("scheme").lower()
        if scheme not in DEFAULT_PORTS:
            raise UrlRefused(f"scheme {scheme!r}: only http and https are sent")
        path = found.group("path")
        if path is None:
            raise UrlRefused("has no path: end it in /* to allow every path of the host")
        if not path.isascii():
            raise UrlRefused("the path must be ASCII (percent-encode other characters)")
        port = int(found.group("port") or DEFAULT_PORTS[scheme])
        if not 0 < port < 65536:
            raise UrlRefused(f"port {port} is out of range")
        glob = ".*".join(re.escape(piece) for piece in path.split("*"))
        return cls(text, scheme, HostPattern.parse(found.group("host")), port, re.compile(glob))

    def matches(self, target: Target) -> bool:
        return (
            target.scheme == self.scheme
            and target.port == self.port
            and self.host.matches(target.host)
            and self.path.fullmatch(target.path_qs) is not None
        )

    def names(self, target: Target) -> bool:
        """Whether it names ``target``'s host explicitly (no wildcard): then that host
        may be a private address (a receiver inside the network, on purpose)."""
        return self.host.explicit and self.host.matches(target.host)


# --------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: an IPv4 address inside
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    compatible = int(address) >> 32 == 0 and int(address) > 1  # ::a.b.c.d, not :: or ::1
    if address in _NAT64 or compatible:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_address(address: IPAddress) -> str | None:
    """Why a request must not connect to ``address`` (it is not on the public
    internet: loopback, private, link-local with the cloud metadata service, ...),
    or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = forbidden_address(inner)
            return f"{reason}, inside an IPv6 address" if reason else None
        if address.is_site_local:
            return "an IPv6 site-local address"
    checks = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (where cloud metadata services answer)"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _SHARED, "a CGNAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


# --------------------------------------------------------------------------
# Showing a URL without its secret
# --------------------------------------------------------------------------

_SHOWN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?")
_FIRST_SEGMENT_SHOWN = 20  # characters: longer, and it may be a token itself
ELIDED = "…"


def printable(text: str) -> str:
    """``text`` with every character that is not printable (CR, LF, NUL...) shown as ``?``."""
    return "".join(char if char.isprintable() else "?" for char in text)


def display_url(raw: str) -> str:
    """``raw`` with its secret parts elided, for the ledger, logs and every view.

    Scheme, host and port are shown; of the path the first segment (``services``,
    ``webhookb2``, ``workflows``), the first character of each further one and
    none of the last (Slack's ``/services/T…/B…/…``); of the query only the names
    (``?api-version=…&sig=…``); user:password@ as ``…@``.
    """
    found = _SHOWN.match(raw.strip())
    if found is None:
        return "(not an absolute URL)"
    scheme, authority, path, query = found.groups()
    host = authority.rpartition("@")[2].lower()
    shown = f"{scheme.lower()}://{ELIDED + '@' if '@' in authority else ''}{host}"
    shown += _display_path(path)
    if query:
        names = [name[:_FIRST_SEGMENT_SHOWN] for name, _ in parse_qsl(query, True)]
        shown += "?" + "&".join(f"{name}={ELIDED}" for name in names)
    return printable(shown)[:300]


def _display_path(path: str) -> str:
    segments = path.split("/")[1:]
    if not segments or segments == [""]:
        return "/" if path else ""
    *leading, last = segments
    shown = []
    for i, segment in enumerate(leading):
        keep = len(segment) <= _FIRST_SEGMENT_SHOWN if i == 0 else False
        shown.append(segment if keep or not segment else segment[:1] + ELIDED)
    shown.append(ELIDED if last else "")
    return "/" + "/".join(shown)


def redact(text: str, raw: str) -> str:
    """``text`` (a receiver's answer, an error) with ``raw``'s secret parts elided."""
    text = text.replace(raw, display_url(raw))
    try:
        url = URL(raw)
    except (ValueError, UnicodeError):
        return text
    text = text.replace(str(url), display_url(raw))
    secrets = {url.raw_path_qs, url.path_qs, url.raw_query_string, url.query_string}
    secrets.update(url.raw_path.split("/")[2:])  # every segment but the first
    secrets.update(value for _name, value in url.query.items())
    secrets.update(part for part in (url.user, url.password) if part)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, ELIDED)
    return text
