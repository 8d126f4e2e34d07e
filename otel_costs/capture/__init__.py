"""HTTP capture: LLM calls priced from their httpx traffic, and attribution across HTTP hops.

``instrument_httpx()`` makes an LLM-call span for every POST to an LLM API made through httpx or
httpx2 (the openai and anthropic SDKs use them), reads its usage from the response body as the
application reads it, and applies the attribution header policy to every request.
``accept_attribution()`` is the receiving side. See ``docs/http-capture.md``.

Example::

    from otel_costs.capture import instrument_httpx

    instrument_httpx(attribution_hosts=["gateway.internal"])
"""

from otel_costs.capture._hosts import DEFAULT_LLM_HOSTS
from otel_costs.capture._instrument import instrument_httpx, uninstrument_httpx
from otel_costs.capture._trust import (
    AttributionTrust,
    accept_attribution,
    attribution_headers,
    attribution_rejection,
)

__all__ = [
    "AttributionTrust",
    "DEFAULT_LLM_HOSTS",
    "accept_attribution",
    "attribution_headers",
    "attribution_rejection",
    "instrument_httpx",
    "uninstrument_httpx",
]

from otel_costs._public import publish as _publish

_publish(globals(), __all__, __name__)
