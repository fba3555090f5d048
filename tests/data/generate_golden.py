"""Record flytekit_golden.json from the real flytekit 1.16.31.

Run it with flytekit installed in a throwaway virtualenv outside this
repository (it needs nothing but PyPI):

    python3 -m venv /tmp/flytekit-venv
    /tmp/flytekit-venv/bin/pip install flytekit==1.16.31
    /tmp/flytekit-venv/bin/python tests/data/generate_golden.py

It re-records every case already in the file from its inputs (``kind``,
``phases``, ``recipients_email`` and, if present, ``template``), appends the
cases listed in ``NEW_CASES`` that the file does not hold yet, and writes the
file back. A valid case holds flytekit's serialized bytes (``idl_hex``),
``str()`` and ``repr()``; a refused one the exception flytekit raised.

flytekit has no ``template`` keyword, so a template is set on the protobuf
message (``EmailNotification.template``, field 2) of a flytekit object whose
class keeps flytekit's name: ``str()`` then shows what flytekit prints for a
notification carrying one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import flytekit
from flytekit.core import notification

GOLDEN = Path(__file__).with_name("flytekit_golden.json")
VERSION = "1.16.31"

SUCCEEDED, FAILED, ABORTED, TIMED_OUT = 4, 6, 7, 8
TERMINAL = [SUCCEEDED, FAILED, ABORTED, TIMED_OUT]
MANY = [f"member-{i:02d}@example.com" for i in range(12)]
LONG_LOCAL = "data-platform-nightly-etl-failures-escalation-" * 2 + "x@example.com"
# repr() of [EXACT_80] is 80 characters, of [EXACT_81] 81: shorten's boundary.
EXACT_80 = "a" * (80 - len("['@example.com']")) + "@example.com"
EXACT_81 = "a" * (81 - len("['@example.com']")) + "@example.com"
MULTILINE = "Execution {{ name }} ended in {{ phase }}.\n\n\tError:\n  {{ error }}\n"
LONG_TEMPLATE = (
    "The nightly ETL for {{ project }}/{{ domain }} finished as {{ phase }}; "
    "see {{ url }} for the logs, the inputs and the outputs of every node, "
    "and page the on-call engineer if it failed twice in a row."
)
UNICODE = ["josé.müller@example.com", "数据@例子.公司", "#données-alertes", "🚨@example.com"]

NEW_CASES: list[dict[str, Any]] = [
    {"kind": "Email", "phases": TERMINAL, "recipients_email": ["ops@example.com"]},
    {"kind": "Slack", "phases": TERMINAL, "recipients_email": ["#data-alerts"]},
    {"kind": "PagerDuty", "phases": TERMINAL, "recipients_email": ["data-oncall"]},
    {"kind": "Email", "phases": [TIMED_OUT, ABORTED], "recipients_email": ["ops@example.com"]},
    {"kind": "Email", "phases": [FAILED, FAILED], "recipients_email": ["ops@example.com"]},
    {"kind": "Email", "phases": [FAILED], "recipients_email": MANY},
    {"kind": "Slack", "phases": [FAILED], "recipients_email": MANY[:4]},
    {"kind": "PagerDuty", "phases": [FAILED, TIMED_OUT], "recipients_email": MANY[:3]},
    {"kind": "Email", "phases": [FAILED], "recipients_email": [LONG_LOCAL]},
    {"kind": "Email", "phases": [FAILED], "recipients_email": ["ops@example.com", LONG_LOCAL]},
    {"kind": "Email", "phases": [FAILED], "recipients_email": [EXACT_80]},
    {"kind": "Email", "phases": [FAILED], "recipients_email": [EXACT_81]},
    {"kind": "Slack", "phases": [FAILED], "recipients_email": ["#a  b", "c\td@example.com"]},
    {"kind": "Email", "phases": [SUCCEEDED], "recipients_email": UNICODE},
    {"kind": "Slack", "phases": [FAILED], "recipients_email": UNICODE[2:]},
    {"kind": "Email", "phases": [FAILED], "recipients_email": UNICODE * 3},
    {
        "kind": "Email",
        "phases": [FAILED],
        "recipients_email": ["ops@example.com"],
        "template": MULTILINE,
    },
    {
        "kind": "Slack",
        "phases": [FAILED, TIMED_OUT],
        "recipients_email": ["#data-alerts"],
        "template": LONG_TEMPLATE,
    },
    {
        "kind": "PagerDuty",
        "phases": [ABORTED],
        "recipients_email": ["data-oncall"],
        "template": "short {{ name }}",
    },
    {
        "kind": "Email",
        "phases": TERMINAL,
        "recipients_email": MANY,
        "template": LONG_TEMPLATE + "\n" + MULTILINE,
    },
    {
        "kind": "Email",
        "phases": [FAILED],
        "recipients_email": ["ops@example.com"],
        "template": "  \n\t  ",
    },
    {
        "kind": "Slack",
        "phases": [SUCCEEDED],
        "recipients_email": ["#données-alertes"],
        "template": "✅ {{ name }} a réussi — 成功\n🚀 " + "très long texte " * 6,
    },
    {
        "kind": "PagerDuty",
        "phases": [FAILED],
        "recipients_email": ["data-oncall"],
        "template": "x" * 120,
    },
]


def _with_template(cls: type, template: str) -> type:
    """A subclass of flytekit's ``cls``, with its name, whose protobuf carries ``template``."""

    def to_flyte_idl(self: Any) -> Any:
        message = cls.to_flyte_idl(self)
        getattr(message, message.WhichOneof("type")).template = template
        return message

    return type(cls.__name__, (cls,), {"to_flyte_idl": to_flyte_idl})


def record(case: dict[str, Any]) -> dict[str, Any]:
    inputs = {k: case[k] for k in ("kind", "phases", "recipients_email", "template") if k in case}
    cls = getattr(notification, case["kind"])
    if "template" in case:
        cls = _with_template(cls, case["template"])
    try:
        obj = cls(case["phases"], case["recipients_email"])
    except Exception as error:  # recorded: the message flytekit gives
        return {
            **inputs,
            "error": {
                "type": type(error).__name__,
                "is_assertion": isinstance(error, AssertionError),
                "message": str(error),
            },
        }
    return {
        **inputs,
        "idl_hex": obj.to_flyte_idl().SerializeToString().hex(),
        "str": str(obj),
        "repr": repr(obj),
    }


def main() -> None:
    if flytekit.__version__ != VERSION:
        sys.exit(f"needs flytekit {VERSION}, found {flytekit.__version__}")
    existing = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]

    def key(case: dict[str, Any]) -> str:
        return json.dumps([case.get(k) for k in ("kind", "phases", "recipients_email", "template")])

    known = {key(case) for case in existing}
    cases = existing + [case for case in NEW_CASES if key(case) not in known]
    golden = {"flytekit_version": VERSION, "cases": [record(case) for case in cases]}
    GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{GOLDEN}: {len(cases)} cases")


if __name__ == "__main__":
    main()
