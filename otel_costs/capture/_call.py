"""One LLM call's span, from the request that starts it to the response body that ends it.

Owns ``start_call`` (the LLM-call span of a request: name, GenAI attributes from the URL and the
JSON body, the budget estimate) and ``Call``: the parser of its response fed as the body is
read, and the span's end, exactly once, however the body ends (eof, closed, error, abandoned), with
the usage, the response model and a ``cost.status`` flag when the usage is not the whole usage.
Sans-IO: nothing here reads or writes the network; ``_transport`` does, sync and async.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.server_attributes import SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_costs import conventions as conv
from otel_costs._callsite import call_site
from otel_costs._kinds import is_model_call
from otel_costs._sdk import set_validated_attributes as _add_attributes
from otel_costs.capture._config import Config, PreCallBudgets
from otel_costs.capture._dialects import OPENAI_CHAT, OPENAI_COMPLETIONS, ApiCall, loads_json
from otel_costs.capture._responses import CaptureResult, ResponseCapture
from otel_costs.capture._trust import MAX_VALUE_LENGTH
from otel_costs.conventions import RESERVATION_ID_ATTRIBUTE

logger = logging.getLogger("otel_costs")

_MAX_REQUEST_PARSE_BYTES: Final = 4 * 1024 * 1024
#: The streams hand the queued chunks to the parser every this many bytes (and at the end).
BATCH_BYTES: Final = 64 * 1024


def inside_llm_span(ctx: Context) -> bool:
    """Whether the span of ``ctx`` is already a model call in any convention (the Anthropic SDK's
    own span, an OpenInference ``LLM`` span, an OpenLLMetry ``llm`` span): the capture then stands
    down, only when told to (``instrument_httpx(defer_to_sdk_spans=True)``; by default it makes its
    span and the processor keeps the fuller reading). A task/handoff/node span or an unknown
    operation is no model call (``_kinds``)."""
    span = trace.get_current_span(ctx)
    if not span.is_recording():
        return False
    attributes = getattr(span, "attributes", None)
    return isinstance(attributes, Mapping) and is_model_call(attributes)


def _request_fields(request: Any) -> dict[str, Any]:
    """The JSON body of ``request`` if it is in memory and not huge, else ``{}``."""
    try:
        content = request.content
    except Exception:  # a streaming upload: the body is not in memory
        return {}
    if not content or len(content) > _MAX_REQUEST_PARSE_BYTES or content[:1] != b"{":
        return {}
    try:
        body = loads_json(content)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
        return {}
    return body if isinstance(body, dict) else {}


def start_call(
    config: Config, request: Any, api: ApiCall, provider: object, host: str, port: int | None, ctx: Context
) -> Call:
    """Start the LLM-call span of ``request`` (a POST to ``api``) as a child of ``ctx``."""
    body = _request_fields(request)
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_VALUE_LENGTH:
        model = api.path_model
    provider_name = provider if isinstance(provider, str) else api.provider
    attributes: dict[str, Any] = {
        conv.GEN_AI_OPERATION_NAME: api.operation,
        conv.GEN_AI_PROVIDER_NAME: provider_name,
        conv.SERVER_ADDRESS: host,
    }
    if port is not None:
        attributes[SERVER_PORT] = port
    if model:
        attributes[conv.GEN_AI_REQUEST_MODEL] = model
    attributes.update(call_site())
    if not config.http_spans:
        attributes[HTTP_REQUEST_METHOD] = request.method
        attributes[URL_FULL] = _url_without_query(request.url)
    name = f"{api.operation} {model}" if model else api.operation
    if config.blind_sampler:
        # The sampler does not read attributes: start bare and store the attributes, built and
        # checked here, without the SDK's per-value validation (~11% of the call's overhead).
        span = config.tracer.start_span(name, ctx, kind=SpanKind.CLIENT)
        longest = max([len(value) for value in attributes.values() if type(value) is str])
        _add_attributes(span, attributes, longest)  # type: ignore[arg-type]
    else:
        span = config.tracer.start_span(name, ctx, kind=SpanKind.CLIENT, attributes=attributes)
    no_usage_reason = None
    if api.dialect in (OPENAI_CHAT, OPENAI_COMPLETIONS) and body.get("stream") is True:
        options = body.get("stream_options")
        if not (isinstance(options, dict) and options.get("include_usage") is True):
            no_usage_reason = "streamed without stream_options.include_usage, so the provider sent no usage"
    call = Call(span, api, config, no_usage_reason)
    if config.budgets is not None:
        max_out = next(
            (v for k in _MAX_OUTPUT_KEYS if type(v := body.get(k)) is int and v >= 0),
            None,
        )
        call.estimate = {
            "model": model or None,
            "provider": provider_name,
            "input_chars": _content_length(request),
            "max_output_tokens": max_out,
        }
    return call


#: Request fields that cap the output tokens, across the OpenAI, Anthropic and Gemini dialects.
_MAX_OUTPUT_KEYS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _content_length(request: Any) -> int | None:
    try:
        return len(request.content)
    except Exception:  # a streaming upload: its size is not known up front
        return None


def _url_without_query(url: Any) -> str:
    """``url`` without its query, fragment and user info (Gemini API keys travel as ``?key=...``).

    The same text as ``str(url.copy_with(query=None, fragment=None, username=None,
    password=None))`` from the already parsed parts: ``copy_with`` parses the whole URL again,
    which cost more CPU than the rest of the LLM span's set-up.
    """
    # netloc is the normalised host[:port] without user info; an encoded path holds no raw '?'.
    path = url.raw_path.decode("ascii").partition("?")[0]
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


class Call:
    """One LLM call: its span and the capture of its response, ended exactly once."""

    __slots__ = (
        "_once",
        "api",
        "budgets",
        "capture",
        "config",
        "estimate",
        "no_usage_reason",
        "pending",
        "span",
        "status",
    )

    def __init__(self, span: trace.Span, api: ApiCall, config: Config, no_usage_reason: str | None) -> None:
        self.span = span
        #: What a budget check estimates from: model, provider, request size, max output tokens.
        self.estimate: dict[str, Any] = {}
        self.api = api
        self.config = config
        #: Checked before the request is sent, if the call has budgets.
        self.budgets: PreCallBudgets | None = config.budgets
        self.no_usage_reason = no_usage_reason
        self.capture: ResponseCapture | None = None
        self.status = 0
        # Chunks read but not parsed yet (at most BATCH_BYTES): parsing in batches keeps the
        # per-chunk cost to a list append, which matters for streams of many tiny events.
        self.pending: list[bytes] = []
        # finish() runs once: whoever pops this item. list.pop() is atomic, so of two threads, or
        # of finish() and another finish() run by a garbage collection inside it (a stream's
        # __del__), exactly one gets it; cheaper than a re-entrant lock per call.
        self._once = [True]

    def reserved(self, decision: Any) -> None:
        """Name the budget reservation of ``decision`` on the span, so the actual cost reconciles it."""
        reservation = getattr(decision, "reservation_id", None)
        if reservation:
            self.span.set_attribute(RESERVATION_ID_ATTRIBUTE, reservation)

    def on_response(self, status: int, headers: Any) -> None:
        """The response's status and headers arrived: set up the parser of its body."""
        self.status = status
        self.capture = ResponseCapture(
            self.api.dialect,
            content_type=headers.get("content-type", ""),
            content_encoding=headers.get("content-encoding", ""),
            max_body_bytes=self.config.max_body_bytes,
            max_event_bytes=self.config.max_event_bytes,
        )

    def __enter__(self) -> Call:
        """Reading the body starts (``with call:`` around the loop over the body's chunks)."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Reading the body ended: at its end (eof), or by an error. A generator closed mid-body
        (``GeneratorExit``) ends nothing here: the stream's ``close`` or its collection does."""
        if exc is None:
            self.finish("eof")
        elif not isinstance(exc, GeneratorExit):
            self.finish("error", exc)

    def flush(self) -> None:
        """Parse the pending chunks. Never raises."""
        pending = self.pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        capture = self.capture
        if capture is not None:
            capture.feed(data)  # never raises

    def finish(self, how: str, exc: BaseException | None = None) -> None:
        """End the span. ``how``: eof, closed, error, abandoned or no_body. Never raises."""
        once = self._once
        if not once:  # the common second call (close after eof, then __del__)
            return
        try:
            once.pop()
        except IndexError:  # another thread got here first
            return
        try:
            self.flush()
            self._finish(how, exc)
        except Exception:
            logger.exception("otel_costs: could not finish an LLM-call span")
            self.span.end()
        finally:
            # httpx responses sit in reference cycles, freed only by the garbage collector: holding
            # the ended span and the parser from the response would keep them (some twenty
            # objects per call) alive into the collector's generations, adding collections.
            self.span = trace.INVALID_SPAN
            self.capture = None

    def _finish(self, how: str, exc: BaseException | None) -> None:
        span = self.span
        result = self.capture.close(eof=how == "eof") if self.capture is not None else None
        attributes: dict[str, Any] = {}
        if not self.config.http_spans and self.status:
            attributes[HTTP_RESPONSE_STATUS_CODE] = self.status
        if result is not None:
            if result.response_model:
                attributes[conv.GEN_AI_RESPONSE_MODEL] = result.response_model
            if result.response_id:
                attributes[conv.GEN_AI_RESPONSE_ID] = result.response_id
            attributes.update(result.usage_attributes)
        error_type = None
        if exc is not None:
            error_type = type(exc).__qualname__
        elif self.status >= 400:
            error_type = result.error_type if result is not None and result.error_type else str(self.status)
        elif result is not None and result.error_type:
            error_type = result.error_type
        flag = self._flag(how, result, exc)
        if flag is not None:
            attributes[conv.COST_STATUS], attributes[conv.COST_STATUS_REASON] = flag
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR, flag[1] if flag else error_type))
        # Validated here already (str keys; int or str values): stored without the SDK's
        # per-value re-validation where the span and its limits allow, else set_attributes.
        longest = max([len(v) for v in attributes.values() if type(v) is str], default=0)
        _add_attributes(span, attributes, longest)  # type: ignore[arg-type]
        span.end()

    def _flag(
        self, how: str, result: CaptureResult | None, exc: BaseException | None
    ) -> tuple[str, str] | None:
        """``(cost.status, reason)`` when the usage on the span is not the call's whole usage."""
        if result is not None and result.usage_flag is not None:
            return result.usage_flag  # a usage record read whole but not whole itself (issue 13.4)
        if result is not None and result.complete:
            return None
        status = self.status
        if 100 <= status < 200 or 300 <= status < 400:
            return None  # an interim or redirect response is not a billed call
        if status == 0:
            name = type(exc).__name__ if exc is not None else "no response"
            return conv.STATUS_UNPRICED, f"the request failed before a response ({name})"
        if exc is not None:
            return (
                conv.STATUS_PARTIAL,
                f"reading the response failed before its usage record ({type(exc).__name__})",
            )
        if how == "closed":
            return conv.STATUS_PARTIAL, "the response was closed before its usage record was read"
        if how == "abandoned":
            return conv.STATUS_PARTIAL, "the response was discarded before its usage record was read"
        if status >= 400:
            kind = f" ({result.error_type})" if result is not None and result.error_type else ""
            return conv.STATUS_UNPRICED, f"HTTP {status}{kind}: the provider reported no usage"
        reason = self.no_usage_reason or (result.problem if result is not None else None) or "no usage"
        if result is not None and result.stream:
            return conv.STATUS_PARTIAL, reason
        return conv.STATUS_UNPRICED, reason
