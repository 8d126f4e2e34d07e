"""otel-costs: where the money goes in multi-agent LLM systems, on plain OpenTelemetry."""
