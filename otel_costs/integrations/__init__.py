"""Framework integrations: exact per-agent cost from each framework's own hooks.

One small public module per framework, each needing only its framework (an optional extra, e.g.
``pip install 'otel-costs[langchain]'``), never imported by the core:

- ``otel_costs.integrations.langchain``: LangChain and LangGraph (a callback handler).
- ``otel_costs.integrations.crewai``: CrewAI (agents and tasks as agent scopes).
- ``otel_costs.integrations.autogen``: AutoGen AgentChat (one workflow per team run).
- ``otel_costs.integrations.openai_agents``: the OpenAI Agents SDK (a tracing processor).
- ``otel_costs.integrations.pydantic_ai``: Pydantic AI (its own instrumentation already works).

``docs/frameworks.md`` shows each one, the by-agent table it prints, and the tested matrix of
framework x instrumentation.
"""
