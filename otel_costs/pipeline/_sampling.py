"""A sampler wrapper that keeps LLM-call spans *recorded* when the wrapped sampler drops their trace.

Budgets must count every billable call, but head sampling (e.g. ``TraceIdRatioBased(0.01)``)
drops 99 % of traces, and a dropped span never reaches a span processor, so its cost would be
invisible to the ``CostSpanProcessor`` and the budgets. ``RecordLlmSpans`` turns ``DROP`` into
``RECORD_ONLY`` for LLM-call spans only: the span is recorded (processors see it in ``on_end``
and price it) but not sampled (its trace flags say so, and ``BatchSpanProcessor`` /
``SimpleSpanProcessor`` do not export it). Sampling of what is exported is unchanged.

Why not the SDK's ``AlwaysRecordSampler``: it records *every* dropped span, paying the recording
cost for all of a service's spans; LLM calls are a small, expensive minority. It also passes on
the dropped result's attributes (``None`` for a drop), so the span would lose the attributes given
at start (model, provider) that pricing needs; this wrapper keeps them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otel_costs._kinds import span_kind
from otel_costs.conventions import (
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_SYSTEM,
    KIND_MODEL_CALL,
)

logger = logging.getLogger(__name__)

#: Decides from a span's name and start attributes whether it is an LLM call.
LlmCallPredicate = Callable[[str, Mapping[str, object]], bool]


def is_llm_call(name: str, attributes: Mapping[str, object]) -> bool:
    """An LLM call: a span of kind ``model_call`` (``_kinds``: ``chat``, an OpenInference ``LLM``, ...);
    a span of another known kind (agent, workflow, task, tool) is none; a span of no known kind is
    one when it names a model or provider.

    Instrumentations set ``gen_ai.operation.name`` (e.g. ``chat``) and ``gen_ai.request.model`` when
    they start the span, so the decision is available at sampling time.
    """
    kind = span_kind(attributes)
    if kind is not None:
        return kind == KIND_MODEL_CALL
    return any(
        attributes.get(key) is not None for key in (GEN_AI_REQUEST_MODEL, GEN_AI_PROVIDER_NAME, GEN_AI_SYSTEM)
    )


class RecordLlmSpans(Sampler):
    """Wraps a sampler; where it returns ``DROP`` for an LLM-call span, returns ``RECORD_ONLY`` instead.

    Example::

        TracerProvider(sampler=RecordLlmSpans(ParentBased(TraceIdRatioBased(0.05))))
    """

    def __init__(self, inner: Sampler, *, predicate: LlmCallPredicate = is_llm_call) -> None:
        if not isinstance(inner, Sampler):
            raise TypeError(f"inner must be an OpenTelemetry Sampler (e.g. ParentBased(...)), got {inner!r}")
        self._inner = inner
        self._predicate = predicate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP or not attributes:
            return result
        try:
            llm = self._predicate(name, attributes)
        except Exception:
            # A broken predicate must not break span creation: record (the safe side for budgets).
            logger.exception("RecordLlmSpans: the LLM-call predicate failed for span %r; recording it", name)
            llm = True
        if not llm:
            return result
        # Keep the caller's attributes: a DROP result carries none, and the span is built from these.
        return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)

    def get_description(self) -> str:
        return f"RecordLlmSpans{{{self._inner.get_description()}}}"
