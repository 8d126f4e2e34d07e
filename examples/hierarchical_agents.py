"""Three nested agents, priced and rolled up, written to the embedded default (a local file).

    python examples/hierarchical_agents.py                 # fixed example prices: root total $0.03325
    python examples/hierarchical_agents.py --real-prices   # genai-prices' current prices
    otel-costs tree otel-costs-traces.jsonl

The LLM-call spans here are written the way an instrumentation writes them (OTel GenAI
semantic conventions), so the example needs no provider and no network.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import otel_costs
import otel_costs.cli
from otel_costs import conventions as conv

#: USD per 1M tokens.
EXAMPLE_PRICES = {"gpt-5.2": {"input": 3.0, "output": 15.0}, "gemini-3-pro": {"input": 2.5, "output": 10.0}}


def llm_call(
    provider: TracerProvider, model: str, system: str, input_tokens: int, output_tokens: int
) -> None:
    """One chat call as an OTel GenAI instrumentation records it."""
    tracer = trace.get_tracer("example", tracer_provider=provider)
    with tracer.start_as_current_span(
        f"chat {model}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            conv.GEN_AI_OPERATION_NAME: "chat",
            conv.GEN_AI_PROVIDER_NAME: system,
            conv.GEN_AI_REQUEST_MODEL: model,
            conv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            conv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        },
    ):
        pass


def run(provider: TracerProvider, gemini_model: str = "gemini-3-pro") -> None:
    """coordinator -> code_agent -> syntax_analyzer, one LLM call each."""
    with (
        otel_costs.workflow("code-review", user_id="u-42", team_id="platform", tracer_provider=provider),
        otel_costs.agent("coordinator", tracer_provider=provider),
    ):
        llm_call(provider, "gpt-5.2", "openai", 1500, 500)
        with otel_costs.agent("code_agent", tracer_provider=provider):
            llm_call(provider, "gpt-5.2", "openai", 2000, 800)
            with otel_costs.agent("syntax_analyzer", tracer_provider=provider):
                llm_call(provider, gemini_model, "gcp.gemini", 500, 200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real-prices", action="store_true", help="price with genai-prices instead")
    parser.add_argument("--file", default=os.environ.get("OTEL_COSTS_FILE", "otel-costs-traces.jsonl"))
    args = parser.parse_args(argv)

    path = Path(args.file)
    path.unlink(missing_ok=True)
    provider = otel_costs.configure(
        service_name="hierarchical-agents",
        prices=None if args.real_prices else EXAMPLE_PRICES,
        file_path=path,
        set_global=False,
    )
    # genai-prices knows Gemini 3 Pro by the id its API returns; the fixed table uses the short name.
    run(provider, "gemini-3-pro-preview" if args.real_prices else "gemini-3-pro")
    provider.shutdown()  # flushes the rollup and the file

    otel_costs.cli.main(["tree", str(path)])  # what `otel-costs tree FILE` prints
    print(f"spans written to {path}; see them again with: otel-costs tree {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
