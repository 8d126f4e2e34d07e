"""``configure()``: build and install a TracerProvider with the cost pipeline in one call."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from otel_costs.pipeline._otlp import OtlpJsonFileExporter
from otel_costs.pipeline._processor import CostListener, CostSpanProcessor, SpendRecorder
from otel_costs.pipeline._sampling import RecordLlmSpans
from otel_costs.pricing._book import PriceBook
from otel_costs.rollup._exporter import CostRollupExporter

logger = logging.getLogger("otel_costs")

#: Where the embedded default writes when no OTLP endpoint is configured.
DEFAULT_FILE = "otel-costs-traces.jsonl"
#: Environment variable overriding ``DEFAULT_FILE``.
FILE_ENV = "OTEL_COSTS_FILE"


class ConfigurationError(ValueError):
    """``configure()`` was given settings that cannot work together; the message says which."""


def default_exporter(
    *, endpoint: str | None = None, file_path: str | os.PathLike[str] | None = None
) -> SpanExporter | None:
    """The exporter ``configure()`` picks from its arguments and the standard ``OTEL_*`` variables.

    An OTLP endpoint (``endpoint``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``) selects OTLP over ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the spec's default, or ``grpc``);
    ``OTEL_TRACES_EXPORTER=console`` prints spans and ``none`` exports nothing (``None``: costs
    still reach cost listeners such as budgets); otherwise spans go as OTLP/JSON lines to
    ``file_path``, ``$OTEL_COSTS_FILE`` or ``./otel-costs-traces.jsonl``. Explicit arguments win
    over the environment.
    """
    if endpoint is not None and file_path is not None:
        raise ConfigurationError("pass either endpoint= (OTLP) or file_path= (a local file), not both")
    env = os.environ
    configured = (
        endpoint or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    kind = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    explicit = endpoint is not None or file_path is not None
    if kind == "console" and not explicit:
        return ConsoleSpanExporter()
    if kind == "none" and not explicit:
        return None
    if configured and file_path is None:
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            return GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
        if protocol == "http/json":
            raise ConfigurationError(
                "OTLP http/json is not available in the Python OTLP exporter: "
                "set OTEL_EXPORTER_OTLP_PROTOCOL to 'http/protobuf' or 'grpc'"
            )
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            return HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()
        raise ConfigurationError(
            f"unsupported OTLP protocol {protocol!r}: "
            "set OTEL_EXPORTER_OTLP_PROTOCOL to 'grpc' or 'http/protobuf'"
        )
    return OtlpJsonFileExporter(Path(file_path or env.get(FILE_ENV) or DEFAULT_FILE))


def build_pipeline(
    exporter: SpanExporter | None,
    *,
    price_book: PriceBook | None = None,
    cost_listeners: Sequence[CostListener] = (),
    budgets: SpendRecorder | None = None,
    linger: float = 2.0,
    batch: bool = True,
) -> CostSpanProcessor:
    """``CostSpanProcessor -> (Batch|Simple)SpanProcessor -> CostRollupExporter -> exporter``.

    With no ``exporter`` spans are priced (for the cost listeners) and then dropped.
    """
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if exporter is None:
        return CostSpanProcessor(
            SpanProcessor(), price_book=price_book, cost_listeners=cost_listeners, budgets=budgets
        )
    rollup = CostRollupExporter(exporter, linger=linger)
    inner: SpanProcessor = BatchSpanProcessor(rollup) if batch else SimpleSpanProcessor(rollup)
    return CostSpanProcessor(inner, price_book=price_book, cost_listeners=cost_listeners, budgets=budgets)


def configure(
    *,
    service_name: str | None = None,
    prices: Mapping[str, Mapping[str, object]] | str | os.PathLike[str] | None = None,
    price_book: PriceBook | None = None,
    exporter: SpanExporter | None = None,
    endpoint: str | None = None,
    file_path: str | os.PathLike[str] | None = None,
    sampler: Sampler | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    cost_listeners: Sequence[CostListener] = (),
    budgets: SpendRecorder | None = None,
    linger: float = 2.0,
    set_global: bool = True,
) -> TracerProvider:
    """Build a TracerProvider with the cost pipeline and (by default) install it globally.

    ``prices`` are overrides (a dict in USD per 1M tokens, or a TOML/YAML file path) on top of
    genai-prices; pass ``price_book`` instead for full control. ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and the ``OTEL_EXPORTER_OTLP_*``
    variables are honoured; with no endpoint, spans go to a local OTLP/JSON file that
    ``otel-costs tree`` reads. With ``budgets`` (a ``BudgetManager``) every billable span's cost
    is recorded, and the sampler is wrapped in ``RecordLlmSpans`` so LLM calls in traces the
    sampler drops are still recorded (not exported): budgets must not undercount.

    Example::

        provider = otel_costs.configure(service_name="agents", prices={"gpt-5.2": {"input": 3, "output": 15}})
    """
    if prices is not None and price_book is not None:
        raise ConfigurationError("pass either prices= (overrides) or price_book=, not both")
    if exporter is not None and (endpoint is not None or file_path is not None):
        raise ConfigurationError("pass either exporter= or endpoint=/file_path=, not both")
    if price_book is None:
        if isinstance(prices, Mapping):
            price_book = PriceBook(prices)
        elif prices is not None:
            price_book = PriceBook(overrides_file=prices)
        else:
            price_book = PriceBook()
    attributes: dict[str, str] = dict(resource_attributes or {})
    if service_name is not None:
        attributes["service.name"] = service_name
    if budgets is not None:
        # The SDK's own default sampler, which honours OTEL_TRACES_SAMPLER(_ARG).
        from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

        sampler = RecordLlmSpans(sampler if sampler is not None else _get_from_env_or_default())
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        logger.info("otel_costs: OTEL_SDK_DISABLED=true, no cost pipeline installed")
    else:
        chosen = (
            exporter if exporter is not None else default_exporter(endpoint=endpoint, file_path=file_path)
        )
        provider.add_span_processor(
            build_pipeline(
                chosen, price_book=price_book, cost_listeners=cost_listeners, budgets=budgets, linger=linger
            )
        )
    if set_global:
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            logger.warning(
                "otel_costs: a global TracerProvider was already set; use the returned provider explicitly"
            )
    return provider
