"""The checks every framework test makes on one run: each call priced once, by agent, root exact.

Shared by the framework sets (each set's ``conftest.py`` puts this folder on ``sys.path``). The
expected figures are computed independently: each call's cost from the usage the fake provider
recorded for it, priced by ``otel_costs.PriceBook`` (genai-prices' data), and the by-agent
table is the CLI's own output over the exported spans.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import wrapt
from opentelemetry.sdk.trace import ReadableSpan

import otel_costs
from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.cli import main as cli_main
from otel_costs.pipeline import OtlpJsonFileExporter
from otel_costs.pricing import LlmCall, TokenUsage
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline, RecordedRequest

#: A model genai-prices prices; the fake answers with its dated snapshot name, as the API does.
MODEL = "gpt-4o"
RESPONSE_MODELS: Mapping[str, str] = {MODEL: "gpt-4o-2024-08-06"}


@contextlib.contextmanager
def priced_pipeline(fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline at genai-prices' rates, ``instrument_httpx`` capturing the fake's calls."""
    with InMemoryPipeline(price_book=PriceBook()) as pipeline:
        otel_costs.instrument_httpx(tracer_provider=pipeline.tracer_provider, llm_hosts={fake.host: "openai"})
        try:
            yield pipeline
        finally:
            otel_costs.uninstrument_httpx()
            pipeline.shutdown()


def request_nanos(request: RecordedRequest, book: PriceBook) -> int:
    """What ``request``'s recorded usage costs at genai-prices' rates (nano-USD)."""
    usage = request.usage
    assert usage is not None, f"the fake recorded no usage for {request.path}"
    tokens = TokenUsage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )
    result = book.price(LlmCall(RESPONSE_MODELS[MODEL], "openai", None, tokens))
    assert result.status == conv.STATUS_PRICED, result
    nanos = result.total.scaleb(9)
    assert nanos == nanos.to_integral_value(), f"{result.total} USD is not whole nano-USD"
    return int(nanos)


def priced_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans otel-costs priced (``cost.status=priced``), duplicates and aggregates excluded."""
    return [s for s in spans if (s.attributes or {}).get(conv.COST_STATUS) == conv.STATUS_PRICED]


def by_agent_table(pipeline: InMemoryPipeline, tmp_path: Path) -> str:
    """The by-agent table ``otel-costs tree --by-agent`` prints over the pipeline's spans."""
    path = tmp_path / "spans.jsonl"
    exporter = OtlpJsonFileExporter(path)
    exporter.export(pipeline.spans())
    exporter.shutdown()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["tree", str(path), "--by-agent"]) == 0
    text = out.getvalue()
    return text[text.rindex("agent ") :].rstrip() if "agent " in text else text


def table_rows(table: str) -> dict[str, tuple[int, str]]:
    """``agent -> (calls, cost text)`` from a printed by-agent table."""
    rows: dict[str, tuple[int, str]] = {}
    for line in table.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            rows[" ".join(parts[:-3])] = (int(parts[-3]), parts[-2])
    return rows


def check_run(
    pipeline: InMemoryPipeline,
    fake: FakeLLMProvider,
    agent_of: Callable[[RecordedRequest], str],
    tmp_path: Path,
) -> str:
    """Assert the issue's three properties for one run; return the CLI's by-agent table.

    ``agent_of`` says which agent made each recorded request (from its instructions).
    """
    spans = pipeline.spans()
    book = PriceBook()
    priced = priced_spans(spans)
    requests = [r for r in fake.requests if r.method == "POST"]
    names = [(s.name, dict(s.attributes or {}).get(conv.COST_STATUS)) for s in spans]
    # Every model call priced exactly once.
    assert len(priced) == len(requests), f"{len(priced)} priced spans for {len(requests)} calls: {names}"
    expected = sorted(request_nanos(r, book) for r in requests)
    assert sorted(int((s.attributes or {})[conv.COST_DIRECT_NANOS]) for s in priced) == expected
    # The by-agent split: each call's agent on its exported span, and the CLI's table agrees.
    wanted: Counter[tuple[str, int]] = Counter((agent_of(r), request_nanos(r, book)) for r in requests)
    got: Counter[tuple[str, int]] = Counter(
        (str((s.attributes or {}).get(conv.AGENT_NAME)), int((s.attributes or {})[conv.COST_DIRECT_NANOS]))
        for s in priced
    )
    assert got == wanted, f"by agent: {got} != {wanted}"
    table = by_agent_table(pipeline, tmp_path)
    rows = table_rows(table)
    per_agent: Counter[str] = Counter(agent_of(r) for r in requests)
    assert {a: c for a, (c, _) in rows.items()} == dict(per_agent), table
    # One root per run, whose total is exactly the sum of its calls.
    ids = {s.context.span_id for s in spans if s.context}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert len(roots) == 1, f"roots: {[r.name for r in roots]}"
    assert int((roots[0].attributes or {}).get(conv.COST_TOTAL_NANOS, -1)) == sum(expected), roots[0].name
    return table


def last_user_text(body: Any) -> str:
    """Every string in a request body, joined (to find which agent's instructions it carries)."""
    if isinstance(body, str):
        return body
    if isinstance(body, Mapping):
        return " ".join(last_user_text(v) for v in body.values())
    if isinstance(body, list):
        return " ".join(last_user_text(v) for v in body)
    return ""


#: The openai SDK classes whose methods the openai instrumentations patch (module, class names).
OPENAI_SDK_CLASSES = (
    ("openai.resources.chat.completions", ("Completions", "AsyncCompletions")),
    ("openai.resources.responses", ("Responses", "AsyncResponses")),
)


def unwrap_openai_sdk() -> list[str]:
    """Remove the wrapt patches an ``uninstrument()`` left on the openai SDK; the names it removed.

    OpenLLMetry's openai instrumentation leaves some behind, which would send the next test's
    spans to a pipeline already shut down (the same as ``tests/instrumentations``' helper does).
    """
    removed: list[str] = []
    for module_name, class_names in OPENAI_SDK_CLASSES:
        module = importlib.import_module(module_name)
        for class_name in class_names:
            cls = getattr(module, class_name)
            for name, value in list(vars(cls).items()):
                while isinstance(value, wrapt.FunctionWrapper):
                    value = value.__wrapped__
                    setattr(cls, name, value)
                    removed.append(f"{class_name}.{name}")
    return removed
