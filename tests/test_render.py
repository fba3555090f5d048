"""The render stage: FlyteAdmin-compatible substitution, variables, escaping."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flytenotify import Email, PagerDuty, Slack, WorkflowExecutionPhase
from flytenotify.config import TemplateConfig
from flytenotify.domain import (
    EntityId,
    ErrorKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionId,
)
from flytenotify.engine.render import (
    DEFAULT_BODY,
    DEFAULT_SUBJECT,
    MAX_SUBJECT_LENGTH,
    render,
    substitute,
    template_variables,
)

EXECUTION_ID = ExecutionId("proj", "prod", "e124")
LAUNCH_PLAN = EntityId("lp_proj", "lp_domain", "lp_name", "lp_version")
WORKFLOW = EntityId("wf_proj", "wf_domain", "wf_name", "wf_version")
CREATED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ENDED = CREATED + timedelta(minutes=3, seconds=12)

# FlyteAdmin's email_test.go, TestSubstituteEmailParameters.
FLYTEADMIN_TEMPLATE = (
    "{{ unused }}. {{project }} and {{ domain }} and {{ name }} ended up in {{ phase }}.{{ error }}"
)

# Everything an attacker-controlled error message could try at once.
NASTY = "<script>alert(1)</script> <!channel> <!here> <@U123> & {{ project }}\r\nBcc: x@evil"


def event(
    phase: int = WorkflowExecutionPhase.FAILED,
    error: ExecutionError | None = None,
    occurred_at: datetime = ENDED,
    launch_plan: EntityId | None = None,
) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=EXECUTION_ID,
        phase=phase,
        occurred_at=occurred_at,
        error=error,
        launch_plan=launch_plan,
    )


def execution(created_at: datetime = CREATED) -> Execution:
    return Execution(
        id=EXECUTION_ID,
        launch_plan=LAUNCH_PLAN,
        notifications=(),
        created_at=created_at,
        workflow=WORKFLOW,
    )


def email(template: str | None = None) -> Email:
    return Email(
        phases=[WorkflowExecutionPhase.FAILED],
        recipients_email=["ops@example.com"],
        template=template,
    )


# --------------------------------------------------------------------------
# FlyteAdmin compatibility
# --------------------------------------------------------------------------


def test_flyteadmin_substitution_without_error() -> None:
    values = template_variables(event(WorkflowExecutionPhase.SUCCEEDED), execution(), None)
    assert (
        substitute(FLYTEADMIN_TEMPLATE, values)
        == "{{ unused }}. {{project }} and prod and e124 ended up in succeeded."
    )


def test_flyteadmin_substitution_with_error() -> None:
    failed = event(WorkflowExecutionPhase.SUCCEEDED, error=ExecutionError("uh-oh"))
    values = template_variables(failed, execution(), None)
    assert substitute(FLYTEADMIN_TEMPLATE, values) == (
        "{{ unused }}. {{project }} and prod and e124 ended up in succeeded."
        " The execution failed with error: [uh-oh]."
    )


FLYTEADMIN_VALUES = {
    "project": "proj",
    "domain": "prod",
    "name": "e124",
    "launch_plan.project": "lp_proj",
    "launch_plan.domain": "lp_domain",
    "launch_plan.name": "lp_name",
    "launch_plan.version": "lp_version",
    "workflow.project": "wf_proj",
    "workflow.domain": "wf_domain",
    "workflow.name": "wf_name",
    "workflow.version": "wf_version",
    "phase": "succeeded",
}


@pytest.mark.parametrize("spelling", ["{{ %s }}", "{{%s}}"])
def test_all_flyteadmin_variables_in_both_spellings(spelling: str) -> None:
    # FlyteAdmin's TestSubstituteAllTemplates and ...NoSpaces.
    values = template_variables(event(WorkflowExecutionPhase.SUCCEEDED), execution(), None)
    template = ",".join(spelling % key for key in FLYTEADMIN_VALUES)
    assert substitute(template, values) == ",".join(FLYTEADMIN_VALUES.values())


def test_flyteadmin_body_and_subject_from_config() -> None:
    # FlyteAdmin's TestToEmailMessageFromWorkflowExecutionEvent.
    templates = TemplateConfig(
        subject='Notice: Execution "{{ name }}" has succeeded in "{{ domain }}".',
        body='Execution "{{ name }}" has succeeded in "{{ domain }}". View details at '
        '<a href="https://example.com/executions/{{ project }}/{{ domain }}/{{ name }}">'
        "https://example.com/executions/{{ project }}/{{ domain }}/{{ name }}</a>.",
    )
    message = render(email(), event(WorkflowExecutionPhase.ABORTED), execution(), templates)
    assert message.subject == 'Notice: Execution "e124" has succeeded in "prod".'
    assert message.text == (
        'Execution "e124" has succeeded in "prod". View details at '
        '<a href="https://example.com/executions/proj/prod/e124">'
        "https://example.com/executions/proj/prod/e124</a>."
    )


@pytest.mark.parametrize(
    ("phase", "lower", "upper", "words"),
    [
        (WorkflowExecutionPhase.SUCCEEDED, "succeeded", "SUCCEEDED", "succeeded"),
        (WorkflowExecutionPhase.FAILED, "failed", "FAILED", "failed"),
        (WorkflowExecutionPhase.ABORTED, "aborted", "ABORTED", "aborted"),
        (WorkflowExecutionPhase.TIMED_OUT, "timed_out", "TIMED_OUT", "timed out"),
    ],
)
def test_phase_spellings(phase: int, lower: str, upper: str, words: str) -> None:
    values = template_variables(event(phase), execution(), None)
    assert (values["phase"], values["phase_upper"], values["phase_text"]) == (lower, upper, words)


@pytest.mark.parametrize(
    "literal",
    [
        "{{project }}",
        "{{ project}}",
        "{{  project  }}",
        "{{ unused }}",
        "{{unused}}",
        "{ project }",
        "{{ PROJECT }}",
        "{{ project.name }}",
        "{{",
        "}}",
    ],
)
def test_other_spellings_stay_literal(literal: str) -> None:
    values = template_variables(event(), execution(), None)
    assert substitute(f"a {literal} b", values) == f"a {literal} b"


def test_placeholder_next_to_braces() -> None:
    assert substitute("{{{{ name }}}}", {"name": "x"}) == "{{x}}"
    assert substitute("{{ {{ name }}", {"name": "x"}) == "{{ x"


def test_no_values_leaves_template_alone() -> None:
    assert substitute("{{ name }}", {}) == "{{ name }}"


def test_value_is_not_expanded_again() -> None:
    sneaky = event(error=ExecutionError("bad {{ project }} and {{name}} {{ error }}"))
    values = template_variables(sneaky, execution(), None)
    assert substitute("{{ error.message }}|{{ project }}", values) == (
        "bad {{ project }} and {{name}} {{ error }}|proj"
    )
    assert substitute("{{ error }}", values) == (
        " The execution failed with error: [bad {{ project }} and {{name}} {{ error }}]."
    )


# --------------------------------------------------------------------------
# Variables
# --------------------------------------------------------------------------


def test_all_variables() -> None:
    error = ExecutionError("boom", code="OOM", kind=ErrorKind.USER, error_uri="s3://b/err.pb")
    values = template_variables(
        event(error=error), execution(), "https://flyte.example.com/console/"
    )
    url = "https://flyte.example.com/console/projects/proj/domains/prod/executions/e124"
    assert values == {
        "project": "proj",
        "domain": "prod",
        "name": "e124",
        "execution": "proj/prod/e124",
        "phase": "failed",
        "phase_upper": "FAILED",
        "phase_text": "failed",
        "occurred_at": "2024-05-01T12:03:12Z",
        "duration": "3m 12s",
        "console_url": url,
        "console_link": f"\nDetails: {url}",
        "error": " The execution failed with error: [boom].",
        "error.message": "boom",
        "error.code": "OOM",
        "error.kind": "USER",
        "error.uri": "s3://b/err.pb",
        "workflow": "wf_proj/wf_domain/wf_name@wf_version",
        "workflow.project": "wf_proj",
        "workflow.domain": "wf_domain",
        "workflow.name": "wf_name",
        "workflow.version": "wf_version",
        "launch_plan": "lp_proj/lp_domain/lp_name@lp_version",
        "launch_plan.project": "lp_proj",
        "launch_plan.domain": "lp_domain",
        "launch_plan.name": "lp_name",
        "launch_plan.version": "lp_version",
    }


def test_unknown_execution_gives_empty_values() -> None:
    values = template_variables(event(), None, None)
    for key in ("duration", "console_url", "console_link", "error", "error.message"):
        assert values[key] == ""
    for prefix in ("workflow", "launch_plan"):
        assert values[prefix] == "unknown"
        for part in ("project", "domain", "name", "version"):
            assert values[f"{prefix}.{part}"] == ""


def test_launch_plan_from_event_when_execution_unknown() -> None:
    lp = EntityId("p", "d", "daily")
    values = template_variables(event(launch_plan=lp), None, None)
    assert values["launch_plan"] == "p/d/daily"
    assert values["launch_plan.version"] == ""


def test_error_sentence_even_with_empty_message() -> None:
    # FlyteAdmin checks that the error is present, not that it has a message.
    values = template_variables(event(error=ExecutionError("")), None, None)
    assert values["error"] == " The execution failed with error: []."
    assert values["error.kind"] == "UNKNOWN"


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=3, seconds=12), "3m 12s"),
        (timedelta(hours=1, minutes=2, seconds=3), "1h 2m"),
        (timedelta(hours=1, seconds=5), "1h"),
        (timedelta(days=2, hours=3, minutes=4), "2d 3h"),
        (timedelta(milliseconds=300), "0s"),
        (timedelta(0), ""),
        (timedelta(seconds=-5), ""),
    ],
)
def test_duration(elapsed: timedelta, expected: str) -> None:
    values = template_variables(event(occurred_at=CREATED + elapsed), execution(), None)
    assert values["duration"] == expected


def test_times_in_other_zones_and_naive_times_are_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    ended = datetime(2024, 5, 1, 14, 3, 12, tzinfo=plus_two)
    naive_start = datetime(2024, 5, 1, 12, 0, 0)
    values = template_variables(event(occurred_at=ended), execution(naive_start), None)
    assert values["occurred_at"] == "2024-05-01T12:03:12Z"
    assert values["duration"] == "3m 12s"


@pytest.mark.parametrize(
    "base", ["https://flyte.example.com/console", "https://flyte.example.com/console/"]
)
def test_console_url(base: str) -> None:
    values = template_variables(event(), None, base)
    assert values["console_url"] == (
        "https://flyte.example.com/console/projects/proj/domains/prod/executions/e124"
    )


def test_console_url_quotes_path_parts() -> None:
    odd = ExecutionEvent(ExecutionId("p", "d", "a/b?c"), WorkflowExecutionPhase.FAILED, ENDED)
    values = template_variables(odd, None, "https://c")
    assert values["console_url"] == "https://c/projects/p/domains/d/executions/a%2Fb%3Fc"


@pytest.mark.parametrize("base", [None, "", "  "])
def test_no_console_url_without_base(base: str | None) -> None:
    values = template_variables(event(), None, base)
    assert values["console_url"] == values["console_link"] == ""


# --------------------------------------------------------------------------
# render(): which template
# --------------------------------------------------------------------------


def test_defaults() -> None:
    message = render(email(), event(error=ExecutionError("boom")), execution(), TemplateConfig())
    assert message.subject == "Flyte execution proj/prod/e124 failed"
    assert message.text == (
        "Flyte execution proj/prod/e124 failed. The execution failed with error: [boom].\n"
        "\n"
        "Launch plan: lp_proj/lp_domain/lp_name@lp_version\n"
        "Phase: FAILED\n"
        "At: 2024-05-01T12:03:12Z\n"
    )
    assert substitute(DEFAULT_SUBJECT, message.variables) == message.subject
    assert substitute(DEFAULT_BODY, message.variables) == message.text


def test_default_body_shows_console_link_when_configured() -> None:
    templates = TemplateConfig(console_url="https://flyte.example.com/console")
    message = render(email(), event(WorkflowExecutionPhase.TIMED_OUT), execution(), templates)
    assert message.subject == "Flyte execution proj/prod/e124 timed out"
    assert message.text.endswith(
        "At: 2024-05-01T12:03:12Z\n"
        "Details: https://flyte.example.com/console/projects/proj/domains/prod/executions/e124\n"
    )


def test_the_html_console_link_is_clickable_and_escaped() -> None:
    templates = TemplateConfig(console_url='https://flyte.example.com/c?a=1&b="2"')
    message = render(email(), event(WorkflowExecutionPhase.FAILED), execution(), templates)
    href = (
        "https://flyte.example.com/c?a=1&amp;b=&quot;2&quot;"
        "/projects/proj/domains/prod/executions/e124"
    )
    assert message.html.endswith(f'<br>\nDetails: <a href="{href}">{href}</a><br>\n</div>')
    no_console = render(
        email(), event(WorkflowExecutionPhase.FAILED), execution(), TemplateConfig()
    )
    assert "Details" not in no_console.html


def test_default_body_has_no_dangling_labels() -> None:
    message = render(email(), event(WorkflowExecutionPhase.SUCCEEDED), None, TemplateConfig())
    assert "Details" not in message.text
    assert "error" not in message.text
    assert "{{" not in message.text


def test_config_subject_and_body() -> None:
    templates = TemplateConfig(subject="{{ name }} is {{ phase_upper }}", body="Body {{ domain }}")
    message = render(email(), event(), execution(), templates)
    assert message.subject == "e124 is FAILED"
    assert message.text == "Body prod"


@pytest.mark.parametrize("make", [Email, Slack, PagerDuty])
def test_notification_template_is_the_body(make: type[Email]) -> None:
    notification = make(
        phases=[WorkflowExecutionPhase.FAILED],
        recipients_email=["x@example.com"],
        template="Own {{ name }}",
    )
    templates = TemplateConfig(subject="S {{ name }}", body="Config {{ name }}")
    message = render(notification, event(), execution(), templates)
    assert message.text == "Own e124"
    assert message.subject == "S e124"


@pytest.mark.parametrize("template", [None, ""])
def test_empty_notification_template_falls_back_to_config(template: str | None) -> None:
    message = render(email(template), event(), execution(), TemplateConfig(body="Config"))
    assert message.text == "Config"


def test_variables_are_raw() -> None:
    message = render(email(), event(error=ExecutionError(NASTY)), execution(), TemplateConfig())
    assert message.variables["error.message"] == NASTY
    assert message.variables == template_variables(
        event(error=ExecutionError(NASTY)), execution(), None
    )


# --------------------------------------------------------------------------
# render(): escaping per medium
# --------------------------------------------------------------------------


def test_nasty_error_in_every_medium() -> None:
    templates = TemplateConfig(subject="[{{ phase }}]{{ error }}", body="{{ error.message }}")
    message = render(email(), event(error=ExecutionError(NASTY)), execution(), templates)

    assert message.text == NASTY  # plain text: raw

    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "&lt;!channel&gt;" in message.html

    for ping in ("<!channel>", "<!here>", "<@U123>"):
        assert ping not in message.slack_text
    assert message.slack_text == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt;"
        " &amp; {{ project }}\r\nBcc: x@evil"
    )

    assert "\r" not in message.subject
    assert "\n" not in message.subject
    assert message.subject == (
        "[failed] The execution failed with error: [<script>alert(1)</script> <!channel>"
        " <!here> <@U123> & {{ project }} Bcc: x@evil]."
    )


def test_html_escapes_template_text_and_breaks_lines() -> None:
    templates = TemplateConfig(body='a < b & "c"\n{{ error.message }}\r\nend')
    message = render(email(), event(error=ExecutionError("x\ny")), execution(), templates)
    assert message.html == "<div>a &lt; b &amp; &quot;c&quot;<br>\nx<br>\ny<br>\nend</div>"


def test_flyteadmin_html_template_is_kept_as_markup_with_values_escaped() -> None:
    # FlyteAdmin mails bodies as text/html; its own tests use markup like this.
    body = '<a href="https://example.com/executions/{{ name }}">{{ name }}</a>{{ error }}'
    message = render(
        email(body), event(error=ExecutionError("<b>x</b>")), execution(), TemplateConfig()
    )
    assert message.html == (
        '<div><a href="https://example.com/executions/e124">e124</a>'
        " The execution failed with error: [&lt;b&gt;x&lt;/b&gt;].</div>"
    )


def test_slack_keeps_template_text_as_written() -> None:
    templates = TemplateConfig(body="<!here> {{ name }} {{ error.message }} & <https://x|x>")
    message = render(email(), event(error=ExecutionError("<!here>")), execution(), templates)
    assert message.slack_text == "<!here> e124 &lt;!here&gt; & <https://x|x>"


def test_slack_escapes_every_value() -> None:
    templates = TemplateConfig(body="{{ launch_plan }}")
    lp = EntityId("p", "d", "<!channel>")
    message = render(email(), event(launch_plan=lp), None, templates)
    assert message.slack_text == "p/d/&lt;!channel&gt;"


@pytest.mark.parametrize(
    "separator", ["\r\n", "\n", "\r", "\t", "\x00", "\x0b", "\x85", "\u2028", " \r\n \n "]
)
def test_subject_is_one_line(separator: str) -> None:
    templates = TemplateConfig(subject=f"a{separator}b {{{{ error.message }}}}")
    message = render(email(), event(error=ExecutionError(f"c{separator}d")), None, templates)
    assert message.subject == "a b c d"


def test_subject_is_trimmed_and_capped() -> None:
    templates = TemplateConfig(subject="\n  {{ error.message }}  \n")
    short = render(email(), event(error=ExecutionError("boom")), None, templates)
    assert short.subject == "boom"

    long = render(email(), event(error=ExecutionError("x" * 1000)), None, templates)
    assert len(long.subject) == MAX_SUBJECT_LENGTH
    assert long.subject.endswith("\u2026")


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


def reference_substitute(template: str, values: Mapping[str, str]) -> str:
    """A deliberately naive single pass: at each position, try every placeholder."""
    out: list[str] = []
    i = 0
    while i < len(template):
        for key, value in values.items():
            hit = next(
                (p for p in (f"{{{{ {key} }}}}", f"{{{{{key}}}}}") if template.startswith(p, i)),
                None,
            )
            if hit is not None:
                out.append(value)
                i += len(hit)
                break
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


KEYS = st.sampled_from(["project", "name", "error", "error.message", "launch_plan.name", "x"])
VALUES = st.text(alphabet=st.sampled_from("{} ab.x\n<&"), max_size=12) | KEYS.map(
    lambda k: f"{{{{ {k} }}}}"
)
FRAGMENTS = st.one_of(
    KEYS.map(lambda k: f"{{{{ {k} }}}}"),
    KEYS.map(lambda k: f"{{{{{k}}}}}"),
    KEYS.map(lambda k: f"{{{{{k} }}}}"),
    st.sampled_from(["{{", "}}", "{", "}", " ", "{{ ", " }}", "text"]),
)


@given(
    template=st.lists(FRAGMENTS, max_size=12).map("".join),
    values=st.dictionaries(KEYS, VALUES, max_size=6),
)
def test_substitute_matches_single_pass_reference(template: str, values: dict[str, str]) -> None:
    assert substitute(template, values) == reference_substitute(template, values)


@given(value=st.text(), key=KEYS)
def test_value_appears_verbatim(value: str, key: str) -> None:
    values = {k: f"{{{{ {k} }}}}" for k in ["project", "name", "error"]} | {key: value}
    assert substitute(f"<{{{{ {key} }}}}>", values) == f"<{value}>"
    assert substitute(f"<{{{{{key}}}}}>", values) == f"<{value}>"


@given(message=st.text())
def test_rendered_subject_never_has_line_breaks(message: str) -> None:
    templates = TemplateConfig(subject="{{ name }}: {{ error }}")
    subject = render(email(), event(error=ExecutionError(message)), None, templates).subject
    assert not any(c in subject for c in "\r\n\x0b\x0c\x85\u2028\u2029")
    assert len(subject) <= MAX_SUBJECT_LENGTH
