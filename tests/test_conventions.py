"""``otel_costs.conventions`` and ``docs/conventions.md`` name the same things."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_costs import conventions as conv

DOC = (Path(__file__).resolve().parent.parent / "docs" / "conventions.md").read_text()


def _names() -> list[tuple[str, str]]:
    pairs = []
    for name in conv.__all__:
        value = getattr(conv, name)
        values = [value] if isinstance(value, str) else sorted(value) if isinstance(value, frozenset) else []
        pairs += [(name, v) for v in values]
    return pairs


@pytest.mark.parametrize(("name", "value"), _names())
def test_every_name_is_documented(name: str, value: str) -> None:
    """Every name the module defines (attribute, baggage key, header, metric, event) is on the page."""
    assert f"`{value}`" in DOC, f"{name} = {value!r} is not in docs/conventions.md"
