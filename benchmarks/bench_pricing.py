"""PriceBook.price vs genai_prices.calc_price on the same calls, side by side in one run, and
the processor's span path (``PriceBook._cost_attributes``) on LLM spans' attributes.

Run: ``python benchmarks/bench_pricing.py [--rounds N]``. Prints µs per call for both, the
speedup ratio, µs per span for the span path, and checks that every total is the identical
``Decimal`` and every span's nanos are ``price()``'s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import genai_prices

from otel_costs._money import to_nanos
from otel_costs.pricing import LlmCall, PriceBook, TokenUsage, read_usage

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: A mix like a real agent workload: the big providers, cache reads/writes, reasoning, a tiered model.
CALLS: list[LlmCall] = [
    LlmCall("gpt-4o", "openai", None, TokenUsage(1500, 500)),
    LlmCall("gpt-4o-mini", "openai", None, TokenUsage(12_000, 800, cache_read_tokens=8_000)),
    LlmCall("o3", "openai", None, TokenUsage(3_000, 4_000, reasoning_tokens=3_200)),
    LlmCall("claude-sonnet-4-5", "anthropic", None, TokenUsage(40_000, 1_200, 30_000, 5_000)),
    LlmCall("claude-3-5-haiku-latest", "anthropic", None, TokenUsage(2_000, 300)),
    LlmCall("gemini-2.5-pro", "google", None, TokenUsage(250_000, 2_000, 100_000)),
    LlmCall("gemini-2.5-flash", "gcp.gemini", None, TokenUsage(5_000, 700)),
    LlmCall("mistral-large-latest", "mistral_ai", None, TokenUsage(4_000, 600)),
    LlmCall("deepseek-chat", "deepseek", None, TokenUsage(9_000, 900, 4_000)),
    LlmCall("grok-3", "x_ai", None, TokenUsage(3_000, 400)),
]

GENAI_PROVIDER = {"gcp.gemini": "google", "mistral_ai": "mistral", "x_ai": "x-ai"}
AT_NS = int(AT.timestamp()) * 10**9


def _genai_usage(usage: TokenUsage) -> genai_prices.Usage:
    """The genai-prices Usage of the same five counts."""
    return genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )


def _span_attributes(call: LlmCall) -> dict[str, object]:
    """The attributes an OpenTelemetry GenAI instrumentation puts on the span of ``call``."""
    usage = call.usage
    attributes: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": call.model,
        "gen_ai.response.model": call.model,
        "gen_ai.provider.name": call.provider,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.response.id": "resp_1",
        "gen_ai.response.finish_reasons": ("stop",),
    }
    if usage.cache_read_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    return attributes


def _time_per_call(fn: Callable[[], object], loops: int, rounds: int) -> float:
    """Best-of-rounds mean time of ``fn`` in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - start) / loops * 1e6)
    return min(samples)


def main() -> int:
    """Run the comparison and print the table; exit 1 if any total differs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (best is kept)")
    parser.add_argument("--loops", type=int, default=300, help="calls per round and per input")
    args = parser.parse_args()

    book = PriceBook()
    genai_usages = [_genai_usage(call.usage) for call in CALLS]
    genai_providers = [GENAI_PROVIDER.get(call.provider or "", call.provider) for call in CALLS]

    mismatches = 0
    for call, usage, provider in zip(CALLS, genai_usages, genai_providers, strict=True):
        ours = book.price(call, at=AT)
        ref = genai_prices.calc_price(
            usage, call.model or "", provider_id=provider, genai_request_timestamp=AT
        )
        if ours.total != ref.total_price or ours.total.as_tuple() != ref.total_price.as_tuple():
            mismatches += 1
            print(f"MISMATCH {call.model}: {ours.total} != {ref.total_price}")

    spans = [_span_attributes(call) for call in CALLS]
    plain_span = spans[0]  # gpt-4o, no cache or reasoning counts: the common case
    for call, span in zip(CALLS, spans, strict=True):
        costed = book._cost_attributes(span, AT_NS)
        if costed is None or costed["cost.direct_nanos"] != to_nanos(book.price(call, at=AT).total):
            mismatches += 1
            print(f"SPAN MISMATCH {call.model}: {costed}")

    def spans_all() -> None:
        for span in spans:
            book._cost_attributes(span, AT_NS)

    def ours_all() -> None:
        for call in CALLS:
            book.price(call, at=AT)

    def genai_all() -> None:
        for call, usage, provider in zip(CALLS, genai_usages, genai_providers, strict=True):
            genai_prices.calc_price(usage, call.model or "", provider_id=provider, genai_request_timestamp=AT)

    ratios = []
    ours_us = genai_us = 0.0
    for _ in range(args.rounds):
        # Interleaved, so both see the same machine state.
        ours_us = _time_per_call(ours_all, args.loops, 1) / len(CALLS)
        genai_us = _time_per_call(genai_all, args.loops // 10 or 1, 1) / len(CALLS)
        ratios.append(genai_us / ours_us)

    plain = {f"http.attr{i}": i for i in range(12)}
    read_ns = _time_per_call(lambda: read_usage(plain), 20_000, args.rounds) * 1000
    span_us = _time_per_call(spans_all, args.loops * 10, args.rounds) / len(spans)
    plain_span_us = _time_per_call(lambda: book._cost_attributes(plain_span, AT_NS), 30_000, args.rounds)

    print(f"calls priced per round: {len(CALLS)} models, identical totals and span nanos: {mismatches == 0}")
    print(f"PriceBook.price          {ours_us:8.2f} us/call (last round)")
    print(f"genai_prices.calc_price  {genai_us:8.2f} us/call (last round)")
    print(f"speedup (median of {args.rounds} interleaved rounds): {statistics.median(ratios):.1f}x")
    print(f"read_usage on a span without LLM attributes: {read_ns:.0f} ns")
    print(f"_cost_attributes, the {len(spans)} spans' mix  {span_us:8.2f} us/span (best of {args.rounds})")
    print(f"_cost_attributes, gpt-4o span   {plain_span_us:8.2f} us/span (best of {args.rounds})")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
