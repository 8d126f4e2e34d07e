"""otel-costs: where the money goes in multi-agent LLM systems, on plain OpenTelemetry.

Attribute spans to workflows, agents, retries, users and teams; price every LLM call from
its token usage; roll costs up span trees; export to any OTLP backend.

Example::

    import otel_costs

    otel_costs.configure(service_name="agents")
    with otel_costs.workflow("support", team_id="billing"), otel_costs.agent("triage"):
        ...  # LLM calls made here are priced and attributed

The root holds what an application needs; everything else lives under its stage's public
subpackage (``otel_costs.attribution``, ``.pricing``, ``.pipeline``, ``.rollup``, ``.capture``,
``.budgets``, ``.budgets.ledger``, ``.metrics``, ``.conventions``, ``.testing``). Names are
imported on first use, so ``import otel_costs`` loads no exporter, no price data, no Redis
client and no gRPC (``tests/test_import.py``; ``benchmarks/bench_import.py``).
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from otel_costs.attribution import agent, current_attribution, retry, workflow
    from otel_costs.budgets import Budget, BudgetExceeded, BudgetManager
    from otel_costs.capture import accept_attribution, instrument_httpx, uninstrument_httpx
    from otel_costs.pipeline import ConfigError, CostSpanProcessor, configure
    from otel_costs.pricing import PriceBook
    from otel_costs.rollup import CostRollupExporter

#: Where each root name lives: its public subpackage.
_HOMES: dict[str, str] = {
    "Budget": "otel_costs.budgets",
    "BudgetExceeded": "otel_costs.budgets",
    "BudgetManager": "otel_costs.budgets",
    "ConfigError": "otel_costs.pipeline",
    "CostRollupExporter": "otel_costs.rollup",
    "CostSpanProcessor": "otel_costs.pipeline",
    "PriceBook": "otel_costs.pricing",
    "accept_attribution": "otel_costs.capture",
    "agent": "otel_costs.attribution",
    "configure": "otel_costs.pipeline",
    "current_attribution": "otel_costs.attribution",
    "instrument_httpx": "otel_costs.capture",
    "retry": "otel_costs.attribution",
    "uninstrument_httpx": "otel_costs.capture",
    "workflow": "otel_costs.attribution",
}

__all__ = [
    "Budget",
    "BudgetExceeded",
    "BudgetManager",
    "ConfigError",
    "CostRollupExporter",
    "CostSpanProcessor",
    "PriceBook",
    "accept_attribution",
    "agent",
    "configure",
    "current_attribution",
    "instrument_httpx",
    "retry",
    "uninstrument_httpx",
    "workflow",
]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'otel_costs' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
