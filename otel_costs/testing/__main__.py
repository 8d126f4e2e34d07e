"""``python -m otel_costs.testing``: a fake LLM provider until stdin closes (prints its base URL)."""

from otel_costs.testing._fake_provider import main

main()
