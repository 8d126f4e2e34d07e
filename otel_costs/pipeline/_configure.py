"""``configure()`` and ``default_exporter()``: the cost pipeline on a TracerProvider in one call.

Owns the choice of exporter from the arguments and the standard ``OTEL_*`` variables. The OTLP
exporters (and with them grpc and protobuf) are imported only when one is chosen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import Sampler

from otel_costs._config_checks import ConfigError
from otel_costs.pipeline._otlp import OtlpJsonFileExporter
from otel_costs.pipeline._processor import CostListener, CostSpanProcessor
from otel_costs.pipeline._sampling import RecordLlmSpans

if TYPE_CHECKING:
    from otel_costs.pricing._book import PriceBook
    from otel_costs.rollup._exporter import RunListener

logger = logging.getLogger("otel_costs")

#: Where the embedded default writes when no OTLP endpoint is configured.
DEFAULT_FILE = "otel-costs-traces.jsonl"
#: Environment variable overriding ``DEFAULT_FILE``.
FILE_ENV = "OTEL_COSTS_FILE"
_PROTOCOLS = "'http/protobuf' (the default) or 'grpc'"


class ConfigurationError(ConfigError):
    """``configure()`` was given settings that cannot work together; the message says which."""


def default_exporter(
    *, endpoint: str | None = None, file_path: str | os.PathLike[str] | None = None
) -> SpanExporter | None:
    """The exporter ``configure()`` picks from its arguments and the standard ``OTEL_*`` variables.

    In this order:

    1. ``endpoint=``: OTLP to it, over ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
       ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the spec's default, or ``grpc``; for
       HTTP ``/v1/traces`` is appended to a bare base URL).
    2. ``file_path=``: OTLP/JSON lines to that file, **and** OTLP to the endpoint of the
       environment too if it names one (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
       ``OTEL_EXPORTER_OTLP_ENDPOINT``): an application that keeps a local file (``otel-costs
       demo``) still feeds the Collector it is pointed at. ``OTEL_TRACES_EXPORTER`` does not
       override an explicit file.
    3. Otherwise the environment: an OTLP endpoint variable, or ``OTEL_TRACES_EXPORTER=otlp``
       (then the exporter's default ``localhost`` endpoint), selects OTLP as above;
       ``OTEL_TRACES_EXPORTER=console`` prints spans, ``none`` exports nothing (``None``: costs
       still reach the listeners); a comma-separated list uses each.
    4. Otherwise OTLP/JSON lines to ``$OTEL_COSTS_FILE`` or ``./otel-costs-traces.jsonl``.

    The OTLP exporters read their headers, timeout, compression and certificates from the
    ``OTEL_EXPORTER_OTLP_(TRACES_)*`` variables themselves, as with the SDK alone.
    """
    if endpoint is not None and file_path is not None:
        raise ConfigurationError("pass either endpoint= (OTLP) or file_path= (a local file), not both")
    if endpoint is not None:
        return _otlp_exporter(endpoint)
    env = os.environ
    env_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if file_path is not None:
        file_exporter = OtlpJsonFileExporter(Path(file_path))
        return _Tee([file_exporter, _otlp_exporter(None)]) if env_endpoint else file_exporter
    kinds = [k.strip().lower() for k in env.get("OTEL_TRACES_EXPORTER", "").split(",") if k.strip()]
    if env_endpoint and not kinds:
        kinds = ["otlp"]
    if not kinds:
        return OtlpJsonFileExporter(Path(env.get(FILE_ENV) or DEFAULT_FILE))
    exporters: list[SpanExporter] = []
    for kind in kinds:
        if kind == "otlp":
            exporters.append(_otlp_exporter(None))
        elif kind == "console":
            exporters.append(ConsoleSpanExporter())
        elif kind != "none":
            raise ConfigurationError(
                f"unsupported OTEL_TRACES_EXPORTER value {kind!r}: use 'otlp', 'console' or 'none' "
                "(or pass exporter= to configure())"
            )
    if not exporters:
        return None
    return exporters[0] if len(exporters) == 1 else _Tee(exporters)


def _otlp_exporter(endpoint: str | None) -> SpanExporter:
    """The OTLP exporter of the configured protocol, to ``endpoint`` or the environment's."""
    env = os.environ
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise ConfigurationError(
                f"OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc ({exc}): install it, "
                "or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
            ) from exc
        return GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
        except ImportError as exc:
            raise ConfigurationError(
                f"OTLP over HTTP needs opentelemetry-exporter-otlp-proto-http ({exc}): install it"
            ) from exc
        if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()
    if protocol == "http/json":
        raise ConfigurationError(
            "OTLP http/json is not available in the Python OTLP exporter: "
            f"set OTEL_EXPORTER_OTLP_PROTOCOL to {_PROTOCOLS}"
        )
    raise ConfigurationError(
        f"unsupported OTLP protocol {protocol!r}: set OTEL_EXPORTER_OTLP_PROTOCOL to {_PROTOCOLS}"
    )


class _Tee(SpanExporter):
    """Exports each batch to every exporter in turn (a file and an OTLP endpoint)."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        self.exporters = tuple(exporters)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.SUCCESS
        for exporter in self.exporters:
            try:
                if exporter.export(spans) is not SpanExportResult.SUCCESS:
                    result = SpanExportResult.FAILURE
            except Exception:
                logger.exception("otel_costs: %r raised exporting %d spans", exporter, len(spans))
                result = SpanExportResult.FAILURE
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all([exporter.force_flush(timeout_millis) for exporter in self.exporters])

    def shutdown(self) -> None:
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception:
                logger.exception("otel_costs: shutdown of %r failed", exporter)


def run_listeners(listeners: Sequence[object]) -> list[RunListener]:
    """The ``listeners`` that also listen to workflow runs (``on_run_cost``, e.g. ``CostMetrics``)."""
    return [
        cast("RunListener", listener)
        for listener in listeners
        if callable(getattr(listener, "on_run_cost", None))
    ]


def build_pipeline(
    exporter: SpanExporter | None,
    *,
    price_book: PriceBook | None = None,
    listeners: Sequence[CostListener] = (),
    linger: float = 2.0,
    batch: bool = True,
) -> CostSpanProcessor:
    """``CostSpanProcessor -> (Batch|Simple)SpanProcessor -> CostRollupExporter -> exporter``.

    With no ``exporter`` spans are priced (for the listeners) and then dropped.
    """
    # Imported here: otel_costs.rollup copies spans with otel_costs.pipeline._spans, so a
    # module-level import would make the two packages import each other.
    from otel_costs.rollup._exporter import CostRollupExporter

    if exporter is None:
        return CostSpanProcessor(SpanProcessor(), price_book=price_book, listeners=listeners)
    rollup = CostRollupExporter(exporter, linger=linger, run_listeners=run_listeners(listeners))
    inner: SpanProcessor = BatchSpanProcessor(rollup) if batch else SimpleSpanProcessor(rollup)
    return CostSpanProcessor(inner, price_book=price_book, listeners=listeners)


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
    listeners: Sequence[CostListener] = (),
    linger: float = 2.0,
    set_global: bool = True,
) -> TracerProvider:
    """Build a TracerProvider with the cost pipeline and (by default) install it globally.

    ``prices`` are overrides (a dict in USD per 1M tokens, or a TOML/YAML file path) on top of
    genai-prices; pass ``price_book`` instead for full control. ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_SDK_DISABLED`` and the
    ``OTEL_EXPORTER_OTLP_*`` variables are honoured. Where the spans go:

    - ``exporter=``: to that exporter, whatever the environment says;
    - ``endpoint=``: OTLP to that endpoint;
    - ``file_path=``: to that OTLP/JSON file, and also over OTLP if ``OTEL_EXPORTER_OTLP_ENDPOINT``
      (or ``..._TRACES_ENDPOINT``) is set;
    - none of them: as the environment says (an OTLP endpoint, ``OTEL_TRACES_EXPORTER``), else to
      ``./otel-costs-traces.jsonl`` (or ``$OTEL_COSTS_FILE``), which ``otel-costs tree`` reads.

    See ``default_exporter`` for the details. Every billable span's cost goes to each of
    ``listeners`` (``CostListener``: a ``BudgetManager``, ``CostMetrics``, ...); with listeners the
    sampler is wrapped in ``RecordLlmSpans``, so LLM calls in traces the sampler drops are still
    priced and listened to (not exported): budgets must not undercount.

    Example::

        provider = otel_costs.configure(service_name="agents", prices={"gpt-5.2": {"input": 3, "output": 15}})
    """
    if prices is not None and price_book is not None:
        raise ConfigurationError("pass either prices= (overrides) or price_book=, not both")
    if exporter is not None and (endpoint is not None or file_path is not None):
        raise ConfigurationError("pass either exporter= or endpoint=/file_path=, not both")
    if price_book is None:
        from otel_costs.pricing._book import PriceBook  # the price data loads when it is used

        if isinstance(prices, Mapping):
            price_book = PriceBook(prices)
        elif prices is not None:
            price_book = PriceBook(overrides_file=prices)
        else:
            price_book = PriceBook()
    attributes: dict[str, str] = dict(resource_attributes or {})
    if service_name is not None:
        attributes["service.name"] = service_name
    if listeners:
        if sampler is None:
            # The SDK's own default sampler, which honours OTEL_TRACES_SAMPLER(_ARG).
            sampler = TracerProvider(shutdown_on_exit=False).sampler
        sampler = RecordLlmSpans(sampler)
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        logger.info("otel_costs: OTEL_SDK_DISABLED=true, no cost pipeline installed")
    else:
        chosen = (
            exporter if exporter is not None else default_exporter(endpoint=endpoint, file_path=file_path)
        )
        provider.add_span_processor(
            build_pipeline(chosen, price_book=price_book, listeners=listeners, linger=linger)
        )
    if set_global:
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            logger.warning(
                "otel_costs: a global TracerProvider was already set; use the returned provider explicitly"
            )
    return provider
