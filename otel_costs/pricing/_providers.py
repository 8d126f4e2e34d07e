"""Provider names seen on spans -> genai-prices provider ids.

genai-prices resolves many names by itself (``"aws.bedrock"`` contains ``"bedrock"``, so it is
``aws``), but some OpenTelemetry ``gen_ai.provider.name`` values it does not know (``x_ai``,
``azure.ai.inference``, ``gcp.gen_ai``) and one it gets wrong for pricing: ``azure.ai.openai``
contains ``"openai"`` and so would resolve to OpenAI instead of Azure. This table is consulted
first; names not in it go to genai-prices' own provider matching.

Keys are lower-case. A value of ``None`` means "a known provider that genai-prices has no prices
for": such a call is priced by user overrides only, never guessed from the model name (a local
``ollama`` model called ``gpt-oss`` must not get a cloud price, and watsonx prices its own way).
"""

from __future__ import annotations

from typing import Final

PROVIDER_ALIASES: Final[dict[str, str | None]] = {
    # OpenTelemetry GenAI semconv `gen_ai.provider.name` well-known values.
    "x_ai": "x-ai",
    "azure.ai.inference": "azure",
    "azure.ai.openai": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "ibm.watsonx.ai": None,
    # Deprecated `gen_ai.system` values.
    "az.ai.inference": "azure",
    "az.ai.openai": "azure",
    "vertex_ai": "google",
    "gemini": "google",
    # OpenInference `llm.provider` / `llm.system` and OpenLLMetry `gen_ai.system` spellings.
    "xai": "x-ai",
    "azure": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azureopenai": "azure",
    "vertexai": "google",
    "google_genai": "google",
    "google-genai": "google",
    "mistralai": "mistral",
    "togetherai": "together",
    "together.ai": "together",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
    "fireworksai": "fireworks",
    "zhipu": "zhipuai",
    "watsonx": None,
    "ollama": None,
}
