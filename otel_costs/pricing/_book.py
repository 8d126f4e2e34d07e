"""``PriceBook``: prices LLM calls from genai-prices' data and the user's overrides, memoized.

The one pricing route: the call's (provider, server, model) is resolved once per genai-prices
data snapshot (:meth:`PriceBook._route`, memoized), each model's prices are compiled once
(``_plans.Entry``/``Plan``), and the outcome is written by the one writer of the cost attributes
(``_results.write_cost``). :meth:`PriceBook.price` (public, exact ``Decimal`` results identical
to ``genai_prices.calc_price``) and the processor's span path :meth:`PriceBook._cost_attributes`
share it; the span path computes a plainly billable span's figures in integers where that is
provably exact (``Plan.span_costs``) and otherwise prices the span through :meth:`price`.

genai-prices (about 0.2 s to import) and its bundled data are imported on the first use that
needs them, not when this module or a ``PriceBook`` is created.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final

from otel_costs.conventions import (
    COST_STATUS,
    COST_STATUS_REASON,
    PRICE_SOURCE_GENAI_PRICES,
    STATUS_AGGREGATE,
    STATUS_INVALID_USAGE,
    STATUS_PARTIAL,
    STATUS_PRICED,
    STATUS_UNPRICED,
)
from otel_costs.pricing._overrides import Override, PriceConfigError, parse_overrides
from otel_costs.pricing._plans import (
    B_CACHE_READ,
    B_CACHE_WRITE,
    B_INPUT,
    B_OTHER,
    B_OUTPUT,
    Entry,
    Plan,
    datetime_of,
    rates,
)
from otel_costs.pricing._providers import normalize_provider_name, provider_for_server, resolve_model
from otel_costs.pricing._results import (
    KEPT_FLAGS,
    MAX_REASON,
    CostBreakdown,
    ModelRates,
    RateTier,
    priced_prefix,
    write_breakdown,
    write_cost,
    write_priced,
)
from otel_costs.pricing._usage import (
    LlmCall,
    TokenUsage,
    billable_counts,
    plausible_counts,
    read_usage,
    usage_problem,
)

if TYPE_CHECKING:
    from genai_prices import UpdatePrices
    from genai_prices import Usage as GenaiUsage
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, Provider

logger = logging.getLogger(__name__)

__all__ = ("CostBreakdown", "ModelRates", "PriceBook", "PriceConfigError", "RateTier")

_ZERO: Final = Decimal(0)
#: Bound on the memo of resolved (provider, server, model) names: span attributes are outside input.
_MAX_MEMO: Final = 10_000
#: Bound on the distinct keys of ``unpriced_counts``; past it, misses are counted under ``_OTHER_KEY``.
_MAX_UNPRICED_KEYS: Final = 1_000
_OTHER_KEY: Final = "(other)/(other)"
#: Span start times (ns since the epoch) taken as they are; others (and 0) mean "now".
_MAX_START_NS: Final = 2**63

#: A resolved call: its entry, the provider id reported for it, the cost attributes a span priced
#: by it starts with (``priced_prefix``) and its one plan when that is all it needs (one price
#: set, compiled, no genai-prices code of its own; else ``None``); or why it has no price.
_Route = tuple[Entry, str | None, dict[str, str], Plan | None] | str


def _first_snapshot() -> DataSnapshot:
    """genai-prices' current data snapshot; the first call imports genai-prices and its data."""
    global _snapshot
    from genai_prices.data_snapshot import get_snapshot

    _snapshot = get_snapshot
    return get_snapshot()


#: ``genai_prices.data_snapshot.get_snapshot`` once genai-prices is imported.
_snapshot: Callable[[], DataSnapshot] = _first_snapshot


class _State:
    """The memo for one genai-prices data snapshot; replaced as a whole when the snapshot changes."""

    __slots__ = ("entries", "providers", "routes", "snapshot")

    def __init__(self, snapshot: DataSnapshot | None) -> None:
        #: ``None`` until genai-prices is first needed (and for a book that does not use it).
        self.snapshot = snapshot
        #: (provider name, server address, model) as on the span -> its route.
        self.routes: dict[tuple[object, object, object], _Route] = {}
        #: (provider id, id(ModelInfo)) -> (ModelInfo kept alive so the id stays unique, Entry).
        self.entries: dict[tuple[str, int], tuple[ModelInfo, Entry]] = {}
        #: (provider name, server address) -> normalized provider id.
        self.providers: dict[tuple[object, object], str | None] = {}


class PriceBook:
    """Prices LLM calls from genai-prices' data and user overrides; thread-safe, never raises.

    ``overrides`` maps a model name to USD per 1M tokens (see ``docs/pricing.md`` for the full
    schema, also accepted from a TOML or YAML ``overrides_file``); overrides win over genai-prices.
    No network access unless ``update_prices=True`` (then genai-prices' ``UpdatePrices`` refreshes
    the data in a background thread until :meth:`close`).

    >>> book = PriceBook({"gpt-5.2": {"input": 3, "output": 15}})
    >>> book.price(LlmCall("gpt-5.2", "openai", None, TokenUsage(1500, 500))).total
    Decimal('0.012')
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        *,
        overrides_file: str | os.PathLike[str] | None = None,
        use_genai_prices: bool = True,
        update_prices: bool = False,
    ) -> None:
        if not isinstance(use_genai_prices, bool):
            raise TypeError(f"use_genai_prices must be a bool, got {type(use_genai_prices).__name__}")
        if not isinstance(update_prices, bool):
            raise TypeError(f"update_prices must be a bool, got {type(update_prices).__name__}")
        self._use_genai_prices = use_genai_prices
        self._lock = threading.Lock()
        self._state = _State(None)
        self._unpriced: dict[str, int] = {}
        self._warned: set[str] = set()
        self._overrides: dict[str, Override] = (
            {}
            if overrides is None and overrides_file is None
            else parse_overrides(overrides, overrides_file, self._normalize_provider_name)
        )
        #: Spans are priced by this class's route; a subclass with its own price() is asked through it.
        self._own_route = type(self).price is PriceBook.price
        self._updater: UpdatePrices | None = None
        if update_prices and use_genai_prices:
            from genai_prices import UpdatePrices

            self._updater = UpdatePrices()
            self._updater.start()

    # --- public API ---------------------------------------------------------------------------

    def price(self, call: LlmCall, *, at: datetime | None = None) -> CostBreakdown:
        """The cost of ``call``, priced at ``at`` (the span's start time; default: now).

        Never raises: an unknown model gives ``status="unpriced"`` (warned once per provider/model
        and counted in :attr:`unpriced_counts`), unusable token counts ``status="invalid_usage"``.
        """
        try:
            return self._price(call, at)
        except Exception as exc:
            logger.exception("otel_costs: pricing failed")
            return self._unpriced_result(call, f"internal pricing error: {type(exc).__name__}: {exc}")

    def model_prices(
        self, model: str, provider: str | None = None, *, at: datetime | None = None
    ) -> ModelRates | None:
        """The per-1M-token rates of ``model`` at ``at`` (default: now), or ``None`` if unknown.

        ``None`` also for models priced in other units only (images, audio seconds). Never raises.
        """
        try:
            if not isinstance(model, str) or not model.strip():
                return None
            route = self._route(provider, None, model.strip())
            if isinstance(route, str) or route[0].delegate is not None:
                return None
            entry = route[0]
            plan = entry.plan_at(at or datetime.now(tz=UTC))
            return None if plan.error is not None else rates(entry, plan)
        except Exception:
            logger.exception("otel_costs: model_prices failed")
            return None

    @property
    def unpriced_counts(self) -> Mapping[str, int]:
        """How many price lookups found no price, per ``provider/model`` (a read-only copy).

        It shows which models need an override. One call traced on two spans is looked up on both,
        so it counts twice here; the exact count of unpriced calls in a subtree, each call once, is
        the span's ``cost.rollup.unpriced``."""
        with self._lock:
            return MappingProxyType(dict(self._unpriced))

    def close(self) -> None:
        """Stop the background price updates started by ``update_prices=True`` (idempotent)."""
        updater, self._updater = self._updater, None
        if updater is not None:
            try:
                updater.stop()  # type: ignore[no-untyped-call]
            except Exception:
                logger.exception("otel_costs: stopping genai-prices updates failed")

    def __enter__(self) -> PriceBook:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the span path ----------------------------------------------------------------------------

    def _cost_attributes(self, attributes: dict[str, object], start_ns: object) -> dict[str, Any] | None:
        """A copy of a span's ``attributes`` with its cost attributes; ``None`` when it carries no
        usage and is no model call (``read_usage`` gives ``None``): the span needs none.

        The processor's one pricing entry (``start_ns``: the span's start, ns since the epoch;
        ``None`` or 0: now; or the span itself, whose ``start_time`` is then read only when the
        price depends on the date). ``cost.status`` says what happened: ``priced`` (or ``partial``, kept
        from the capture layer), ``unpriced``, ``invalid_usage``, or ``aggregate`` for a sum over
        child calls, which is never priced and never counted. The direct cost in nano-USD is
        ``cost.direct_nanos`` (absent when not priced). The same attributes, keys in the same
        order, as :meth:`price` of the span's call gives through the writer; a plainly billable
        span is priced in integers without building the call (``Plan.span_costs``). Never
        raises; ``attributes`` is only read.
        """
        try:
            # (A span without usage gets None from billable_counts and then from read_usage.)
            fields = billable_counts(attributes) if self._own_route else None
        except Exception:
            fields = None  # odd attributes: read_usage reads (and flags) them below
        if fields is not None:
            try:
                names, counts = fields
                state = self._state
                if self._use_genai_prices and state.snapshot is not _snapshot():
                    state = self._current_state()
                route = state.routes.get(names)
                if route is None:
                    route = self._lookup(state, *names)
                if type(route) is tuple:
                    entry, reported, prefix, plan = route
                    if plan is None:
                        schedule = entry.schedule
                        plan = entry.default if schedule is None else entry.plan_at_ns(_start_ns(start_ns))
                        if plan.error is not None or entry.delegate is not None:
                            plan = None
                    figures = None if plan is None else plan.span_costs(counts)
                    # A span the capture layer flagged unpriced or invalid_usage keeps its flag.
                    preset = attributes.get(COST_STATUS)
                    if figures is not None and (preset is None or preset not in KEPT_FLAGS):
                        nanos, parts = figures
                        if preset is None:  # the common case
                            return write_priced(attributes, prefix, nanos, parts)
                        return write_cost(
                            dict(attributes),
                            STATUS_PARTIAL if preset == STATUS_PARTIAL else STATUS_PRICED,
                            None,
                            reported,
                            entry.model,
                            entry.source,
                            nanos,
                            parts,
                        )
            except Exception:
                logger.exception("otel_costs: fast pricing failed; pricing through the price book")
        try:
            return self._priced_attributes(attributes, start_ns)
        except Exception as exc:
            logger.exception("otel_costs: pricing a span failed")
            try:
                reason = f"internal pricing error: {type(exc).__name__}: {exc}"[:MAX_REASON]
                return write_cost(dict(attributes), STATUS_UNPRICED, reason)
            except Exception:
                return None

    def _priced_attributes(self, attributes: Mapping[str, object], start_ns: object) -> dict[str, Any] | None:
        """``_cost_attributes`` of any span: its usage through ``read_usage``, its call through
        :meth:`price` (which a subclass may override)."""
        own = dict(attributes)
        reading = read_usage(own)
        if reading is None:
            return None
        # The capture layer's flag (``partial``, ``unpriced``, ``invalid_usage``) and its precise
        # reason ("HTTP 500", "streamed without include_usage", a cut stream) reach the exported
        # span unchanged: what pricing would say instead is the generic guess.
        preset = own.get(COST_STATUS)
        kept = preset if type(preset) is str and preset in KEPT_FLAGS else None
        kept_reason = own.get(COST_STATUS_REASON) if kept is not None else None
        if reading.kind == "aggregate":
            write_cost(own, STATUS_AGGREGATE, reading.reason or "aggregate usage of child calls")
        elif kept is not None and (kept != STATUS_PARTIAL or reading.kind in ("missing", "invalid")):
            write_cost(own, kept, None if kept_reason else reading.reason)
        elif reading.kind == "missing":
            write_cost(own, STATUS_UNPRICED, reading.reason or "no token usage reported")
        elif reading.kind == "invalid" or reading.call is None:
            write_cost(own, STATUS_INVALID_USAGE, reading.reason or "unreadable usage")
        else:
            # The capture layer saw only part of the usage (e.g. a stream closed early), or the
            # span reports one side only: what was seen is priced, flagged as a lower bound.
            partial = kept is not None or reading.kind == "partial"
            status = STATUS_PARTIAL if partial else None
            reason = None if kept_reason else reading.reason
            try:
                cost = self.price(reading.call, at=datetime_of(_start_ns(start_ns)))
                if reason and cost.status == STATUS_PRICED:
                    cost = replace(cost, reason=reason)
                write_breakdown(own, cost, status)
            except Exception as exc:
                # PriceBook.price never raises, but a subclass might: the span must still say it
                # carries usage that was not priced, never pass as $0.
                logger.exception("otel_costs: price book %r raised", self)
                reason = f"price book raised {type(exc).__name__}: {exc}"[:MAX_REASON]
                write_cost(own, status or STATUS_UNPRICED, reason)
        return own

    # --- pricing --------------------------------------------------------------------------------

    def _price(self, call: LlmCall, at: datetime | None) -> CostBreakdown:
        usage = call.usage
        if not isinstance(usage, TokenUsage):
            return self._invalid_result(call, f"usage must be a TokenUsage, got {type(usage).__name__}")
        values = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        )
        if not plausible_counts(values):
            return self._invalid_result(call, usage_problem(usage) or "inconsistent token counts")
        route = self._route(call.provider, call.server_address, call.model)
        if isinstance(route, str):
            return self._unpriced_result(call, route)
        entry, provider = route[0], route[1]
        if entry.delegate is not None:
            return self._delegate(entry, usage, at or datetime.now(tz=UTC), call)
        # A model with one price set needs no timestamp (and no clock read).
        plan = entry.plan_at(at or datetime.now(tz=UTC)) if entry.choices else entry.default
        if plan.error is not None:
            return self._unpriced_result(call, plan.error)
        try:
            total, parts = plan.decimal(values)
        except ValueError as exc:
            return self._invalid_result(call, str(exc))
        return CostBreakdown(
            STATUS_PRICED,
            total,
            parts[B_INPUT],
            parts[B_CACHE_READ],
            parts[B_CACHE_WRITE],
            parts[B_OUTPUT],
            provider,
            entry.model,
            entry.source,
            None,
            parts[B_OTHER],
        )

    def _delegate(self, entry: Entry, usage: TokenUsage, at: datetime, call: LlmCall) -> CostBreakdown:
        assert entry.delegate is not None
        model_info, provider = entry.delegate
        try:
            result = model_info.calc_price(_genai_usage(usage), provider, genai_request_timestamp=at)
        except ValueError as exc:
            return self._invalid_result(call, f"genai-prices rejected the usage: {exc}")
        other = result.total_price - result.input_price - result.output_price
        return CostBreakdown(
            STATUS_PRICED,
            result.total_price,
            result.input_price,
            _ZERO,
            _ZERO,
            result.output_price,
            entry.provider,
            entry.model,
            entry.source,
            None,
            other,
        )

    # --- resolution, memoized per data snapshot ------------------------------------------------------

    def _route(self, provider: object, server: object, model: object) -> _Route:
        """The memoized route of a call with these names (as on the span)."""
        state = self._state
        if self._use_genai_prices and state.snapshot is not _snapshot():
            state = self._current_state()
        found = state.routes.get((provider, server, model))
        return self._lookup(state, provider, server, model) if found is None else found

    def _lookup(self, state: _State, provider: object, server: object, model: object) -> _Route:
        """Resolve a call's names (an override first, then genai-prices) and memoize the route."""
        found: _Route
        resolved: tuple[Entry, str | None] | str
        override = (
            self._overrides.get(model.strip().lower()) if self._overrides and isinstance(model, str) else None
        )
        if override is not None and (
            override.provider is None or override.provider == self._provider_id(state, provider, server)
        ):
            entry = override.entry
            resolved = (entry, entry.provider or self._provider_id(state, provider, server))
        elif not isinstance(model, str) or not model.strip():
            resolved = "the span has no model name"
        elif not self._use_genai_prices or state.snapshot is None:
            resolved = f"no price override for model {model.strip()!r} (genai-prices is disabled)"
        else:
            provider_name = provider if isinstance(provider, str) else None
            server_name = server if isinstance(server, str) else None
            names = resolve_model(state.snapshot, provider_name, server_name, model.strip())
            resolved = names if isinstance(names, str) else self._entry(state, *names)
        if isinstance(resolved, str):
            found = resolved
        else:
            entry, reported = resolved
            plan = entry.default
            fixed = plan if entry.schedule is None and plan.error is None and entry.delegate is None else None
            found = (entry, reported, priced_prefix(reported, entry.model, entry.source), fixed)
        with self._lock:
            if len(state.routes) >= _MAX_MEMO:
                state.routes.pop(next(iter(state.routes)))
            state.routes[(provider, server, model)] = found
        return found

    def _current_state(self) -> _State:
        state = self._state
        snapshot = _snapshot()
        if state.snapshot is not snapshot:
            # New data (UpdatePrices, or set_custom_snapshot): start a new memo. Threads that hold
            # the old state finish with it consistently (its snapshot and its memo together).
            with self._lock:
                if self._state.snapshot is not snapshot:
                    self._state = _State(snapshot)
                state = self._state
        return state

    def _entry(self, state: _State, provider: Provider, model_info: ModelInfo) -> tuple[Entry, str]:
        key = (provider.id, id(model_info))
        found = state.entries.get(key)
        if found is not None:
            return found[1], provider.id
        delegate = None
        if provider.id == "groq" and model_info.id in ("whisper-large-v3", "whisper-large-v3-turbo"):
            # genai-prices special-cases these in ModelInfo.calc_price: let it price them.
            delegate = (model_info, provider)
        entry = Entry(provider.id, model_info.id, PRICE_SOURCE_GENAI_PRICES, model_info.prices, delegate)
        with self._lock:
            state.entries[key] = (model_info, entry)
        return entry, provider.id

    def _provider_id(self, state: _State, provider_name: object, server: object) -> str | None:
        """The normalized provider of a call, for override ``provider`` restrictions."""
        key = (provider_name, server)
        if key in state.providers:
            return state.providers[key]
        result: str | None = None
        if isinstance(provider_name, str) and provider_name.strip():
            result = self._normalize_provider_name(provider_name)
        elif isinstance(server, str) and server.strip():
            by_url = provider_for_server(state.snapshot or _snapshot(), server)
            result = by_url.id if by_url is not None else None
        with self._lock:
            if len(state.providers) >= _MAX_MEMO:
                state.providers.pop(next(iter(state.providers)))
            state.providers[key] = result
        return result

    @staticmethod
    def _normalize_provider_name(name: str) -> str:
        return normalize_provider_name(_snapshot(), name)

    # --- outcomes ----------------------------------------------------------------------------------

    def _unpriced_result(self, call: LlmCall, reason: str) -> CostBreakdown:
        key = _call_key(call)
        with self._lock:
            if key not in self._unpriced and len(self._unpriced) >= _MAX_UNPRICED_KEYS:
                key = _OTHER_KEY
            self._unpriced[key] = self._unpriced.get(key, 0) + 1
            first = key not in self._warned
            if first:
                self._warned.add(key)
        if first:
            logger.warning("otel_costs: %s is unpriced: %s", key, reason)
        return _not_priced(STATUS_UNPRICED, call, reason)

    def _invalid_result(self, call: LlmCall, reason: str) -> CostBreakdown:
        key = "invalid:" + _call_key(call)
        with self._lock:
            first = key not in self._warned and len(self._warned) < 2 * _MAX_UNPRICED_KEYS
            if first:
                self._warned.add(key)
        if first:
            logger.warning("otel_costs: %s has invalid usage: %s", key[len("invalid:") :], reason)
        return _not_priced(STATUS_INVALID_USAGE, call, reason)


def _start_ns(start_ns: object) -> int:
    """A span start time as ns since the epoch; "now" for ``None``, 0 and values that are no time.
    ``start_ns`` may be the span itself (its ``start_time``)."""
    if start_ns is not None and type(start_ns) is not int and type(start_ns) is not float:
        start_ns = getattr(start_ns, "start_time", None)
    if type(start_ns) is int and start_ns and -_MAX_START_NS < start_ns < _MAX_START_NS:
        return start_ns
    if type(start_ns) is float and start_ns and -_MAX_START_NS < start_ns < _MAX_START_NS:
        return int(start_ns)
    return time.time_ns()


def _not_priced(status: str, call: LlmCall, reason: str) -> CostBreakdown:
    model = call.model if isinstance(call.model, str) else None
    provider = call.provider if isinstance(call.provider, str) else None
    return CostBreakdown(status, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, provider, model, None, reason)


def _call_key(call: LlmCall) -> str:
    provider = call.provider or call.server_address or "unknown"
    model = call.model or "unknown"
    return f"{provider}/{model}"


def _genai_usage(usage: TokenUsage) -> GenaiUsage:
    """The genai-prices ``Usage`` equivalent of ``usage`` (the same five counts)."""
    from genai_prices import Usage

    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )
