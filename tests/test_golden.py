"""Every case recorded from the real flytekit 1.16.31 must match byte for byte.

tests/data/generate_golden.py records them (its docstring says how to run it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flytenotify import Email, PagerDuty, Slack

GOLDEN = json.loads((Path(__file__).parent / "data" / "flytekit_golden.json").read_text())
KINDS: dict[str, Any] = {"Email": Email, "Slack": Slack, "PagerDuty": PagerDuty}
VALID = [c for c in GOLDEN["cases"] if "idl_hex" in c]
ERRORS = [c for c in GOLDEN["cases"] if "error" in c]


def test_golden_file_is_complete() -> None:
    assert GOLDEN["flytekit_version"] == "1.16.31"
    assert len(VALID) + len(ERRORS) == len(GOLDEN["cases"]) == 123
    assert all("repr" in case for case in VALID)
    assert sum("template" in case for case in VALID) == 7


@pytest.mark.parametrize("case", VALID, ids=lambda c: f"{c['kind']}-{c['phases']}")
def test_valid_case_serializes_like_flytekit(case: dict[str, Any]) -> None:
    obj = KINDS[case["kind"]](
        case["phases"], case["recipients_email"], template=case.get("template")
    )
    assert obj.to_flyte_idl().SerializeToString().hex() == case["idl_hex"]
    assert obj.serialize_to_string().hex() == case["idl_hex"]
    assert str(obj) == case["str"]
    assert repr(obj) == case["repr"]


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: f"{c['kind']}-{c['phases']}")
def test_error_case_raises_flytekit_message(case: dict[str, Any]) -> None:
    with pytest.raises(AssertionError) as caught:
        KINDS[case["kind"]](case["phases"], case["recipients_email"])
    assert str(caught.value) == case["error"]["message"]
    assert caught.value.args == (case["error"]["message"],)
