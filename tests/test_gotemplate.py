"""The Go text/template renderer: Go's own output, clear errors, escaping, bounds.

tests/data/gotemplate/golden.json is what Go's text/template rendered for each
case (tests/data/gotemplate/generate.go records it; its header says how).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flyte._internal.runtime.notifications_serde import resolve_notification_settings
from flyte.models import ActionPhase
from flyte.notify import Email, Slack, Teams, Webhook
from hypothesis import given, settings
from hypothesis import strategies as st

from flytenotify.engine.gotemplate import (
    HTML,
    JSON_STRING,
    MAX_NESTING,
    MAX_OUTPUT_LENGTH,
    MAX_PRINTF_WIDTH,
    MAX_TEMPLATE_LENGTH,
    PLAIN_TEXT,
    TemplateError,
    compile_json_body,
    compile_template,
    render,
    render_json_body,
)
from flytenotify.engine.gotemplate import _go_float as go_float

GOLDEN = json.loads((Path(__file__).parent / "data" / "gotemplate" / "golden.json").read_text())
CASES: list[dict[str, Any]] = GOLDEN["cases"]
RENDERED = [c for c in CASES if "output" in c and "refused" not in c]
GO_ERRORS = [c for c in CASES if "error" in c]
REFUSED = [c for c in CASES if "refused" in c]

RUN = {
    "Run": {
        "Project": "flytesnacks",
        "Domain": "development",
        "Name": "abc123",
        "URL": "https://flyte.example.com/v2/runs/project/flytesnacks/domain/development/abc123",
    },
    "Phase": "failed",
    "Error": "OOMKilled: container \"main\" <exceeded> memory & was 'killed'\nsee logs",
    "Action": {"Name": "a0"},
    "Prompt": "",
    "Description": "",
    "PromptType": "",
}
# Everything an error message could try at once: markup, JSON breakers, a template.
NASTY = "<script>alert(1)</script> \" \\ \n\t\r & ' {{.Run.Name}} }} {{ \u2028 \x00 é 😀"


def data_of(case: dict[str, Any]) -> dict[str, Any]:
    return case.get("data", GOLDEN["default_data"])  # type: ignore[no-any-return]


def case_id(case: dict[str, Any]) -> str:
    return str(case["name"])


# --- Go's own answers ------------------------------------------------------------------


def test_golden_file_is_complete() -> None:
    assert GOLDEN["go_version"].startswith("go1.")
    assert len(CASES) == len(RENDERED) + len(GO_ERRORS) + len(REFUSED) > 300
    assert all(("output" in c) != ("error" in c) for c in CASES)
    # A refusal is only recorded where Go did render: it is ours, on purpose.
    assert all("output" in c and c["refused"] for c in REFUSED)
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", RENDERED, ids=case_id)
def test_renders_what_go_renders(case: dict[str, Any]) -> None:
    assert render(case["template"], data_of(case)) == case["output"]


@pytest.mark.parametrize("case", GO_ERRORS, ids=case_id)
def test_fails_where_go_fails(case: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as caught:
        render(case["template"], data_of(case))
    assert caught.value.line is not None
    assert caught.value.column is not None
    assert str(caught.value).startswith(f"{caught.value.line}:{caught.value.column}: ")


@pytest.mark.parametrize("case", REFUSED, ids=case_id)
def test_refuses_on_purpose(case: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as caught:
        render(case["template"], data_of(case))
    assert caught.value.line is not None


# --- errors a user can act on ----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "Run {{.Run.Nope}}",
            '1:7: .Run.Nope: .Run has no field "Nope" (it has Domain, Name, Project, URL)',
        ),
        (
            "{{.Foo}}",
            '1:3: .Foo: the data has no field "Foo" (it has Action, Description, Error, '
            "Phase, Prompt, PromptType, Run)",
        ),
        ("x\n  {{.Phase | upper}}", '2:14: function "upper" is not defined (the functions are'),
        ("ok\nstill ok {{ .Phase", "2:10: unclosed action: {{ has no matching }}"),
        ("{{if .Error}}\nerror", "1:3: {{if}} is never closed: add {{end}}"),
        ("{{end}}", "1:1: {{end}} without an open {{if}}, {{with}} or {{range}}"),
        ('{{template "x"}}', "1:3: {{template}} is not supported: a notification is a single"),
        ("{{range .Phase}}x{{end}}", "1:3: range can only iterate over a list, not a string"),
        ("{{.Run}}", "1:3: {{.Run}}: a mapping is not text: print one of its fields (it has"),
        ('{{printf "%d" .Phase}}', "1:3: printf %d cannot format a string"),
        ("{{eq .Phase 1}}", "1:3: eq cannot compare a string with an int"),
        ("é {{.Nope}}", '1:5: .Nope: the data has no field "Nope"'),  # columns count characters
        (
            "a\n{{.Phase\n b",
            'function "b" is not defined (the functions are and, eq, ge, gt, html, index, js, '
            "le, len, lt, ne, not, or, print, printf, println, urlquery) "
            "(in the action that starts with {{ at 2:1)",
        ),
    ],
)
def test_error_names_the_construct_and_position(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, RUN)
    assert message in str(caught.value)


def test_error_never_quotes_the_data() -> None:
    # An error message (the data) may be long or private; errors name kinds only.
    with pytest.raises(TemplateError) as caught:
        render("{{.Error.Code}}", RUN)
    assert str(caught.value) == "1:3: .Error.Code: .Error is a string, which has no fields"
    assert "OOMKilled" not in str(caught.value)


def test_bad_template_raises_when_compiled_not_only_when_rendered() -> None:
    with pytest.raises(TemplateError, match="unclosed action"):
        compile_template("Run {{.Run.Name")
    # An unknown field depends on the data, so only rendering can tell (as in Go).
    template = compile_template("{{.Nope}}")
    with pytest.raises(TemplateError, match='no field "Nope"'):
        template.render(RUN)


def test_compiled_templates_are_cached() -> None:
    assert compile_template("Run {{.Run.Name}}") is compile_template("Run {{.Run.Name}}")
    assert compile_json_body('{"a": "{{.Phase}}"}') is compile_json_body('{"a": "{{.Phase}}"}')


def test_data_of_an_unsupported_type_is_the_callers_mistake() -> None:
    with pytest.raises(TypeError, match="datetime is not supported"):
        render("{{.When}}", {"When": datetime(2024, 5, 1, tzinfo=UTC)})


# --- constructs Go 1.19 (the golden recorder) lacks -----------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{with .Prompt}}p={{.}}{{else with .Action}}a={{.Name}}{{else}}none{{end}}", "a=a0"),
        ("{{with .Phase}}{{.}}{{else with .Action}}a{{end}}", "failed"),
        (
            "{{with .Prompt}}p{{else with .Description}}d{{else}}none {{.Phase}}{{end}}",
            "none failed",
        ),
    ],
)
def test_else_with_as_go_1_23(template: str, expected: str) -> None:
    assert render(template, RUN) == expected


def test_else_with_is_only_allowed_in_with() -> None:
    with pytest.raises(
        TemplateError, match=r"\{\{else with\}\} is only allowed inside \{\{with\}\}"
    ):
        render("{{if .Error}}x{{else with .Run}}y{{end}}", RUN)


# --- escaping contexts -------------------------------------------------------------------


def test_contexts_escape_values_never_the_template_text() -> None:
    template = '<b title="{{.Run.Name}}">{{.Error}}</b> & "text"'
    data = {**RUN, "Error": NASTY}
    assert render(template, data, PLAIN_TEXT) == f'<b title="abc123">{NASTY}</b> & "text"'
    html = render(template, data, HTML)
    assert html.startswith('<b title="abc123">&lt;script&gt;alert(1)&lt;/script&gt; &quot; ')
    assert html.endswith('</b> & "text"')
    assert "<script>" not in html
    assert "&#x27;" in html  # the value's quote, escaped
    as_json = render('{"error": "{{.Error}}"}', data, JSON_STRING)
    assert json.loads(as_json) == {"error": NASTY}


def test_html_function_is_not_escaped_twice_in_html() -> None:
    data = {**RUN, "Error": "<b>"}
    assert render("{{html .Error}}|{{.Error | html}}|{{.Error}}", data, HTML) == (
        "&lt;b&gt;|&lt;b&gt;|&lt;b&gt;"
    )
    # Only a pipeline that ends with html is trusted.
    assert render('{{html .Error | printf "%s"}}', data, HTML) == "&amp;lt;b&amp;gt;"


texts = st.text(max_size=80)


@given(texts, texts)
def test_json_string_context_keeps_any_value_as_data(name: str, error: str) -> None:
    data = {**RUN, "Run": {**RUN["Run"], "Name": name}, "Error": error}
    out = render('{"run": "{{.Run.Name}}", "error": "{{.Error}}"}', data, JSON_STRING)
    assert json.loads(out) == {"run": name, "error": error}


@given(texts)
def test_values_are_never_expanded_again(value: str) -> None:
    data = {**RUN, "Error": value + "{{.Run.Name}}"}
    for context in (PLAIN_TEXT, HTML, JSON_STRING):
        out = render("[{{.Error}}]", data, context)
        assert out == "[" + context.escape(value + "{{.Run.Name}}") + "]"


# --- webhook bodies --------------------------------------------------------------------------


def sdk_body_templates() -> dict[str, str]:
    """The body templates the Flyte SDK itself writes for its default notifications."""
    notifications = (
        Webhook(on_phase=ActionPhase.FAILED, url="https://hooks.example.com/x"),
        Slack(on_phase=ActionPhase.FAILED, webhook_url="https://hooks.slack.com/services/T/B/X"),
        Teams(on_phase=ActionPhase.FAILED, webhook_url="https://outlook.office.com/webhook/x"),
        Webhook(
            on_phase=ActionPhase.FAILED,
            url="https://hooks.example.com/y",
            body={
                "{{.Run.Project}}": {"{{.Run.Domain}}": ["{{.Phase}}", 1.50, True, None]},
                "blocks": [{"type": "section", "text": {"text": "*{{.Run.Name}}*: {{.Error}}"}}],
            },
        ),
    )
    _, rules = resolve_notification_settings(notifications)
    assert rules is not None
    bodies = [rule.delivery_template.webhook.body_template for rule in rules.rules]
    return dict(zip(["webhook", "slack", "teams", "nested"], bodies, strict=True))


SDK_BODIES = sdk_body_templates()


def test_sdk_default_email_renders() -> None:
    email = Email(on_phase=ActionPhase.FAILED, recipients=("oncall@example.com",))
    _, rules = resolve_notification_settings(email)
    assert rules is not None
    inline = rules.rules[0].delivery_template.email.inline
    assert render(inline.subject, RUN) == "Run abc123 failed"
    assert render(inline.text_template, RUN) == (
        "Run: abc123\nProject/Domain: flytesnacks/development\nPhase: failed\n"
        f"Error: {RUN['Error']}\n"
    )
    html = render(inline.text_template, {**RUN, "Error": "<b>x</b>"}, HTML)
    assert "Error: &lt;b&gt;x&lt;/b&gt;" in html


def test_sdk_default_webhook_body() -> None:
    data = {**RUN, "Error": NASTY}
    body = json.loads(render_json_body(SDK_BODIES["webhook"], data))
    assert body == {
        "run": "abc123",
        "project": "flytesnacks",
        "domain": "development",
        "phase": "failed",
        "error": NASTY,
    }


def test_sdk_slack_and_teams_bodies() -> None:
    slack = json.loads(render_json_body(SDK_BODIES["slack"], RUN))
    assert slack == {"text": "Run: abc123 finished with phase failed\n | flytesnacks/development\n"}
    teams = json.loads(render_json_body(SDK_BODIES["teams"], RUN))
    assert teams["title"] == "Run abc123 failed"
    assert teams["text"].endswith(f"Phase: failed\nError: {RUN['Error']}\n")


def test_nested_body_renders_keys_and_keeps_other_json() -> None:
    out = render_json_body(SDK_BODIES["nested"], RUN)
    assert "1.5, true, null" in out  # what json.dumps wrote, left as it was
    assert json.loads(out) == {
        "flytesnacks": {"development": ["failed", 1.5, True, None]},
        "blocks": [{"type": "section", "text": {"text": f"*abc123*: {RUN['Error']}"}}],
    }
    assert compile_json_body(SDK_BODIES["nested"]).is_json


def test_numbers_keep_their_spelling() -> None:
    assert render_json_body('{"a": 1.50, "b": 1e3, "c": -0, "d": 12345678901234567890}', RUN) == (
        '{"a": 1.50, "b": 1e3, "c": -0, "d": 12345678901234567890}'
    )


def test_body_that_is_not_json_renders_as_json_string_text() -> None:
    template = '{"n": {{len .Run.Name}}, "error": "{{.Error}}"}'
    assert not compile_json_body(template).is_json
    data = {**RUN, "Error": NASTY}
    assert json.loads(render_json_body(template, data)) == {"n": 6, "error": NASTY}
    # NaN is not JSON, so such a body is text too (and its values still escaped).
    assert not compile_json_body('{"x": NaN, "e": "{{.Error}}"}').is_json


def test_keys_that_render_alike_are_refused() -> None:
    with pytest.raises(TemplateError, match="two keys of the body's object render to the same"):
        render_json_body('{"{{.Phase}}": 1, "failed": 2}', RUN)
    with pytest.raises(TemplateError, match="render to the same name 'a'"):
        render_json_body('{"x": {"a": 1, "a": 2}}', RUN)


def test_body_error_says_which_string() -> None:
    with pytest.raises(TemplateError) as caught:
        render_json_body('{"blocks": [{"text": "ok"}, {"text": "{{.Nope}}"}]}', RUN)
    assert caught.value.location == "blocks[1].text"
    assert str(caught.value).startswith("in blocks[1].text: 1:3: .Nope: the data has no field")
    with pytest.raises(TemplateError, match=r"^in the key 'x\.\{\{end\}\}': 1:1: \{\{end\}\}"):
        compile_json_body('{"x": {"{{end}}": 1}}')


@given(texts, texts, texts)
def test_json_body_is_valid_json_with_values_as_data(name: str, error: str, prompt: str) -> None:
    data = {**RUN, "Run": {**RUN["Run"], "Name": name}, "Error": error, "Prompt": prompt}
    for template in SDK_BODIES.values():
        json.loads(render_json_body(template, data))
    body = json.loads(render_json_body(SDK_BODIES["webhook"], data))
    assert body["run"] == name
    assert body["error"] == error
    nested = json.loads(render_json_body(SDK_BODIES["nested"], data))
    assert nested["blocks"][0]["text"]["text"] == f"*{name}*: {error}"
    text_body = '{"prompt": "{{.Prompt}}", "n": {{len .Prompt}}}'
    assert json.loads(render_json_body(text_body, data))["prompt"] == prompt


@given(texts, texts)
def test_json_body_keys_rendered_from_data_stay_data(key: str, value: str) -> None:
    data = {**RUN, "Key": key, "Value": value}
    out = render_json_body('{"{{.Key}}": "{{.Value}}", "phase": "{{.Phase}}"}', data)
    if key == "phase":
        return  # two keys rendering alike is refused (test above)
    assert json.loads(out) == {key: value, "phase": "failed"}


# --- bounds ------------------------------------------------------------------------------


def test_template_length_is_bounded() -> None:
    render("x" * MAX_TEMPLATE_LENGTH, RUN)
    with pytest.raises(TemplateError, match="at most 100000 are allowed"):
        render("x" * (MAX_TEMPLATE_LENGTH + 1), RUN)
    with pytest.raises(TemplateError, match="at most 100000 are allowed"):
        render_json_body(json.dumps({"a": "x" * MAX_TEMPLATE_LENGTH}), RUN)


@pytest.mark.parametrize(
    ("open_", "close_"),
    [("{{if true}}", "{{end}}"), ("{{with .Run}}", "{{end}}"), ("{{range .L}}", "{{end}}")],
)
def test_block_nesting_is_bounded(open_: str, close_: str) -> None:
    data = {**RUN, "L": [[1]]}
    ok = open_ * MAX_NESTING + "x" + close_ * MAX_NESTING
    compile_template(ok)
    too_deep = open_ * (MAX_NESTING + 1) + "x" + close_ * (MAX_NESTING + 1)
    with pytest.raises(TemplateError, match=f"nested deeper than {MAX_NESTING} levels"):
        render(too_deep, data)


def test_parenthesis_nesting_is_bounded() -> None:
    assert render("{{" + "(" * MAX_NESTING + "1" + ")" * MAX_NESTING + "}}", RUN) == "1"
    with pytest.raises(TemplateError, match="nested deeper"):
        render("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}", RUN)


def test_a_long_else_if_chain_is_not_nesting() -> None:
    chain = "".join(f'{{{{else if eq .Phase "p{i}"}}}}{i}' for i in range(500))
    assert render('{{if eq .Phase "x"}}x' + chain + "{{else}}none{{end}}", RUN) == "none"


def test_steps_are_bounded() -> None:
    # 100 * 100 * 100 passes would take a million steps: refused, quickly.
    data = {**RUN, "L": list(range(100))}
    with pytest.raises(TemplateError, match="took more than 200000 steps"):
        render("{{range .L}}{{range $.L}}{{range $.L}}{{end}}{{end}}{{end}}", data)


def test_output_is_bounded() -> None:
    data = {**RUN, "Big": "x" * 100_000, "L": list(range(11))}
    assert len(render("{{range .L}}{{$.Big}}{{end}}", {**data, "L": list(range(10))})) == 10**6
    with pytest.raises(TemplateError, match=f"longer than {MAX_OUTPUT_LENGTH} characters"):
        render("{{range .L}}{{$.Big}}{{end}}", data)


def test_intermediate_values_are_bounded() -> None:
    # Each assignment doubles $x: without a bound, 30 of them would need gigabytes.
    doubling = "{{$x := .Error}}" + "{{$x = print $x $x}}" * 30
    with pytest.raises(TemplateError, match="print made text longer than"):
        render(doubling, RUN)


def test_printf_width_is_bounded() -> None:
    assert len(render(f'{{{{printf "%{MAX_PRINTF_WIDTH}s" "x"}}}}', RUN)) == MAX_PRINTF_WIDTH
    with pytest.raises(TemplateError, match="printf width 1000000000 is larger than 10000"):
        render('{{printf "%1000000000s" "x"}}', RUN)
    with pytest.raises(TemplateError, match="printf precision"):
        render('{{printf "%.1000000000f" 1.5}}', RUN)


def test_json_body_bounds() -> None:
    deep = "[" * (MAX_NESTING + 2) + "]" * (MAX_NESTING + 2)
    with pytest.raises(TemplateError, match="deeper than 32 levels"):
        compile_json_body(deep)
    with pytest.raises(TemplateError, match="deeper than 32 levels"):
        compile_json_body("[" * 50_000 + "]" * 50_000)
    # The output bound holds for the whole body, not each string alone.
    big = {**RUN, "Big": "x" * 300_000}
    body = json.dumps({str(i): "{{.Big}}" for i in range(4)})
    with pytest.raises(TemplateError, match="longer than 1000000 characters"):
        render_json_body(body, big)


# --- robustness and Go's number formatting -----------------------------------------------

template_text = st.text(
    alphabet=st.sampled_from(list("{}{{}}-/*. $\"`'|():=,0123456789eExabifrngwhtdcpAZ\n\t%é")),
    max_size=60,
)


@settings(max_examples=400)
@given(template_text)
def test_any_text_renders_or_raises_template_error(template: str) -> None:
    data = {**RUN, "L": [1, "a", None], "N": 2.5, "B": True, "Z": None}
    problem: TemplateError | None = None
    try:
        out = render(template, data)
    except TemplateError as error:
        problem = error
    if problem is None:
        assert isinstance(out, str)
    else:
        assert problem.line is not None
        assert problem.column is not None


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_print_as_the_shortest_text_that_reads_back(value: float) -> None:
    text = go_float(value)
    assert float(text) == value
    assert math.copysign(1, float(text)) == math.copysign(1, value)
    assert len(text.replace("-", "").replace(".", "").split("e")[0].lstrip("0")) <= 17
