"""Regenerate the shared golden cases (tests/golden/cases/*.json and tests/golden/prices.json).

    .venv/bin/python tests/golden/regenerate.py          # rewrite the files
    .venv/bin/python tests/golden/regenerate.py --check  # exit 1 if a file would change

The expected attributes come from the current Python implementation: each span that carries
usage but no ``cost.status`` goes through ``CostSpanProcessor`` (``PriceBook`` prices it), then
the whole trace is rolled up with ``otel_costs.rollup._tree.rollup_columns`` and ``write_rollup``
(the engine of the in-process exporter) at ``scope = trace``, with the Collector processor's
rules: rollup figures an earlier rollup wrote are replaced, ``cost.currency`` is not written twice,
a late part flags every span.
Prices come from genai-prices' bundled data restricted to the providers in ``PROVIDERS``
(``set_custom_snapshot``), plus the overrides in ``OVERRIDES``; ``prices.json`` holds the same
data in the Collector processor's price file format (collector/costrollupprocessor/README.md),
so the Go processor prices from exactly what Python priced from; it is written by the library's
exporter (``otel_costs.pricing._export.price_document``, what ``otel-costs prices export``
writes). The format of the case files is in README.md next to this script.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from genai_prices import data_snapshot
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from otel_costs import conventions as conv
from otel_costs.pipeline import CostSpanProcessor
from otel_costs.pricing import PriceBook
from otel_costs.pricing._export import price_document
from otel_costs.rollup._agents import inherited_attributes
from otel_costs.rollup._tree import own_cost, rollup_columns, write_rollup

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
PRICES_FILE = HERE / "prices.json"

#: genai-prices providers exported to prices.json (and the only ones Python prices from here).
PROVIDERS = ("openai", "anthropic", "google", "azure", "deepseek", "perplexity", "x-ai")

#: User overrides (the PriceBook's schema, docs/pricing.md), exported as prices.json "overrides".
OVERRIDES: dict[str, dict[str, Any]] = {
    "acme-large": {
        "input": "2.5",
        "cached_input": "0.25",
        "cache_write": "3.125",
        "output": "10",
        "tiers": [
            {"above": 128000, "input": "5", "cached_input": "0.5", "cache_write": "6.25", "output": "15"}
        ],
        "changes": [
            {
                "start_date": dt.date(2026, 6, 1),
                "input": "2",
                "cached_input": "0.2",
                "cache_write": "2.5",
                "output": "8",
                "tiers": [
                    {"above": 128000, "input": "4", "cached_input": "0.4", "cache_write": "5", "output": "12"}
                ],
            }
        ],
    },
    "house-model": {"provider": "openai", "input": "0.3", "output": "1.2"},
}

TRACE_A = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_780_000_000_000_000_000  # 2026-05-28T20:26:40Z (before acme-large's 2026-06-01 change)
T_JUNE = 1_782_000_000_000_000_000  # 2026-06-21
T_OFFPEAK = 1_780_020_000_000_000_000  # 2026-05-29 02:00:00Z (deepseek off-peak)


def sid(n: int) -> str:
    return f"{n:016x}"


# --- the cases ------------------------------------------------------------------------------------


def span(
    n: int | str,
    parent: int | str | None,
    attrs: dict[str, Any] | None = None,
    *,
    name: str = "op",
    kind: int = 1,
    remote: bool = False,
    start: int = T0,
) -> dict[str, Any]:
    """One span in a compact form (ids as ints or hex)."""
    return {
        "id": sid(n) if isinstance(n, int) else n,
        "parent": (sid(parent) if isinstance(parent, int) else parent) if parent is not None else None,
        "attrs": attrs or {},
        "name": name,
        "kind": kind,
        "remote": remote,
        "start": start,
    }


def llm(model: str, i: object, o: object, provider: Any = "openai", **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if provider is not None:
        attrs["gen_ai.provider.name"] = provider
    attrs["gen_ai.usage.input_tokens"] = i
    attrs["gen_ai.usage.output_tokens"] = o
    attrs.update(extra)
    return attrs


def priced_in_process(nanos: int, **extra: Any) -> dict[str, Any]:
    """Attributes as an in-process CostSpanProcessor + CostRollupExporter left them."""
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
        "cost.currency": "USD",
        "cost.status": "priced",
        "cost.direct": nanos / 1e9,
        "cost.direct_nanos": nanos,
        "cost.children": 0.0,
        "cost.children_nanos": 0,
        "cost.total": nanos / 1e9,
        "cost.total_nanos": nanos,
        "cost.rollup.scope": "process",
    }
    attrs.update(extra)
    return attrs


def cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def case(
        name: str, description: str, services: dict[str, list[dict[str, Any]]], partial: str | None = None
    ) -> None:
        out.append(
            {"name": name, "description": description, "services": services, "partial_reason": partial}
        )

    # Deep chain: 60 levels, an LLM call every 10th level.
    chain = [span(1, None, {"gen_ai.operation.name": "invoke_workflow"}, name="workflow")]
    for k in range(2, 61):
        attrs = llm("gpt-4o", 1000 * k, 100 * k) if k % 10 == 0 else {}
        chain.append(span(k, k - 1, attrs, name=f"step {k}"))
    case("deep_chain", "60-deep chain, LLM calls at depths 10..60", {"svc-a": chain})

    # Fan-out: one root, 40 children across providers, cache reads/writes, tiers.
    fan = [span(1, None, {}, name="root")]
    for k in range(2, 42):
        if k % 4 == 0:
            attrs = llm(
                "claude-sonnet-4-5",
                3000 + k,
                200,
                provider="anthropic",
                **{
                    "gen_ai.usage.cache_read.input_tokens": 1000,
                    "gen_ai.usage.cache_creation.input_tokens": 500,
                },
            )
        elif k % 4 == 1:
            attrs = llm("gemini-2.5-pro", 150_000 + 2000 * k, 300, provider="gcp.gemini")
        elif k % 4 == 2:
            attrs = llm("gpt-4o-mini", 500 + k, 50, **{"gen_ai.usage.cache_read.input_tokens": 256})
        else:
            attrs = {}
        fan.append(span(k, 1, attrs, name=f"call {k}"))
    case(
        "fan_out",
        "a root with 40 children: OpenAI, Anthropic with cache read/write, Gemini across its 200k tier",
        {"svc-a": fan},
    )

    case(
        "cycle",
        "parent links loop (3 -> 4 -> 5 -> 3) beside a normal root",
        {
            "svc-a": [
                span(1, None, {}),
                span(2, 1, llm("gpt-4o", 100, 10)),
                span(3, 5, llm("gpt-4o", 200, 20)),
                span(4, 3, llm("gpt-4o", 300, 30)),
                span(5, 4, {}),
                span(6, 4, llm("gpt-4o", 400, 40)),
            ]
        },
    )
    case(
        "self_parent",
        "a span that is its own parent",
        {
            "svc-a": [
                span(1, None, {}),
                span(2, 2, llm("gpt-4o", 100, 10)),
                span(3, 2, llm("gpt-4o", 50, 5)),
            ]
        },
    )
    case(
        "duplicate_span_ids",
        "two spans with one id: the second is rolled up alone and flagged",
        {
            "svc-a": [
                span(1, None, {}),
                span(2, 1, llm("gpt-4o", 100, 10)),
                span(2, 1, llm("gpt-4o", 7000, 700)),
                span(3, 2, llm("gpt-4o-mini", 10, 1)),
            ]
        },
    )

    # Two services: B's spans were priced and rolled up in-process (scope=process, remote parent).
    case(
        "two_services_remote_parent",
        "service A calls service B over HTTP; B priced in-process",
        {
            "orchestrator": [
                span(1, None, {"gen_ai.operation.name": "invoke_workflow"}, name="workflow"),
                span(2, 1, llm("gpt-4o", 1200, 300), name="plan"),
                span(
                    3,
                    1,
                    {"http.request.method": "POST", "server.address": "subagent.internal"},
                    name="POST /run",
                    kind=3,
                ),
            ],
            "subagent": [
                span(
                    4,
                    3,
                    {
                        "cost.children": 0.0033,
                        "cost.children_nanos": 3_300_000,
                        "cost.total": 0.0033,
                        "cost.total_nanos": 3_300_000,
                        "cost.currency": "USD",
                        "cost.rollup.scope": "process",
                        "cost.rollup.remote_parent": True,
                    },
                    name="POST /run",
                    kind=2,
                    remote=True,
                ),
                span(5, 4, priced_in_process(2_000_000), name="chat"),
                span(6, 4, priced_in_process(1_300_000), name="chat"),
            ],
        },
    )
    case(
        "remote_parent_missing",
        "only service B arrived: its top span's parent is remote",
        {
            "subagent": [
                span(4, 3, {}, kind=2, remote=True),
                span(5, 4, llm("gpt-4o", 100, 10)),
            ]
        },
    )
    case(
        "orphan",
        "a parent that never arrived (not remote)",
        {
            "svc-a": [
                span(1, None, {}),
                span(7, 99, llm("gpt-4o", 100, 10)),
                span(8, 7, llm("gpt-4o", 10, 1)),
            ]
        },
    )
    case(
        "unpriced_and_invalid",
        "unknown model, missing usage, invalid counts, aggregate usage",
        {
            "svc-a": [
                span(
                    1,
                    None,
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.usage.input_tokens": 999,
                        "gen_ai.usage.output_tokens": 9,
                    },
                ),
                span(2, 1, llm("no-such-model-xyz", 100, 10)),
                span(3, 1, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}),
                span(4, 1, llm("gpt-4o", 100, 10, **{"gen_ai.usage.cache_read.input_tokens": 500})),
                span(5, 1, llm("gpt-4o", float("nan"), 10)),
                span(6, 1, llm("gpt-4o", "120", 10)),
                span(7, 1, llm("gpt-4o", True, 10)),
                span(8, 1, llm("gpt-4o", -5, 10)),
                span(9, 1, llm("gpt-4o", 12.5, 10)),
                span(10, 1, llm("gpt-4o", 100, 20_000_000_000)),
                span(11, 1, {"gen_ai.usage.total_tokens": 50}),
                span(12, 1, llm("gpt-4o", 100.0, 10)),
                span(13, 1, llm("gpt-4o", "12abc", 10)),
                span(14, 1, llm("ollama-thing", 100, 10, provider="ollama")),
                span(15, 1, llm("gpt-4o", 100, 10, provider=None, **{"server.address": "localhost"})),
            ]
        },
    )
    case(
        "usage_not_whole",
        "one-sided usage is partial, all-zero usage unpriced, embeddings need no output",
        {
            "svc-a": [
                span(1, None, {"gen_ai.operation.name": "invoke_workflow"}),
                span(2, 1, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                            "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 1200}),
                span(3, 1, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                            "gen_ai.provider.name": "openai", "gen_ai.usage.output_tokens": 300}),
                span(4, 1, llm("gpt-4o", 0, 0)),
                span(5, 1, {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                            "llm.provider": "openai", "llm.token_count.prompt": 0,
                            "llm.token_count.completion": 0}),
                span(6, 1, {"gen_ai.operation.name": "embeddings",
                            "gen_ai.request.model": "text-embedding-3-small",
                            "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 4000}),
                span(7, 1, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "no-such-model-xyz",
                            "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 10}),
                span(8, 1, llm("gpt-4o", 100, 10)),
            ]
        },
    )  # fmt: skip
    case(
        "duplicate_calls",
        "two instrumentations traced one call (same gen_ai.response.id)",
        {
            "svc-a": [
                span(1, None, {}),
                span(
                    2,
                    1,
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": "gpt-4o",
                        "llm.provider": "openai",
                        "llm.token_count.prompt": 800,
                        "llm.token_count.completion": 80,
                        "gen_ai.response.id": "chatcmpl-1",
                    },
                ),
                span(3, 2, llm("gpt-4o", 800, 80, **{"gen_ai.response.id": "chatcmpl-1"})),
                span(4, 1, llm("gpt-4o", 10, 1, **{"gen_ai.response.id": "chatcmpl-2"})),
            ]
        },
    )
    case(
        "instrumentation_names",
        "usage in each instrumentation's attribute names",
        {
            "svc-a": [
                span(1, None, {}),
                span(
                    2,
                    1,
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": "claude-sonnet-4-5",
                        "llm.provider": "anthropic",
                        "llm.token_count.prompt": 5000,
                        "llm.token_count.completion": 400,
                        "llm.token_count.prompt_details.cache_read": 3000,
                        "llm.token_count.prompt_details.cache_write": 1000,
                    },
                ),
                span(
                    3,
                    1,
                    {
                        "gen_ai.system": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.response.model": "gpt-4o-2024-08-06",
                        "gen_ai.usage.prompt_tokens": 2000,
                        "gen_ai.usage.completion_tokens": 100,
                        "gen_ai.usage.cache_read_input_tokens": 1024,
                        "traceloop.span.kind": "llm",
                    },
                ),
                span(
                    4,
                    1,
                    {
                        "gen_ai.system": "anthropic",
                        "gen_ai.request.model": "claude-haiku-4-5",
                        "gen_ai.usage.input_tokens": 900,
                        "gen_ai.usage.output_tokens": 90,
                        "gen_ai.usage.details.cache_read_tokens": 100,
                        "gen_ai.usage.details.cache_write_tokens": 200,
                    },
                ),
                span(
                    5,
                    1,
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "claude-sonnet-4-5",
                        "server.address": "api.anthropic.com",
                        "gen_ai.usage.input_tokens": 1500,
                        "gen_ai.usage.output_tokens": 150,
                        "gen_ai.usage.cache_write.input_tokens": 500,
                    },
                ),
                span(6, 1, llm("openai/gpt-4o-mini", 1000, 100, provider=None)),
                span(7, 1, llm("gpt-4o", 1000, 100, provider="azure.ai.openai")),
                span(8, 1, llm("deepseek-chat", 10_000, 1000, provider="deepseek"), start=T_OFFPEAK),
                span(
                    9,
                    1,
                    llm(
                        "sonar-reasoning-pro",
                        1000,
                        800,
                        provider="perplexity",
                        **{"gen_ai.usage.reasoning.output_tokens": 300},
                    ),
                ),
                span(10, 1, llm("grok-4", 3000, 300, provider="x_ai")),
                span(
                    11,
                    1,
                    {
                        # Input only: an embeddings call (a chat call reporting input only is partial).
                        "gen_ai.operation.name": "embeddings",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 10,
                    },
                ),
            ]
        },
    )
    case(
        "overrides_tiers_dates",
        "user overrides: cached input, cache writes, a tier and a dated change",
        {
            "svc-a": [
                span(1, None, {}),
                span(
                    2,
                    1,
                    llm(
                        "acme-large",
                        100_000,
                        1000,
                        provider="acme",
                        **{
                            "gen_ai.usage.cache_read.input_tokens": 40_000,
                            "gen_ai.usage.cache_creation.input_tokens": 10_000,
                        },
                    ),
                ),
                span(
                    3,
                    1,
                    llm(
                        "acme-large",
                        200_000,
                        1000,
                        provider="acme",
                        **{"gen_ai.usage.cache_read.input_tokens": 40_000},
                    ),
                ),
                span(4, 1, llm("ACME-Large", 200_000, 1000, provider="acme"), start=T_JUNE),
                span(5, 1, llm("acme-large", 1000, 10, provider="acme"), start=T_JUNE),
                span(6, 1, llm("house-model", 1000, 100, provider="openai")),
                span(7, 1, llm("house-model", 1000, 100, provider="anthropic")),
            ]
        },
    )
    case(
        "hostile_cost_values",
        "cost figures already on spans, some unusable",
        {
            "svc-a": [
                span(1, None, {}),
                span(2, 1, {"cost.status": "priced", "cost.direct": 0.0125}),
                span(3, 1, {"cost.status": "priced", "cost.direct_nanos": "12"}),
                span(4, 1, {"cost.status": "priced", "cost.direct_nanos": -40}),
                span(5, 1, {"cost.status": "priced", "cost.direct": float("nan")}),
                span(6, 1, {"cost.status": "priced", "cost.direct": -1.0}),
                span(7, 1, {"cost.status": "priced", "cost.direct": 1e300}),
                span(8, 1, {"cost.status": "priced", "cost.direct_nanos": 9_000_000_000_000_000_000}),
                span(9, 1, {"cost.status": "aggregate", "cost.status_reason": "x"}),
                span(10, 1, {"cost.status": "unpriced", "cost.status_reason": "no price"}),
                span(11, 1, {"cost.direct_nanos": 5}),
                span(12, 1, {"cost.status": "partial", "cost.direct_nanos": 77}),
            ]
        },
    )
    case(
        "late_part",
        "spans that arrived after their trace went out: every span flagged late",
        {
            "svc-a": [
                span(7, 3, llm("gpt-4o", 100, 10)),
                span(8, 7, llm("gpt-4o-mini", 100, 10)),
                span(9, 3, {}),
            ]
        },
        partial="late",
    )
    case(
        "no_cost_at_all",
        "a trace without any usage: nothing is written",
        {
            "svc-a": [
                span(1, None, {}),
                span(2, 1, {"http.request.method": "GET"}),
            ]
        },
    )
    # Agent from the tree (docs/conventions.md): each convention's agent/workflow spans above calls.
    oi_meta = '{"lc_agent_name": "writer", "langgraph_node": "write"}'
    case(
        "agent_from_tree_frameworks",
        "agent, parent agent and workflow from the tree: OTel invoke_agent (AutoGen, CrewAI), OpenLLMetry "
        "workflow/task (LangChain), OpenInference AGENT and metadata, own names kept, nothing replaced",
        {
            "svc-a": [
                span(1, None, {"gen_ai.operation.name": "invoke_workflow", "workflow.name": "support"}),
                span(
                    2,
                    1,
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "supervisor",
                        "gen_ai.agent.id": "sup-1",
                    },
                ),
                span(3, 2, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"}),
                span(4, 3, {"gen_ai.operation.name": "execute_tool"}),
                span(5, 4, llm("gpt-4o", 100, 10)),
                span(6, 3, llm("gpt-4o", 200, 20, **{"gen_ai.agent.name": "researcher"})),
                span(7, 2, {"gen_ai.operation.name": "handoff"}),
                span(8, 7, llm("gpt-4o", 300, 30)),
                span(9, None, {"traceloop.span.kind": "workflow", "traceloop.entity.name": "LangGraph"}),
                span(10, 9, {"gen_ai.operation.name": "execute_task", "gen_ai.task.name": "research_node"}),
                span(11, 10, llm("gpt-4o", 400, 40)),
                span(
                    12,
                    10,
                    llm(
                        "gpt-4o",
                        500,
                        50,
                        **{"traceloop.association.properties.lc_agent_name": "lc_researcher"},
                    ),
                ),
                span(
                    13,
                    None,
                    {
                        "openinference.span.kind": "AGENT",
                        "agent.name": "writer_agent",
                        "graph.node.id": "writer",
                        "graph.node.parent_id": "boss",
                    },
                ),
                span(
                    14,
                    13,
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": "gpt-4o",
                        "llm.provider": "openai",
                        "llm.token_count.prompt": 600,
                        "llm.token_count.completion": 60,
                    },
                ),
                span(
                    15,
                    13,
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": "gpt-4o",
                        "llm.provider": "openai",
                        "llm.token_count.prompt": 700,
                        "llm.token_count.completion": 70,
                        "metadata": oi_meta,
                    },
                ),
                span(
                    16,
                    2,
                    llm(
                        "gpt-4o",
                        800,
                        80,
                        **{"agent.parent_id": "set-by-app", "workflow.name": "own-workflow"},
                    ),
                ),
                span(17, 2, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}),
            ]
        },
    )
    # An agent span's own parent marker wins over the agent span above it; with none above, the
    # parent the agent's spans name elsewhere in the trace (an instrumentation's agent spans beside
    # the integration's), unless they name two.
    case(
        "agent_from_tree_own_parent",
        "an agent span's own agent.parent_id / graph.node.parent_id wins over the next agent span above "
        "(a handed-off agent under the runner's span); with no parent above, the one parent other spans "
        "of that agent name in the trace; two different ones name none",
        {
            "svc-a": [
                span(1, None, {"gen_ai.operation.name": "invoke_workflow", "workflow.name": "support"}),
                span(2, 1, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "runner"}),
                span(
                    3,
                    2,
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "billing",
                        "agent.parent_id": "triage",
                    },
                ),
                span(4, 3, llm("gpt-4o", 100, 10)),
                span(
                    5,
                    2,
                    {
                        "openinference.span.kind": "AGENT",
                        "agent.name": "writer",
                        "graph.node.id": "writer",
                        "graph.node.parent_id": "boss",
                    },
                ),
                span(6, 5, llm("gpt-4o", 200, 20)),
                # Beside them, an instrumentation's own agent spans, directly under its workflow.
                span(7, 1, {"traceloop.span.kind": "workflow"}),
                span(8, 7, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"}),
                span(9, 8, llm("gpt-4o", 300, 30)),
                span(
                    10,
                    2,
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "researcher",
                        "agent.parent_id": "triage",
                    },
                ),
                span(11, 7, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}),
                span(12, 11, llm("gpt-4o", 400, 40)),
                span(
                    13,
                    2,
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "helper",
                        "agent.parent_id": "a",
                    },
                ),
                span(
                    14,
                    2,
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "helper",
                        "agent.parent_id": "b",
                    },
                ),
            ]
        },
    )
    return out


# --- OTLP/JSON ------------------------------------------------------------------------------------


def any_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        if v != v:
            return {"doubleValue": "NaN"}
        if v in (float("inf"), float("-inf")):
            return {"doubleValue": "Infinity" if v > 0 else "-Infinity"}
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    raise TypeError(type(v))


def from_any(v: dict[str, Any]) -> Any:
    ((key, value),) = v.items()
    if key == "intValue":
        return int(value)
    if key == "doubleValue":
        return float(value)
    return value


def otlp_span(s: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": TRACE_A,
        "spanId": s["id"],
        "name": s["name"],
        "kind": s["kind"],
        "startTimeUnixNano": str(s["start"]),
        "endTimeUnixNano": str(s["start"] + 1_000_000),
        "attributes": [{"key": k, "value": any_value(v)} for k, v in s["attrs"].items()],
    }
    if s["parent"] is not None:
        out["parentSpanId"] = s["parent"]
    if s["remote"]:
        out["flags"] = 0x100 | 0x200 | 1
    return out


def to_otlp(services: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": name}}]},
            "scopeSpans": [{"scope": {"name": "golden"}, "spans": [otlp_span(s) for s in spans]}],
        }
        for name, spans in services.items()
    ]


# --- Python reference ----------------------------------------------------------------------------


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def price_spans(
    resource_spans: list[dict[str, Any]], processor: CostSpanProcessor, collect: _Collect
) -> None:
    """Price every span without cost.status through CostSpanProcessor, in file order."""
    for rs in resource_spans:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                attrs = {a["key"]: from_any(a["value"]) for a in s["attributes"]}
                if "cost.status" in attrs:
                    continue
                ctx = SpanContext(int(TRACE_A, 16), int(s["spanId"], 16), False, TraceFlags(1))
                readable = ReadableSpan(
                    name=s["name"],
                    context=ctx,
                    attributes=attrs,
                    kind=SpanKind.INTERNAL,
                    start_time=int(s["startTimeUnixNano"]),
                    end_time=int(s["endTimeUnixNano"]),
                )
                collect.spans.clear()
                processor.on_end(readable)
                new = dict(collect.spans[0].attributes or {})
                s["attributes"] = [{"key": k, "value": any_value(v)} for k, v in new.items()]


#: Rollup attributes an earlier rollup (in-process, scope=process) wrote: the trace-wide rollup
#: replaces them; cost.direct*, cost.status and the pricing attributes stay.
REPLACED_KEYS = frozenset(
    {
        conv.COST_CHILDREN,
        conv.COST_TOTAL,
        conv.COST_CHILDREN_NANOS,
        conv.COST_TOTAL_NANOS,
        conv.COST_ROLLUP_SCOPE,
        conv.COST_ROLLUP_UNPRICED,
        conv.COST_ROLLUP_REMOTE_PARENT,
        conv.COST_ROLLUP_ORPHAN,
        conv.COST_ROLLUP_PARTIAL,
        conv.COST_ROLLUP_PARTIAL_REASON,
    }
)
_READ_KEYS = (conv.COST_STATUS, conv.COST_DIRECT_NANOS, conv.COST_DIRECT)


def json_number(v: Any) -> Any:
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return str(v)
    return v


def trace_rollup(spans: list[dict[str, Any]], partial_reason: str | None) -> list[dict[str, Any]]:
    """Each OTLP/JSON span's attributes after the trace-wide rollup, in order."""
    attrs = [{a["key"]: from_any(a["value"]) for a in s["attributes"]} for s in spans]
    span_ids = [bytes.fromhex(s["spanId"]) for s in spans]
    parent_ids = [bytes.fromhex(s.get("parentSpanId", "")) or None for s in spans]
    known = set(span_ids)
    remote = [
        p is not None and p not in known and s.get("flags", 0) & 0x100 != 0 and s.get("flags", 0) & 0x200 != 0
        for s, p in zip(spans, parent_ids, strict=True)
    ]
    direct, billable, unpriced = [0] * len(spans), [False] * len(spans), [0] * len(spans)
    for i, a in enumerate(attrs):
        if any(k in a for k in _READ_KEYS):
            nanos, is_billable, is_unpriced = own_cost({k: a[k] for k in _READ_KEYS if k in a})
            direct[i], billable[i], unpriced[i] = nanos, is_billable, int(is_unpriced)
    columns = rollup_columns(span_ids, parent_ids, remote, direct, billable, unpriced)
    inherited = inherited_attributes(span_ids, parent_ids, attrs)
    out = []
    for i, (children, total, billable_subtree, unpriced_count, root_kind) in enumerate(
        zip(*columns, strict=True)
    ):
        kept = {k: v for k, v in attrs[i].items() if k not in REPLACED_KEYS}
        extra: dict[str, Any] = {}
        write_rollup(extra, children, total, billable_subtree, unpriced_count, root_kind, conv.SCOPE_TRACE)
        if partial_reason is not None:
            extra[conv.COST_ROLLUP_PARTIAL] = True
            extra[conv.COST_ROLLUP_PARTIAL_REASON] = partial_reason
        if conv.COST_CURRENCY in kept:
            extra.pop(conv.COST_CURRENCY, None)  # the pricing already wrote it (always USD)
        kept.update(extra)
        kept.update(inherited.get(i, {}))
        out.append(kept)
    return out


#: The attributes the agent-from-the-tree rule may write (``expected[].agent``).
AGENT_RULE_KEYS = (conv.AGENT_NAME, conv.AGENT_PARENT_ID, conv.WORKFLOW_NAME, conv.AGENT_SOURCE)


def agent_written(span: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the agent rule wrote on ``span`` (its OTLP/JSON input): the keys new or changed in ``after``."""
    before = {a["key"]: from_any(a["value"]) for a in span["attributes"]}
    return {k: after[k] for k in AGENT_RULE_KEYS if k in after and before.get(k) != after[k]}


def expected_for(case: dict[str, Any], book: PriceBook) -> dict[str, Any]:
    resource_spans = to_otlp(case["services"])
    collect = _Collect()
    processor = CostSpanProcessor(collect, price_book=book)
    priced = copy.deepcopy(resource_spans)
    price_spans(priced, processor, collect)
    spans = [s for rs in priced for ss in rs["scopeSpans"] for s in ss["spans"]]
    expected: list[dict[str, Any]] = []
    for s, attrs in zip(spans, trace_rollup(spans, case["partial_reason"]), strict=True):
        cost = {
            k: json_number(v) for k, v in attrs.items() if k.startswith("cost.") or k == "gen_ai.usage.cost"
        }
        expected.append({"span_id": s["spanId"], "attributes": cost, "agent": agent_written(s, attrs)})
    return {
        "name": case["name"],
        "description": case["description"],
        "partial_reason": case["partial_reason"],
        "resourceSpans": resource_spans,
        "expected": expected,
    }


# --- the price file --------------------------------------------------------------------------------


def price_file(book: PriceBook) -> dict[str, Any]:
    """The processor's price file for ``book``: the library's exporter (``otel-costs prices export``)."""
    return price_document(
        book,
        generated_by="tests/golden/regenerate.py (genai-prices bundled data, providers: "
        + ", ".join(PROVIDERS)
        + ")",
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    full = data_snapshot.get_snapshot()
    subset = [p for p in full.providers if p.id in PROVIDERS]
    snapshot = data_snapshot.DataSnapshot(providers=subset, from_auto_update=False)
    data_snapshot.set_custom_snapshot(snapshot)
    book = PriceBook(OVERRIDES)
    files: dict[Path, str] = {PRICES_FILE: json.dumps(price_file(book), indent=1) + "\n"}
    for case in cases():
        files[CASES_DIR / f"{case['name']}.json"] = json.dumps(expected_for(case, book), indent=1) + "\n"
    changed = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in changed:
            print(f"would change: {path.relative_to(HERE)}")
        return 1 if changed else 0
    CASES_DIR.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    print(f"wrote {len(files)} files ({len(changed)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
