"""The public surface of ``otel_costs.integrations.langchain`` and what importing it loads."""

from __future__ import annotations

import subprocess
import sys

import otel_costs.integrations.langchain as module


def test_all_is_alphabetised_and_public() -> None:
    """``__all__`` is sorted, and each of its names is defined with the module as its public path."""
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name).__module__ == module.__name__, name


def test_import_does_not_load_langgraph_or_the_model_clients() -> None:
    """Importing the integration loads langchain_core only: no langgraph, langchain_openai or openai."""
    code = (
        "import sys, otel_costs.integrations.langchain; "
        "print(sorted(m for m in ('langgraph', 'langchain_openai', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
