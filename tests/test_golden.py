"""The shared golden cases (``tests/golden/``), checked against the Python implementation.

The Go ``costrollup`` processor checks the same files (``golden_test.go``), so Go and Python
cannot drift. Each case file's input (its OTLP/JSON ``resourceSpans``) goes through the Python
side: every span without ``cost.status`` through ``CostSpanProcessor`` (``PriceBook`` pricing,
duplicate ``gen_ai.response.id``), with genai-prices' data restricted to the providers of
``prices.json`` plus the golden overrides, as ``regenerate.py`` sets them; then the whole trace
through the rollup engine of ``otel_costs/rollup/`` (``rollup_columns`` + ``write_rollup``).

What is compared, and why:

- **Every** ``cost.*`` attribute and ``gen_ai.usage.cost`` of every span, exactly (doubles as
  IEEE doubles, ints as ints), nothing more, nothing less: the files list a span's complete set.
- The rollup runs at ``cost.rollup.scope=trace`` over the whole trace, with the processor's rules
  (figures of an earlier ``scope=process`` rollup replaced, ``cost.currency`` not written twice).
  The in-process ``CostRollupExporter`` writes ``scope=process`` over one process's spans by
  design; it shares the engine (``rollup_columns``), which is what is checked here, not its
  batching or linger.
- ``partial_reason = late`` (``late_part``) is something only the Collector knows (the trace went
  out before those spans arrived): here it is applied as the case says, on every span, as the
  processor does. ``missing_child``, ``buffer_full``, ``overflow`` and timing are not in the files
  (no Python equivalent; Go tests only).

Also checked: ``prices.json`` is exactly what the library's exporter writes for those prices
(``otel-costs prices export``), so the Go side prices from the same data Python priced from.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from genai_prices import data_snapshot

from otel_costs.pipeline import CostSpanProcessor
from otel_costs.pricing import PriceBook

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted((GOLDEN / "cases").glob("*.json"))


def _load_regenerate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


regen = _load_regenerate()


@pytest.fixture(scope="module")
def golden_book() -> Iterator[PriceBook]:
    """A PriceBook on genai-prices' data restricted to the golden providers, plus the overrides."""
    full = data_snapshot.get_snapshot()
    subset = [p for p in full.providers if p.id in regen.PROVIDERS]
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=subset, from_auto_update=False))
    try:
        yield PriceBook(regen.OVERRIDES)
    finally:
        data_snapshot.set_custom_snapshot(None)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and expected in ("nan", "inf", "-inf"):
        return isinstance(actual, float) and (
            math.isnan(actual) if expected == "nan" else actual == float(expected)
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, float) and isinstance(expected, float) and expected == actual
    return type(expected) is type(actual) and bool(expected == actual)


def test_there_are_cases() -> None:
    assert len(CASES) >= 15, CASES


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path: Path, golden_book: PriceBook) -> None:
    case = json.loads(path.read_text())
    collect = regen._Collect()
    processor = CostSpanProcessor(collect, price_book=golden_book)
    priced = copy.deepcopy(case["resourceSpans"])
    regen.price_spans(priced, processor, collect)
    spans = [s for rs in priced for ss in rs["scopeSpans"] for s in ss["spans"]]
    results = regen.trace_rollup(spans, case["partial_reason"])
    assert len(results) == len(case["expected"])
    problems = []
    for index, (span, attrs, expected) in enumerate(zip(spans, results, case["expected"], strict=True)):
        assert span["spanId"] == expected["span_id"]
        actual = {k: v for k, v in attrs.items() if k.startswith("cost.") or k == "gen_ai.usage.cost"}
        want = expected["attributes"]
        for key in sorted(set(actual) | set(want)):
            if key not in actual or key not in want or not _same(want[key], actual[key]):
                problems.append(
                    f"span #{index} {span['spanId']} {key}: expected {want.get(key, '<absent>')!r}, "
                    f"Python wrote {actual.get(key, '<absent>')!r}"
                )
        written = regen.agent_written(span, attrs)
        if written != expected.get("agent", {}):
            problems.append(
                f"span #{index} {span['spanId']} agent rule: expected {expected.get('agent')!r}, "
                f"Python wrote {written!r}"
            )
    assert not problems, "\n".join(problems)


def test_prices_json_is_the_exporters_output(golden_book: PriceBook) -> None:
    written = json.loads((GOLDEN / "prices.json").read_text())
    assert written == regen.price_file(golden_book)
