"""Test helpers shipped as public API: an in-memory cost pipeline, a fixed price table, a fake LLM.

Use them to test your own agents' attribution and costs without any infrastructure. For code
that calls an LLM API, ``FakeLLMProvider`` is a local server speaking the OpenAI, Anthropic and
Gemini wire formats (streaming included) with deterministic usage; ``ManualClock`` drives budget
windows in tests::

    from otel_costs.testing import InMemoryPipeline

    def test_triage_costs() -> None:
        with InMemoryPipeline() as pipeline:
            run_triage(tracer_provider=pipeline.tracer_provider)
        assert pipeline.total("invoke_workflow triage") == Decimal("0.012")
"""

from otel_costs.budgets._windows import ManualClock
from otel_costs.report._audit import assert_attribution_complete
from otel_costs.testing._fake_model import FakeReply, FakeToolCall, FakeUsage, Misbehaviour, RecordedRequest
from otel_costs.testing._fake_provider import FakeLLMProvider
from otel_costs.testing._pipeline import FIXED_PRICES, InMemoryPipeline, fixed_price_book

__all__ = [
    "FIXED_PRICES",
    "FakeLLMProvider",
    "FakeReply",
    "FakeToolCall",
    "FakeUsage",
    "InMemoryPipeline",
    "ManualClock",
    "Misbehaviour",
    "RecordedRequest",
    "assert_attribution_complete",
    "fixed_price_book",
]

from otel_costs._public import publish as _publish

_publish(
    globals(), [n for n in __all__ if n != "assert_attribution_complete"], __name__
)  # that one is report's
