"""HTTP capture. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
from otel_costs.capture._httpx import (
    DEFAULT_LLM_HOSTS,
    AttributionTrust,
    accept_attribution,
    attribution_headers,
    attribution_rejection,
    instrument_httpx,
    uninstrument_httpx,
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

_publish(globals(), __all__, __name__)
