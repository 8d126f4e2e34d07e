"""What ``import otel_costs`` (and each public subpackage) loads: nothing heavy until it is used.

These tests run a fresh interpreter per case, because the test process itself has imported
everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Module prefixes that must stay unloaded by a plain import: gRPC, protobuf and the generated OTLP
#: messages, the OTLP exporters, the Redis client, genai-prices (and its ~3 MB data module).
HEAVY = (
    "grpc",
    "google.protobuf",
    "opentelemetry.proto",
    "opentelemetry.exporter",
    "redis",
    "genai_prices",
)


def _loaded_by(code: str) -> list[str]:
    """The modules that running ``code`` in a fresh interpreter adds to ``sys.modules``."""
    probe = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(result.stdout.splitlines()[-1]))


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(HEAVY)]


def test_import_root_loads_only_the_root() -> None:
    """``import otel_costs`` loads no submodule of its own and nothing of OpenTelemetry's."""
    loaded = _loaded_by("import otel_costs")
    assert [m for m in loaded if m.startswith("otel_costs")] == ["otel_costs"]
    assert not [m for m in loaded if m.startswith("opentelemetry")]


@pytest.mark.parametrize(
    "code",
    [
        "import otel_costs",
        "from otel_costs import configure, workflow, agent, retry, CostSpanProcessor, CostRollupExporter",
        "from otel_costs import PriceBook, BudgetManager, Budget, BudgetExceeded",
        "from otel_costs import instrument_httpx, accept_attribution",
        "import otel_costs.attribution, otel_costs.pipeline, otel_costs.rollup, otel_costs.pricing",
        "import otel_costs.budgets, otel_costs.budgets.ledger, otel_costs.metrics, otel_costs.conventions",
        "import otel_costs.capture, otel_costs.testing",
    ],
)
def test_public_imports_load_nothing_heavy(code: str) -> None:
    """Importing public names loads no gRPC, protobuf, OTLP exporter, Redis client or price data."""
    assert _heavy(_loaded_by(code)) == []


def test_the_heavy_parts_load_when_used() -> None:
    """The check can fail: pricing a call does load genai-prices, and a Redis ledger the Redis client."""
    loaded = _loaded_by(
        "from otel_costs.pricing import PriceBook\nPriceBook().model_prices('gpt-4o', provider='openai')\n"
    )
    assert any(m.startswith("genai_prices") for m in loaded)
