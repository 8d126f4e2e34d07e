"""Fixtures of the LangGraph set: the fake provider, and a pipeline per instrumentation.

Every test here starts a real server (the fake provider on 127.0.0.1), so every one is ``slow``.
The instrumentation is chosen per test (``none``, ``openinference``, ``openllmetry``), installed
through its instrumentor's public API and removed again when the test ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_costs import PriceBook, instrument_httpx, uninstrument_httpx
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline

HERE = Path(__file__).parent
INSTRUMENTATIONS = ("none", "openinference", "openllmetry")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts the fake provider: mark them slow."""
    for item in items:
        if item.path.parent == HERE:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _leave_pregel_as_found() -> Iterator[None]:
    """Each test leaves ``Pregel.stream``/``astream`` unwrapped (a ``CostCallbackHandler`` wraps them)."""
    yield
    from otel_costs.integrations.langchain import uninstrument_langchain

    uninstrument_langchain()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeLLMProvider]:
    """The fake provider for the session (starting a server per test would only cost time)."""
    with FakeLLMProvider() as provider:
        yield provider


def _instrumentor(kind: str) -> Any:
    if kind == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        return LangChainInstrumentor()
    if kind == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        return LangchainInstrumentor()
    return None


def _unwrap_openllmetry_langgraph() -> None:
    """Remove the wrappers OpenLLMetry 0.62.4's ``uninstrument()`` leaves in place (a bug of it).

    It leaves ``BaseCallbackManager.__init__`` (so its callback handler, on a shut-down provider,
    stays in every later run and parents its spans) and LangGraph's ``Pregel.stream``/``astream``
    and ``Command.__init__`` wrapped.
    """
    from langchain_core.callbacks import BaseCallbackManager
    from langgraph.pregel import Pregel
    from langgraph.types import Command

    for owner, name in (
        (BaseCallbackManager, "__init__"),
        (Pregel, "stream"),
        (Pregel, "astream"),
        (Command, "__init__"),
    ):
        attribute = inspect.getattr_static(owner, name)
        while hasattr(attribute, "__wrapped__") and type(attribute).__name__.endswith("FunctionWrapper"):
            attribute = attribute.__wrapped__
        setattr(owner, name, attribute)


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline priced from genai-prices, httpx capture on, and the test's instrumentation."""
    kind = getattr(request, "param", "none")
    fake.reset()
    pipe = InMemoryPipeline(price_book=PriceBook())
    instrument_httpx(tracer_provider=pipe.tracer_provider, llm_hosts={fake.host: "openai"})
    instrumentor = _instrumentor(kind)
    if instrumentor is not None:
        instrumentor.instrument(tracer_provider=pipe.tracer_provider)
        assert instrumentor.is_instrumented_by_opentelemetry, f"{kind}: instrument() did not instrument"
    try:
        yield pipe
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
            if kind == "openllmetry":
                _unwrap_openllmetry_langgraph()
        uninstrument_httpx()
        pipe.shutdown()
