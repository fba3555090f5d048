"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
# Blocks fenced as ```python run as they stand; ```py blocks are illustrations
# that need a running service and are exercised by the service tests instead.
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_the_product_document_examples() -> None:
    joined = "\n".join(BLOCKS)
    for needle in ('recipients_email=["team-leads@example.com"]', '"#data-alerts"', "TIMED_OUT"):
        assert needle in joined


@pytest.mark.parametrize("code", BLOCKS, ids=lambda c: c.strip().splitlines()[-1][:40])
def test_readme_block_runs(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
