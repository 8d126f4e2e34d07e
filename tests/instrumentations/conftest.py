"""Third-party instrumentations driving the real SDKs against the fake provider, priced by the pipeline.

These tests need instrumentation packages at exact versions (``requirements*.txt`` beside this file),
some of which cannot share one environment, so ``run.sh`` runs them in their own virtualenvs and sets
``OTEL_COSTS_INSTRUMENTATION_SET`` to the set it runs. Any other run (the main suite) collects a test
file only when every package it needs is installed at its pinned version: the main venv, without the
instrumentations, collects at most the anthropic SDK's own spans (``test_anthropic_sdk_spans.py``).
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import pytest
from known_calls import (
    ANTHROPIC_HOWS,
    ANTHROPIC_MODEL,
    EXTRA_PRICES,
    OPENAI_MODEL,
    RESPONSE_MODELS,
    USAGE_BY_MODEL,
    unwrap_sdk_methods,
)

from otel_costs.testing import FakeLLMProvider, InMemoryPipeline, fixed_price_book

HERE = Path(__file__).parent
#: Each set of pins: its requirements file, and the distributions each of its test files needs.
SETS: Mapping[str, tuple[str, Mapping[str, tuple[str, ...]]]] = {
    "main": (
        "requirements.txt",
        {
            "test_openai_v2.py": ("opentelemetry-instrumentation-openai-v2", "openai"),
            "test_openllmetry_openai.py": ("opentelemetry-instrumentation-openai", "openai"),
            "test_openllmetry_anthropic.py": ("opentelemetry-instrumentation-anthropic", "anthropic"),
            "test_openinference_openai.py": ("openinference-instrumentation-openai", "openai"),
            "test_anthropic_sdk_spans.py": ("anthropic",),
        },
    ),
    "genai": (
        "requirements-genai.txt",
        {
            "test_genai_openai.py": ("opentelemetry-instrumentation-genai-openai", "openai"),
            "test_genai_anthropic.py": ("opentelemetry-instrumentation-genai-anthropic", "anthropic"),
        },
    ),
}
SET_ENV = "OTEL_COSTS_INSTRUMENTATION_SET"


def _pins(requirements: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, names normalized (PEP 503)."""
    pins: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _installed_as_pinned(distributions: tuple[str, ...], pins: Mapping[str, str]) -> bool:
    for name in distributions:
        try:
            if metadata.version(name) != pins.get(name):
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def _ignored() -> list[str]:
    chosen = os.environ.get(SET_ENV)
    if chosen is not None and chosen not in SETS:
        raise pytest.UsageError(f"{SET_ENV}={chosen!r}: expected one of {', '.join(SETS)}")
    ignored: list[str] = []
    for name, (requirements, files) in SETS.items():
        pins = _pins(HERE / requirements)
        for file, distributions in files.items():
            # In run.sh's env the set's files are always collected, so a broken install fails loudly.
            wanted = name == chosen if chosen else _installed_as_pinned(distributions, pins)
            if not wanted:
                ignored.append(file)
    return ignored


collect_ignore = _ignored()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts a real server (the fake provider on 127.0.0.1): mark them slow."""
    for item in items:
        if item.path.parent == HERE:
            item.add_marker(pytest.mark.slow)
            # The anthropic SDK warns about models near their end of life: not what is tested here.
            item.add_marker(
                pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
            )


class Instrumentor(Protocol):
    """The part of ``BaseInstrumentor`` the fixtures use."""

    def instrument(self, **kwargs: Any) -> None: ...

    def uninstrument(self, **kwargs: Any) -> None: ...

    @property
    def is_instrumented_by_opentelemetry(self) -> bool: ...


#: Numbers the prompts of the session: the fake derives response ids from the request, and they
#: must be unique, as the real APIs' are (OpenLLMetry keys its Responses API state by id).
_REQUEST_SERIAL = itertools.count(1)

OpenAICall = Callable[..., Awaitable[None]]
AnthropicCall = Callable[..., Awaitable[None]]


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeLLMProvider]:
    """The fake provider, answering each model with its known usage.

    One for the session: starting a server per test would only cost time.
    """
    with FakeLLMProvider(usage=USAGE_BY_MODEL, response_models=RESPONSE_MODELS) as provider:
        yield provider


@pytest.fixture
def instrument(request: pytest.FixtureRequest) -> Callable[..., InMemoryPipeline]:
    """``instrument(instrumentor, known_leak=None, price_book=...)``: a pipeline the instrumentor writes to.

    The instrumentation is removed again when the test ends; a patch that ``uninstrument()`` leaves
    on the SDK fails the test, unless ``known_leak`` says why it is expected (it is then removed).
    """

    def start(
        instrumentor: Instrumentor, *, known_leak: str | None = None, **pipeline_kwargs: Any
    ) -> InMemoryPipeline:
        pipeline_kwargs.setdefault("price_book", fixed_price_book(EXTRA_PRICES))
        pipeline = InMemoryPipeline(**pipeline_kwargs)

        def stop() -> None:
            instrumented = instrumentor.is_instrumented_by_opentelemetry
            instrumentor.uninstrument()
            pipeline.shutdown()
            left = unwrap_sdk_methods()
            if left and known_leak is None:
                pytest.fail(f"uninstrument() left patches on {left}")
            if instrumented and known_leak is not None and not left:
                pytest.fail(f"uninstrument() left nothing behind: drop known_leak ({known_leak})")

        request.addfinalizer(stop)
        # A version conflict with the installed SDK must fail the test, not silently skip the patching.
        instrumentor.instrument(tracer_provider=pipeline.tracer_provider, raise_exception_on_conflict=True)
        assert instrumentor.is_instrumented_by_opentelemetry, "instrument() did not instrument"
        return pipeline

    return start


@pytest.fixture
def openai_call(fake: FakeLLMProvider) -> OpenAICall:
    """``await openai_call(api, stream=, use_async=)``: one call through the real ``openai`` SDK.

    ``api`` is ``"chat"``, ``"responses"`` or ``"embeddings"``; streams are read to the end. Chat
    streams ask for usage (``stream_options``) unless ``include_usage=False``.
    """
    import openai

    async def call(
        api: str,
        *,
        stream: bool = False,
        use_async: bool = False,
        model: str = OPENAI_MODEL,
        include_usage: bool = True,
    ) -> None:
        prompt = f"Say hello. ({next(_REQUEST_SERIAL)})"
        kwargs: dict[str, Any] = {"model": model}
        if api == "chat":
            kwargs["messages"] = [{"role": "user", "content": prompt}]
            if stream:
                kwargs["stream"] = True
                if include_usage:
                    kwargs["stream_options"] = {"include_usage": True}
        elif api == "responses":
            kwargs["input"] = prompt
            if stream:
                kwargs["stream"] = True
        elif api == "embeddings":
            kwargs["input"] = prompt
        else:
            raise ValueError(f"unknown api {api!r}")
        if use_async:
            async with openai.AsyncOpenAI(
                base_url=fake.openai_base_url, api_key="test", max_retries=0
            ) as aclient:
                endpoint: Any = getattr(aclient, api)
                method = endpoint.completions.create if api == "chat" else endpoint.create
                result = await method(**kwargs)
                if stream:
                    async for _ in result:
                        pass
                    # Instrumentations end a stream's span on close (else only when it is collected);
                    # some wrap the async stream in one whose close() is not a coroutine.
                    closing = result.close()
                    if inspect.isawaitable(closing):
                        await closing
            return
        with openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0) as client:
            endpoint = getattr(client, api)
            method = endpoint.completions.create if api == "chat" else endpoint.create
            result = method(**kwargs)
            if stream:
                for _ in result:
                    pass
                result.close()

    return call


@pytest.fixture
def anthropic_call(fake: FakeLLMProvider) -> AnthropicCall:
    """``await anthropic_call(how, use_async=, model=, open_telemetry=)``: one message through the real SDK.

    ``how`` is one of ``ANTHROPIC_HOWS``; ``open_telemetry`` is the SDK's own tracing option
    (default ``False``: off, so only the instrumentation under test writes spans).
    """
    import anthropic

    async def call(
        how: str, *, use_async: bool = False, model: str = ANTHROPIC_MODEL, open_telemetry: object = False
    ) -> None:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": f"Say hello. ({next(_REQUEST_SERIAL)})"}],
        }
        options: dict[str, Any] = {
            "base_url": fake.anthropic_base_url,
            "api_key": "test",
            "max_retries": 0,
            "open_telemetry": open_telemetry,
        }
        if how not in ANTHROPIC_HOWS:
            raise ValueError(f"unknown call {how!r}")
        if use_async:
            async with anthropic.AsyncAnthropic(**options) as aclient:
                if how == "stream_helper":
                    async with aclient.messages.stream(**kwargs) as astream:
                        await astream.get_final_message()
                elif how == "create_stream":
                    async for _ in await aclient.messages.create(stream=True, **kwargs):
                        pass
                else:
                    await aclient.messages.create(**kwargs)
            return
        with anthropic.Anthropic(**options) as client:
            if how == "stream_helper":
                with client.messages.stream(**kwargs) as stream:
                    stream.get_final_message()
            elif how == "create_stream":
                for _ in client.messages.create(stream=True, **kwargs):
                    pass
            else:
                client.messages.create(**kwargs)

    return call
