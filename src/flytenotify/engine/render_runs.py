"""Render stage for Flyte 2 runs: the users' own Go templates, and flytenotify's for named rules.

Inline rules carry templates written in users' code with the Go template
syntax the flyte SDK documents. Their data:

``{{.Run.Project}}``, ``{{.Run.Domain}}``, ``{{.Run.Name}}``
    The run's project, domain and name.
``{{.Run.URL}}``
    The run's page in the Flyte console (from ``templates.console_url``'s
    origin, else the ``[flyte2]`` endpoint, as the SDK builds its links).
``{{.Phase}}``
    The phase in lower case, as the SDK spells it: ``succeeded``, ``failed``,
    ``aborted``, ``timed_out``, ``paused``.
``{{.Error}}``
    The error message (the abort reason for an aborted run); empty without one.
``{{.Action.Name}}``, ``{{.Prompt}}``, ``{{.Description}}``, ``{{.PromptType}}``
    For a paused action: which one, and what it asks; empty otherwise.

Values are escaped for where they land: HTML-escaped in an email's HTML part
(which is then sanitised: the template is users' markup), inside JSON strings
for JSON bodies, percent-encoded in URLs, on one line in a subject or header.
A template that cannot be rendered (an unknown variable, an unsupported
construct) gives a message carrying the reason in ``problem``: the delivery
is recorded and dead-lettered with it, never sent blank.

Named rules and named deliveries have no template of their own: they say what
Flyte 1 notifications say, in flytenotify's templates (``templates.subject``
and ``templates.body`` when configured), with the run's console link.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from flytenotify.channels._url_policy import display_url
from flytenotify.config import Settings
from flytenotify.domain import (
    Execution,
    ExecutionEvent,
    HttpRequest,
    InlineEmail,
    InlineWebhook,
    RenderedMessage,
)
from flytenotify.engine import gotemplate
from flytenotify.engine.render import render_message, single_line, template_variables
from flytenotify.engine.sanitize import sanitize_html

__all__ = ["paused_variables", "render_email", "render_named", "render_webhook", "run_url"]

RUN_SUBJECT = "Flyte run {{ project }}/{{ domain }}/{{ name }} {{ phase_text }}"
RUN_BODY = (
    "Flyte run {{ project }}/{{ domain }}/{{ name }} {{ phase_text }}.{{ error }}\n"
    "\n"
    "Phase: {{ phase_upper }}\n"
    "At: {{ occurred_at }}"
    "{{ console_link }}\n"
)
PAUSED_SUBJECT = "Flyte run {{ project }}/{{ domain }}/{{ name }} is waiting for input"
PAUSED_BODY = (
    "Flyte run {{ project }}/{{ domain }}/{{ name }} is waiting for input at {{ gate }}.\n"
    "\n"
    "{{ prompt }}\n"
    "{{ description }}\n"
    "\n"
    "Expects: {{ expects_text }}\n"
    "At: {{ occurred_at }}"
    "{{ console_link }}\n"
)


def run_url(settings: Settings, project: str, domain: str, name: str) -> str:
    """The run's page in the Flyte 2 console, or empty when nothing says where it is.

    ``templates.console_url``'s origin when set, else the ``[flyte2]``
    endpoint's host (https unless ``insecure``), as the flyte SDK links runs.
    """
    origin = _console_origin(settings)
    if not origin:
        return ""
    p, d, n = (quote(part, safe="") for part in (project, domain, name))
    return f"{origin}/v2/domain/{d}/project/{p}/runs/{n}"


def _console_origin(settings: Settings) -> str:
    base = (settings.templates.console_url or "").strip()
    if base:
        parts = urlsplit(base)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    if settings.flyte2 is not None:
        return settings.flyte2.base_url
    return ""


def run_variables(
    event: ExecutionEvent, execution: Execution, settings: Settings
) -> dict[str, str]:
    """flytenotify's template variables for a run: Flyte 1's, its console link,
    and what a paused action asks (``action``, ``prompt``, ``description``)."""
    variables = template_variables(event, execution, None)
    eid = event.execution_id
    url = run_url(settings, eid.project, eid.domain, eid.name)
    variables.update(
        {
            "console_url": url,
            "console_link": f"\nDetails: {url}" if url else "",
            **paused_variables(event),
        }
    )
    return variables


def paused_variables(event: ExecutionEvent) -> dict[str, str]:
    """What a message about something waiting for a person says of it, and what an answer
    to it names (``action``: the gate to answer; ``expects``: the kind of value)."""
    paused = event.paused
    if paused is None:
        return {key: "" for key in _PAUSED_KEYS}
    gate = paused.name
    if paused.condition and paused.condition != paused.name:
        gate = f"{paused.condition} (action {paused.name})"
    return {
        "action": paused.name,
        "gate": gate,
        "condition": paused.condition,
        "prompt": paused.prompt,
        "description": paused.description,
        "expects": paused.expects,
        "expects_text": _EXPECTS_TEXT.get(paused.expects, "a value of a type no message can give"),
    }


_PAUSED_KEYS = ("action", "gate", "condition", "prompt", "description", "expects", "expects_text")
_EXPECTS_TEXT = {
    "bool": "approve or reject (bool)",
    "int": "an integer (int)",
    "float": "a number (float)",
    "str": "text (str)",
}


def render_named(
    event: ExecutionEvent, execution: Execution, settings: Settings, media: Collection[str]
) -> RenderedMessage:
    """What a named rule or named delivery says, in each of ``media``'s forms."""
    variables = run_variables(event, execution, settings)
    if event.paused is not None:
        return render_message(PAUSED_SUBJECT, PAUSED_BODY, variables, media)
    templates = settings.templates
    return render_message(
        templates.subject or RUN_SUBJECT, templates.body or RUN_BODY, variables, media
    )


def go_data(event: ExecutionEvent, settings: Settings) -> dict[str, Any]:
    """The data users' Go templates see (see the module docstring)."""
    eid = event.execution_id
    paused = event.paused
    return {
        "Run": {
            "Project": eid.project,
            "Domain": eid.domain,
            "Name": eid.name,
            "URL": run_url(settings, eid.project, eid.domain, eid.name),
        },
        "Phase": event.phase_name.lower(),
        "Error": event.error.message if event.error is not None else "",
        "Action": {"Name": paused.name if paused else ""},
        "Prompt": paused.prompt if paused else "",
        "Description": paused.description if paused else "",
        "PromptType": paused.prompt_type if paused else "",
    }


# A value inside a URL template is percent-encoded whole: a run name or an error
# cannot add a path segment, a query or a host.
URL = gotemplate.Context("URL", lambda value: quote(value, safe="-._~"))


def render_email(
    email: InlineEmail, event: ExecutionEvent, execution: Execution, settings: Settings
) -> RenderedMessage:
    """One inline email rule: its subject, text and (sanitised) HTML, and its envelope."""
    data = go_data(event, settings)
    variables = run_variables(event, execution, settings)
    try:
        subject = single_line(_render(email.subject, data, gotemplate.PLAIN_TEXT, "the subject"))
        text = _render(email.text, data, gotemplate.PLAIN_TEXT, "the body")
        html = (
            sanitize_html(_render(email.html, data, gotemplate.HTML, "the HTML body"))
            if email.html
            else ""
        )
    except gotemplate.TemplateError as error:
        return _unrenderable(variables, f"the email's template {error}", envelope=email)
    return RenderedMessage(
        subject=subject,
        text=text,
        html=html,
        slack_text="",
        variables=variables,
        envelope=email.envelope,
    )


def render_webhook(
    hook: InlineWebhook, event: ExecutionEvent, execution: Execution, settings: Settings
) -> RenderedMessage:
    """One inline webhook rule: its URL, headers and body rendered as a request."""
    data = go_data(event, settings)
    variables = run_variables(event, execution, settings)
    try:
        url = _render(hook.url, data, URL, "the URL")
        headers = tuple(
            (name, single_line(_render(value, data, gotemplate.PLAIN_TEXT, f"header {name}")))
            for name, value in hook.headers
        )
        body = _body(hook, data, headers)
    except gotemplate.TemplateError as error:
        return _unrenderable(variables, f"the webhook's template {error}")
    return RenderedMessage(
        subject=single_line(f"{hook.method} {display_url(url)}"),
        text=body,
        html="",
        slack_text="",
        variables=variables,
        request=HttpRequest(method=hook.method, url=url, headers=headers, body=body),
    )


def _render(template: str, data: Mapping[str, Any], context: gotemplate.Context, where: str) -> str:
    try:
        return gotemplate.render(template, data, context)
    except gotemplate.TemplateError as error:
        raise error.at(where) from None


def _body(
    hook: InlineWebhook, data: Mapping[str, Any], headers: tuple[tuple[str, str], ...]
) -> str:
    if not hook.body:
        return ""
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    if "json" in content_type.lower() or not content_type:
        # The SDK writes bodies with json.dumps: values land inside JSON strings.
        try:
            return gotemplate.render_json_body(hook.body, data)
        except gotemplate.TemplateError as error:
            raise error.at("the body") from None
    return _render(hook.body, data, gotemplate.PLAIN_TEXT, "the body")


def _unrenderable(
    variables: dict[str, str], problem: str, envelope: InlineEmail | None = None
) -> RenderedMessage:
    return RenderedMessage(
        subject=single_line(f"cannot render: {problem}"),
        text="",
        html="",
        slack_text="",
        variables=variables,
        envelope=envelope.envelope if envelope is not None else None,
        problem=f"cannot render {problem}",
    )
