"""Provider names seen on spans -> genai-prices provider ids, and finding a call's model.

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

import ipaddress
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, Provider

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


def resolve_model(
    snapshot: DataSnapshot, provider_name: str | None, server: str | None, model: str
) -> tuple[Provider, ModelInfo] | str:
    """The genai-prices provider and model of a call, or why it has no price (the order of
    ``docs/pricing.md``: the provider name, the server address, genai-prices' model matching,
    a ``provider/model`` name)."""
    from genai_prices.data_snapshot import find_provider_by_id

    candidates: list[Provider] = []
    if isinstance(provider_name, str) and provider_name.strip():
        norm = provider_name.strip().lower()
        if norm in PROVIDER_ALIASES:
            alias = PROVIDER_ALIASES[norm]
            if alias is None:
                return (
                    f"genai-prices has no prices for provider {provider_name!r}; "
                    f"add a price override for model {model!r}"
                )
            norm = alias
        found = find_provider_by_id(snapshot.providers, norm)
        if found is not None:
            candidates.append(found)
    local_server = False
    if isinstance(server, str) and server.strip():
        local_server = is_local(server)
        by_url = provider_for_server(snapshot, server)
        if by_url is not None and by_url not in candidates:
            candidates.append(by_url)

    for candidate in candidates:
        model_info = candidate.find_model(model, all_providers=snapshot.providers)
        if model_info is not None:
            return candidate, model_info
    if not local_server:
        # No provider, or the model is not listed under it: genai-prices' own model matching.
        try:
            return snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            pass
        # LiteLLM / OpenRouter style "provider/model" names.
        prefix, slash, rest = model.partition("/")
        if slash and prefix and rest:
            alias = PROVIDER_ALIASES.get(prefix.lower(), prefix.lower())
            by_prefix = find_provider_by_id(snapshot.providers, alias) if alias else None
            if by_prefix is not None:
                model_info = by_prefix.find_model(rest, all_providers=snapshot.providers)
                if model_info is not None:
                    return by_prefix, model_info
    where = f"provider {provider_name!r}" if provider_name else "no provider name"
    if server:
        where += f", server {server!r}"
    return f"no price for model {model!r} ({where}) in genai-prices; add a price override"


def normalize_provider_name(snapshot: DataSnapshot, name: str) -> str:
    """The provider id of a provider name: the alias table, else genai-prices' provider matching,
    else the lower-cased name."""
    from genai_prices.data_snapshot import find_provider_by_id

    norm = name.strip().lower()
    if norm in PROVIDER_ALIASES:
        alias = PROVIDER_ALIASES[norm]
        return norm if alias is None else alias
    found = find_provider_by_id(snapshot.providers, norm)
    return found.id if found is not None else norm


def provider_for_server(snapshot: DataSnapshot, server: str) -> Provider | None:
    """The provider whose ``api_pattern`` matches ``server`` (a host name or a base URL)."""
    server = server.strip()
    url = server if "://" in server else f"https://{server}/"
    for provider in snapshot.providers:
        if re.match(provider.api_pattern, url):
            return provider
    return None


def is_local(server: str) -> bool:
    """True for loopback and private hosts: a self-hosted model is never guessed a cloud price."""
    server = server.strip()
    host = urlsplit(server).hostname if "://" in server else server
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
