"""Host rules: which hosts are LLM APIs (and of which provider), and which receive attribution.

Owns ``DEFAULT_LLM_HOSTS`` and ``HostRules``, the matcher of ``host``, ``host:port``, ``*.suffix``
globs and CIDR networks that ``instrument_httpx`` builds from its ``llm_hosts`` and
``attribution_hosts``, and the address parsing that ``AttributionTrust`` shares.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Generic, TypeVar

T = TypeVar("T")

#: Public LLM API hosts -> ``gen_ai.provider.name``. ``None`` means "infer from the API path".
#: Extend it for your own servers: ``{**DEFAULT_LLM_HOSTS, "vllm.internal:8000": "vllm"}``.
DEFAULT_LLM_HOSTS: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "api.openai.com": "openai",
        "*.openai.azure.com": "azure.ai.openai",
        "*.cognitiveservices.azure.com": "azure.ai.openai",
        "*.services.ai.azure.com": "azure.ai.inference",
        "api.anthropic.com": "anthropic",
        "generativelanguage.googleapis.com": "gcp.gemini",
        "aiplatform.googleapis.com": "gcp.vertex_ai",
        "*-aiplatform.googleapis.com": "gcp.vertex_ai",
        "api.groq.com": "groq",
        "api.mistral.ai": "mistral_ai",
        "api.deepseek.com": "deepseek",
        "api.x.ai": "x_ai",
        "api.perplexity.ai": "perplexity",
        "api.together.xyz": "together",
        "api.together.ai": "together",
        "openrouter.ai": "openrouter",
        "api.fireworks.ai": "fireworks",
        "api.cohere.com": "cohere",
    }
)

NO_MATCH: Final = object()
_MISS: Final = object()


class HostRules(Generic[T]):
    """Host patterns -> values: ``host``, ``host:port``, ``*.suffix`` / ``*`` globs, or CIDR networks."""

    def __init__(self, rules: Mapping[str, T]) -> None:
        self._exact: dict[tuple[str, int | None], T] = {}
        self._globs: list[tuple[re.Pattern[str], int | None, T]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None, T]] = []
        self._cache: dict[tuple[str, int | None], object] = {}
        for pattern, value in rules.items():
            if not isinstance(pattern, str) or not pattern.strip():
                raise ValueError(
                    f"host rule {pattern!r} must be a non-empty string like 'api.example.com:443'"
                )
            host, port = _split_host_port(pattern.strip().lower())
            if "/" in host:
                try:
                    network = ipaddress.ip_network(host, strict=False)
                except ValueError as exc:
                    raise ValueError(f"host rule {pattern!r} is not a valid CIDR network: {exc}") from None
                self._networks.append((network, port, value))
            elif "*" in host:
                regex = re.compile("^" + ".*".join(re.escape(part) for part in host.split("*")) + "$")
                self._globs.append((regex, port, value))
            else:
                self._exact[(host, port)] = value

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs or self._networks)

    def match(self, host: str, port: int | None) -> object:
        """The value of the first rule matching ``host``/``port``, or ``NO_MATCH``."""
        key = (host, port)
        cached = self._cache.get(key, _MISS)
        if cached is not _MISS:
            return cached
        found = self._lookup(host, port)
        if len(self._cache) < 1024:
            self._cache[key] = found
        return found

    def _lookup(self, host: str, port: int | None) -> object:
        for candidate in ((host, port), (host, None)):
            if candidate in self._exact:
                return self._exact[candidate]
        for regex, rule_port, value in self._globs:
            if (rule_port is None or rule_port == port) and regex.match(host):
                return value
        if self._networks:
            address = parse_ip(host)
            if address is not None:
                for network, rule_port, value in self._networks:
                    if (rule_port is None or rule_port == port) and address in network:
                        return value
        return NO_MATCH


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [::1]:8000
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            raise ValueError(f"host rule {text!r} has a port that is not a number")
        return host, int(port)
    return text, None


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
