"""Render stage: turn an event into the words a notification says.

Templates use FlyteAdmin's syntax. A placeholder is ``{{ key }}`` (exactly one
space on each side) or ``{{key}}`` (no spaces); anything else, such as
``{{project }}`` or ``{{ unknown_key }}``, stays in the text literally, as
FlyteAdmin leaves it. Unlike FlyteAdmin, substitution is a single pass: a value
that itself contains ``{{ name }}`` (an error message, say) is inserted as is
and never expanded again.

The subject comes from ``templates.subject`` (else :data:`DEFAULT_SUBJECT`).
The body comes from the notification's own ``template`` when it is non-empty,
else ``templates.body``, else :data:`DEFAULT_BODY`. Each message is rendered
for every medium at once (:class:`~flytenotify.domain.RenderedMessage`):

- ``subject``: one line. Every run of CR, LF and other control characters
  becomes a single space, so nothing from an error message can add an email
  header; capped at 250 characters.
- ``text``: the body with values inserted as they are.
- ``html``: the body with the template's text and every value HTML-escaped and
  line breaks turned into ``<br>``; ``{{ console_link }}`` becomes a link
  (``<a href=...>``) one can click. A template that holds markup is kept as
  HTML (FlyteAdmin mails bodies as HTML), values still escaped, and the result
  goes through :func:`~flytenotify.engine.sanitize.sanitize_html`: no script,
  event handler or URL other than http(s) and mailto leaves.
- ``slack_text``: the body as Slack mrkdwn; values have ``&``, ``<`` and ``>``
  escaped so ``<!channel>`` or ``<@U123>`` in an error message pings nobody.
  The template's own text is left as written (a team may mean its ``<!here>``).

Template variables. FlyteAdmin's, with FlyteAdmin's exact values:

``project``, ``domain``, ``name``
    The execution's project, domain and name.
``phase``
    The phase, lower case: ``succeeded``, ``failed``, ``aborted``, ``timed_out``.
``error``
    `` The execution failed with error: [MESSAGE].`` (note the leading space)
    when the event carries an error, else empty.
``workflow.project``, ``workflow.domain``, ``workflow.name``, ``workflow.version``
    The workflow the execution ran; empty when unknown.
``launch_plan.project``, ``launch_plan.domain``, ``launch_plan.name``, ``launch_plan.version``
    The launch plan that started the execution; empty when unknown.

flytenotify's own:

``execution``
    The execution id as ``project/domain/name``.
``phase_upper``
    The phase as Flyte spells it: ``SUCCEEDED``, ``FAILED``, ``ABORTED``, ``TIMED_OUT``.
``phase_text``
    The phase in words: ``succeeded``, ``failed``, ``aborted``, ``timed out``.
``launch_plan``
    The launch plan as ``project/domain/name@version``, or ``unknown``.
``workflow``
    The workflow as ``project/domain/name@version``, or ``unknown``.
``occurred_at``
    When the phase was reached, ISO 8601 in UTC (``2024-05-01T12:03:12Z``).
``duration``
    How long the execution ran, e.g. ``3m 12s``; empty when its start is unknown.
``error.message``, ``error.code``, ``error.kind``, ``error.uri``
    The error's message, code, kind (``USER``, ``SYSTEM`` or ``UNKNOWN``) and
    the URI of its full text; all empty without an error.
``console_url``
    The execution's page in the Flyte console; empty unless
    ``templates.console_url`` is configured.
``console_link``
    A new line and ``Details: URL``, or empty without a console URL, so a
    template can end with ``{{ console_link }}`` and show no dangling label.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from flytenotify.config import TemplateConfig
from flytenotify.core.notification import Notification
from flytenotify.domain import EntityId, Execution, ExecutionError, ExecutionEvent, RenderedMessage
from flytenotify.engine.sanitize import sanitize_html

__all__ = [
    "DEFAULT_BODY",
    "DEFAULT_SUBJECT",
    "MAX_SUBJECT_LENGTH",
    "render",
    "render_message",
    "single_line",
    "substitute",
    "template_variables",
]

DEFAULT_SUBJECT = "Flyte execution {{ project }}/{{ domain }}/{{ name }} {{ phase_text }}"

DEFAULT_BODY = (
    "Flyte execution {{ project }}/{{ domain }}/{{ name }} {{ phase_text }}.{{ error }}\n"
    "\n"
    "Launch plan: {{ launch_plan }}\n"
    "Phase: {{ phase_upper }}\n"
    "At: {{ occurred_at }}"
    "{{ console_link }}\n"
)

MAX_SUBJECT_LENGTH = 250

# FlyteAdmin's error sentence (email.go: executionError).
_ERROR_SENTENCE = " The execution failed with error: [{}]."

_UNKNOWN = "unknown"

# C0 and C1 controls (CR, LF, TAB, NEL...) and the Unicode line/paragraph
# separators: anything a mail library or client might treat as a line break.
_CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_RUN = re.compile(f" *[{_CONTROL}][{_CONTROL} ]*")

_Escape = Callable[[str], str]


def _identity(text: str) -> str:
    return text


@functools.lru_cache(maxsize=64)
def _placeholder_pattern(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    """Match ``{{ key }}`` or ``{{key}}`` for exactly the given keys.

    Built from the keys rather than a generic ``\\w+`` so that any key the
    caller supplies substitutes exactly as FlyteAdmin's string replace would.
    Cached: every render uses the same variable names, and compiling the
    pattern was a tenth of the intake's CPU.
    """
    if not keys:
        return None
    # Longest first: should two keys both match at one spot (possible only for
    # keys that contain braces), the longer wins, whatever the dict's order.
    names = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    return re.compile(f"\\{{\\{{(?: ({names}) |({names}))\\}}\\}}")


def _expand(
    template: str,
    values: Mapping[str, str],
    literal: _Escape,
    value: _Escape,
    ready: Mapping[str, str] | None = None,
) -> str:
    """One left-to-right pass; template text goes through ``literal``, values through ``value``.

    A value is emitted once and never scanned again, so placeholders inside
    values (an error message quoting ``{{ name }}``) stay as they are.
    ``ready`` holds values already in the medium's form, emitted as they are.
    """
    texts, keys = _cut(template, tuple(values), literal)
    parts = [texts[0]]
    for key, text in zip(keys, texts[1:], strict=True):
        parts.append(ready[key] if ready and key in ready else value(values[key]))
        parts.append(text)
    return "".join(parts)


@functools.lru_cache(maxsize=1024)
def _cut(
    template: str, keys: tuple[str, ...], literal: _Escape
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The template's text between placeholders (through ``literal``) and the keys between.

    ``texts`` has one more item than ``keys``. Cached: the same few templates
    are rendered for every event, and scanning them was most of the intake's
    rendering time.
    """
    pattern = _placeholder_pattern(keys)
    if pattern is None:
        return (literal(template),), ()
    texts: list[str] = []
    found: list[str] = []
    position = 0
    for match in pattern.finditer(template):
        texts.append(literal(template[position : match.start()]))
        found.append(match.group(1) if match.group(1) is not None else match.group(2))
        position = match.end()
    texts.append(literal(template[position:]))
    return tuple(texts), tuple(found)


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{{ key }}`` and ``{{key}}`` by ``values[key]`` in a single pass.

    Placeholders for keys not in ``values``, and other spacings, stay literal.

    >>> substitute("{{ name }} is {{phase}}, {{ other }}", {"name": "e1", "phase": "{{ name }}"})
    'e1 is {{ name }}, {{ other }}'
    """
    return _expand(template, values, _identity, _identity)


# --------------------------------------------------------------------------
# Variables
# --------------------------------------------------------------------------


def template_variables(
    event: ExecutionEvent, execution: Execution | None, console_url: str | None
) -> dict[str, str]:
    """Every template variable for ``event`` (see the module docstring).

    ``execution`` supplies the workflow, the launch plan and the start time
    when it is known; ``console_url`` is the console's base URL, if any.
    """
    eid = event.execution_id
    # The event may name the launch plan of an execution we never saw.
    launch_plan = (execution.launch_plan if execution else None) or event.launch_plan
    workflow = execution.workflow if execution else None
    url = _console_url(console_url, eid.project, eid.domain, eid.name)
    variables = {
        "project": eid.project,
        "domain": eid.domain,
        "name": eid.name,
        "execution": str(eid),
        "phase": event.phase_name.lower(),
        "phase_upper": event.phase_name,
        "phase_text": event.phase_name.lower().replace("_", " "),
        "occurred_at": _iso_utc(event.occurred_at),
        "duration": _duration(execution.created_at, event.occurred_at) if execution else "",
        "console_url": url,
        "console_link": f"\nDetails: {url}" if url else "",
    }
    variables.update(_error_variables(event.error))
    variables.update(_entity_variables("workflow", workflow))
    variables.update(_entity_variables("launch_plan", launch_plan))
    return variables


def _error_variables(error: ExecutionError | None) -> dict[str, str]:
    if error is None:
        return {
            "error": "",
            "error.message": "",
            "error.code": "",
            "error.kind": "",
            "error.uri": "",
        }
    return {
        # FlyteAdmin writes the sentence whenever an error is present, even
        # with an empty message; so do we.
        "error": _ERROR_SENTENCE.format(error.message),
        "error.message": error.message,
        "error.code": error.code,
        "error.kind": str(error.kind),
        "error.uri": error.error_uri,
    }


def _entity_variables(prefix: str, entity: EntityId | None) -> dict[str, str]:
    return {
        prefix: str(entity) if entity else _UNKNOWN,
        f"{prefix}.project": entity.project if entity else "",
        f"{prefix}.domain": entity.domain if entity else "",
        f"{prefix}.name": entity.name if entity else "",
        f"{prefix}.version": entity.version if entity else "",
    }


def _console_url(base: str | None, project: str, domain: str, name: str) -> str:
    if not base or not base.strip():
        return ""
    # Quoted so that an odd name cannot change the path or add a query.
    p, d, n = (quote(part, safe="") for part in (project, domain, name))
    return f"{base.strip().rstrip('/')}/projects/{p}/domains/{d}/executions/{n}"


def _as_utc(moment: datetime) -> datetime:
    # Naive datetimes in this service are UTC by convention.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso_utc(moment: datetime) -> str:
    return _as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def _duration(start: datetime, end: datetime) -> str:
    """``3m 12s``, ``1h 5m``, ``2d 3h``: the two largest units; empty if not positive."""
    elapsed = _as_utc(end) - _as_utc(start)
    if elapsed.total_seconds() <= 0:
        return ""
    seconds = int(elapsed.total_seconds())
    amounts = [
        (seconds // 86400, "d"),
        (seconds % 86400 // 3600, "h"),
        (seconds % 3600 // 60, "m"),
        (seconds % 60, "s"),
    ]
    first = next((i for i, (amount, _) in enumerate(amounts) if amount), len(amounts) - 1)
    shown = [f"{amount}{unit}" for amount, unit in amounts[first : first + 2] if amount]
    return " ".join(shown) or "0s"


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


# Every form a message can take beyond its subject, text and variables.
ALL_MEDIA = frozenset({"html", "slack_text"})


def render(
    notification: Notification,
    event: ExecutionEvent,
    execution: Execution | None,
    templates: TemplateConfig,
    media: Collection[str] = ALL_MEDIA,
) -> RenderedMessage:
    """Render one notification's subject and body, and of ``media`` the forms
    asked for (the others are left empty: no channel of it sends them)."""
    variables = template_variables(event, execution, templates.console_url)
    body = _body_template(notification, templates)
    return render_message(templates.subject or DEFAULT_SUBJECT, body, variables, media)


def render_message(
    subject: str, body: str, variables: dict[str, str], media: Collection[str] = ALL_MEDIA
) -> RenderedMessage:
    """``subject`` and ``body`` (FlyteAdmin's ``{{ key }}`` templates) rendered with
    ``variables``, in ``media``'s forms beyond the subject and text."""
    return RenderedMessage(
        subject=single_line(substitute(subject, variables)),
        text=substitute(body, variables),
        html=_to_html(body, variables) if "html" in media else "",
        slack_text=_expand(body, variables, _identity, _slack_escape)
        if "slack_text" in media
        else "",
        variables=variables,
    )


def _body_template(notification: Notification, templates: TemplateConfig) -> str:
    # FlyteAdmin's order: the notification's own template, then the configured body.
    settings = notification.channel_settings
    own = settings.template if settings is not None else None
    return own or templates.body or DEFAULT_BODY


def single_line(subject: str) -> str:
    """Collapse control characters to one space, trim, and cap the length."""
    line = _CONTROL_RUN.sub(" ", subject).strip()
    if len(line) > MAX_SUBJECT_LENGTH:
        line = line[: MAX_SUBJECT_LENGTH - 1].rstrip() + "\u2026"
    return line


def _html_escape(text: str) -> str:
    escaped = html.escape(text, quote=True)
    lines = escaped.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<br>\n".join(lines)


def _to_html(body: str, variables: Mapping[str, str]) -> str:
    # FlyteAdmin sends bodies as text/html, so a template written for it may
    # hold markup (its own tests use <a href=...>): such a template is kept as
    # HTML, but only what sanitize_html lets through leaves (whoever registers a
    # launch plan writes it, and it goes out from the company's sender). A
    # plain-text template is escaped and its line breaks kept. Values are
    # escaped either way: they come from the execution, not the author.
    ready = {"console_link": _html_console_link(variables.get("console_url", ""))}
    if not _LOOKS_LIKE_HTML.search(body):
        return f"<div>{_expand(body, variables, _html_escape, _html_escape, ready)}</div>"
    return f"<div>{sanitize_html(_expand(body, variables, _identity, _html_escape, ready))}</div>"


def _html_console_link(url: str) -> str:
    """``{{ console_link }}`` in HTML: a line break and a link one can click."""
    if not url:
        return ""
    href = html.escape(url, quote=True)
    return f'<br>\nDetails: <a href="{href}">{href}</a>'


_LOOKS_LIKE_HTML = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*\b[^>]*|/[a-zA-Z][a-zA-Z0-9]*\s*)>")


def _slack_escape(text: str) -> str:
    # Slack's three control characters (https://api.slack.com/reference/surfaces/formatting).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
