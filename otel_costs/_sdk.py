"""Every private name of another package that otel-costs reads, each behind a probe.

Other packages' private names (the OpenTelemetry SDK's, the httpx instrumentation's, wrapt's)
are read here and nowhere else. Each is probed once, at import: a probe that misses leaves the
public (slower) path in force, and ``tests/test_sdk.py`` fails for it on the versions that
``pyproject.toml`` allows, so a dependency release that breaks one is seen rather than silently
slower.
"""

from __future__ import annotations

# --- OpenTelemetry context and baggage (attribution) -------------------------------------------
#
#
#
#
#

# --- OpenTelemetry SDK spans (pipeline: processor, exporter) -----------------------------------
#
#
#
#
#

# --- opentelemetry-instrumentation-httpx and wrapt (capture) -----------------------------------
#
#
#
#
#
