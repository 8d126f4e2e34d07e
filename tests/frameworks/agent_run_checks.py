"""The checks every multi-agent framework run must pass, from the pipeline's spans and the fake's log.

Each model call the fake provider answered must be priced exactly once, at the genai-prices
figure computed here from the usage the fake reported (``PriceBook`` on ``fake.requests[i].usage``),
by the agent that made it (``gen_ai.agent.name`` on the priced span); the CLI's by-agent table
over the exported spans must say the same; and the run must have one root whose
``cost.total_nanos`` is exactly the sum of its calls.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType

from opentelemetry.sdk.trace import ReadableSpan

import otel_costs
from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.cli import main as cli_main
from otel_costs.pipeline import OtlpJsonFileExporter
from otel_costs.pricing import LlmCall, TokenUsage
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline, RecordedRequest

_BOOK = PriceBook()


@contextlib.contextmanager
def priced_pipeline(fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline at genai-prices' prices, ``instrument_httpx`` writing to it for ``fake``'s host."""
    with InMemoryPipeline(price_book=otel_costs.PriceBook()) as pipeline:
        otel_costs.instrument_httpx(tracer_provider=pipeline.tracer_provider, llm_hosts={fake.host: "openai"})
        try:
            yield pipeline
        finally:
            otel_costs.uninstrument_httpx()


def genai_prices_nanos(request: RecordedRequest, provider: str = "openai") -> int:
    """What genai-prices charges for the usage the fake reported for ``request``, in nano-USD."""
    usage = request.usage
    assert usage is not None, f"the fake reported no usage for {request.path}"
    model = (request.body or {}).get("model")
    cost = _BOOK.price(
        LlmCall(
            model=str(model),
            provider=provider,
            server_address=None,
            usage=TokenUsage(
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            ),
        )
    )
    assert cost.status == conv.STATUS_PRICED, cost
    nanos = cost.total.scaleb(9)
    assert nanos == nanos.to_integral_value(), f"{cost.total} USD is not whole nano-USD"
    return int(nanos)


@dataclass(frozen=True)
class RunCheck:
    """What a checked run came to: the by-agent table the CLI printed, and the run's total."""

    by_agent: str
    total_nanos: int
    calls: int


def _priced(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get(conv.COST_STATUS) == conv.STATUS_PRICED]


def check_run(
    spans: Sequence[ReadableSpan],
    fake: FakeLLMProvider,
    agent_of: Callable[[RecordedRequest], str],
    out: Path,
) -> RunCheck:
    """Assert the framework run behind ``spans`` priced, attributed and rolled up every call exactly.

    ``agent_of(request)`` names the agent that sent ``request`` (read from its prompt); ``out``
    is where the spans are written as OTLP/JSON for the CLI.
    """
    requests = fake.requests
    assert requests, "the framework made no model call"
    assert all(r.status == 200 for r in requests), [(r.path, r.status) for r in requests]
    expected = Counter((agent_of(r), genai_prices_nanos(r)) for r in requests)
    priced = _priced(spans)
    actual = Counter(
        (
            str((s.attributes or {}).get(conv.AGENT_NAME, "(no agent)")),
            int((s.attributes or {})[conv.COST_DIRECT_NANOS]),
        )
        for s in priced
    )
    names = sorted(s.name for s in priced)
    assert len(priced) == len(requests), f"{len(priced)} priced spans for {len(requests)} calls: {names}"
    assert actual == expected, f"(agent, nano-USD) of the priced spans {actual} != the calls' {expected}"

    total = sum(expected_nanos for (_, expected_nanos), n in expected.items() for _ in range(n))
    # Spans made outside the run (AutoGen's create_agent at construction) are traces of their
    # own; every call of the run must be in one trace, under one root.
    run_traces = {s.context.trace_id for s in priced if s.context}
    assert len(run_traces) == 1, f"the run's calls are in {len(run_traces)} traces, not one"
    run_spans = [s for s in spans if s.context and s.context.trace_id in run_traces]
    roots = [s for s in run_spans if s.parent is None]
    assert len(roots) == 1, f"expected one root for the run, got {[r.name for r in roots]}"
    root_total = (roots[0].attributes or {}).get(conv.COST_TOTAL_NANOS)
    assert root_total == total, (
        f"root {roots[0].name} cost.total_nanos={root_total}, its calls sum to {total}"
    )

    table = by_agent_table(spans, out)
    per_agent: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for (agent, nanos), n in expected.items():
        per_agent[agent] += nanos * n
        calls[agent] += n
    printed = parse_by_agent(table)
    assert printed == {a: (calls[a], Decimal(per_agent[a]).scaleb(-9), 0) for a in calls}, table
    return RunCheck(by_agent=table, total_nanos=total, calls=len(requests))


def by_agent_table(spans: Sequence[ReadableSpan], out: Path) -> str:
    """The by-agent table ``otel-costs tree --by-agent`` prints for ``spans`` (written to ``out``)."""
    exporter = OtlpJsonFileExporter(out)
    exporter.export(list(spans))
    exporter.shutdown()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli_main(["tree", "--by-agent", str(out)]) == 0
    lines = printed.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["agent", "calls"])
    return "\n".join(lines[start:])


def parse_by_agent(table: str) -> dict[str, tuple[int, Decimal, int]]:
    """``agent -> (calls, USD, unpriced)`` from the printed by-agent table."""
    rows: dict[str, tuple[int, Decimal, int]] = {}
    for line in table.splitlines()[1:]:
        *agent, calls, cost, unpriced = line.split()
        rows[" ".join(agent)] = (int(calls), Decimal(cost.lstrip("$")), int(unpriced))
    return rows


def assert_public_module(module: ModuleType) -> None:
    """``module.__all__`` is exactly its public names, alphabetised, each published under it."""
    assert module.__all__ == sorted(module.__all__) == public_names(module)
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value):
            assert value.__module__ == module.__name__, name


def modules_loaded_by_import(module_name: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with ``prefixes`` that a fresh ``import module_name`` loads."""
    code = f"import sys, {module_name}\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m.strip(" '") for m in out.strip().strip("[]").split(",") if m.strip()]


def public_names(module: ModuleType) -> list[str]:
    """The public names ``module`` defines itself (its functions, classes and UPPER_CASE constants)."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if inspect.isclass(value) or inspect.isfunction(value):
            if value.__module__ == module.__name__:
                names.append(name)
        elif name.isupper():
            names.append(name)
    return sorted(names)
