"""The LLM API dialects: which API a request path calls, and how each one reports model and usage.

Owns the dialect constants, ``api_for_path`` (request path -> ``ApiCall``), ``loads_json`` and
``CallState``, what the response parsers (``_responses`` for JSON bodies, ``_sse`` for streams)
have learned about one call: its model, response id, error and token counts, read from each
dialect's usage record into OpenTelemetry GenAI semantics (input tokens include cached ones,
output tokens include reasoning ones). A count the provider did not report stays ``None`` here.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Final

from otel_costs import conventions as conv

# --- API dialects: the wire format of a request path --------------------------------------------
OPENAI_CHAT: Final = "openai.chat_completions"
OPENAI_COMPLETIONS: Final = "openai.completions"
OPENAI_RESPONSES: Final = "openai.responses"
OPENAI_EMBEDDINGS: Final = "openai.embeddings"
ANTHROPIC_MESSAGES: Final = "anthropic.messages"
GEMINI_GENERATE: Final = "gemini.generate_content"

_MAX_TOKENS: Final = 2**53
#: Per dialect, the provider's names of the input and the output count that a whole usage record
#: has (``None``: the output count may be absent: embeddings; Gemini omits a zero one).
_OPENAI_KEYS: Final = ("prompt_tokens", "completion_tokens")
_COUNT_KEYS: Final[dict[str, tuple[str, str | None]]] = {
    OPENAI_CHAT: ("prompt_tokens", "completion_tokens"),
    OPENAI_COMPLETIONS: ("prompt_tokens", "completion_tokens"),
    OPENAI_EMBEDDINGS: ("prompt_tokens", None),
    OPENAI_RESPONSES: ("input_tokens", "output_tokens"),
    ANTHROPIC_MESSAGES: ("input_tokens", "output_tokens"),
    GEMINI_GENERATE: ("promptTokenCount", None),
}
_DECODER: Final = json.JSONDecoder()
_JSON_WHITESPACE: Final = " \t\n\r"


def loads_json(data: bytes) -> Any:
    """``json.loads(data)``, quicker for the usual UTF-8 object or array: same result, same errors.

    ``json.loads`` of bytes first guesses the encoding and runs two whitespace regexes, about
    half of its time on a small body. A body starting with ``{`` or ``[`` can only be UTF-8 (a
    UTF-16/32 body or a BOM starts otherwise), so it is decoded and scanned directly; anything
    else goes to ``json.loads``. Raises ``ValueError`` (``JSONDecodeError``, ``UnicodeDecodeError``).
    """
    if data[:1] not in (b"{", b"["):
        return json.loads(data)
    text = data.decode("utf-8")
    obj, end = _DECODER.raw_decode(text)
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


@dataclass(frozen=True)
class ApiCall:
    """What a request path says about an LLM API call."""

    dialect: str
    """The wire format, one of the dialect constants of this module."""
    operation: str
    """``gen_ai.operation.name``: ``chat``, ``text_completion``, ``embeddings`` or ``generate_content``."""
    provider: str
    """The ``gen_ai.provider.name`` this API belongs to when no host rule names another."""
    path_model: str | None = None
    """The model named in the path (Gemini), else ``None``."""


@functools.lru_cache(maxsize=512)
def api_for_path(path: str) -> ApiCall | None:
    """The LLM API a POST to ``path`` calls, or ``None`` if it is not a billable LLM endpoint.

    >>> api_for_path("/v1/chat/completions").operation
    'chat'
    """
    if path.endswith("/chat/completions"):
        return ApiCall(OPENAI_CHAT, "chat", "openai")
    if path.endswith("/responses"):
        return ApiCall(OPENAI_RESPONSES, "chat", "openai")
    if path.endswith("/embeddings"):
        return ApiCall(OPENAI_EMBEDDINGS, "embeddings", "openai")
    if path.endswith("/completions"):
        return ApiCall(OPENAI_COMPLETIONS, "text_completion", "openai")
    if path.endswith("/v1/messages"):
        return ApiCall(ANTHROPIC_MESSAGES, "chat", "anthropic")
    if path.endswith((":generateContent", ":streamGenerateContent")):
        _, sep, rest = path.rpartition("/models/")
        model = rest.split(":", 1)[0] if sep else ""
        provider = "gcp.vertex_ai" if "/publishers/google/" in path else "gcp.gemini"
        return ApiCall(GEMINI_GENERATE, "generate_content", provider, model or None)
    return None


class CallState:
    """The model, usage and outcome of one call, filled in by the body parsers."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.model: str | None = None
        self.response_id: str | None = None
        self.error_type: str | None = None
        self.problem: str | None = None
        self.complete = False
        self.input: int | None = None
        self.output: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.reasoning: int | None = None
        # Anthropic reports input, cache read and cache write separately: summed in usage_attributes().
        self.raw_input: int | None = None
        self.dropped_events = 0
        #: The first unusable usage field seen ("invalid usage field prompt_tokens=-5"), if any.
        self.invalid: str | None = None
        #: The provider's names of the input and output counts in the usage shape read last.
        self.count_keys: tuple[str, str | None] = _COUNT_KEYS.get(
            dialect, ("prompt_tokens", "completion_tokens")
        )

    def usage_attributes(self) -> dict[str, int]:
        """The ``gen_ai.usage.*`` attributes of the counts reported (a count not reported is left out)."""
        input_tokens = self.input
        if self.dialect == ANTHROPIC_MESSAGES and self.raw_input is not None:
            input_tokens = self.raw_input + (self.cache_read or 0) + (self.cache_write or 0)
        pairs = (
            (conv.GEN_AI_USAGE_INPUT_TOKENS, input_tokens),
            (conv.GEN_AI_USAGE_OUTPUT_TOKENS, self.output),
            (conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, self.cache_read),
            (conv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, self.cache_write),
            (conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, self.reasoning),
        )
        return {name: value for name, value in pairs if value is not None}

    def has_usage(self) -> bool:
        return (
            self.input is not None
            or self.raw_input is not None
            or self.output is not None
            or self.cache_read is not None
            or self.cache_write is not None
            or self.reasoning is not None
        )

    def note_model(self, obj: dict[str, Any]) -> None:
        if self.model is None:
            model = obj.get("modelVersion" if self.dialect == GEMINI_GENERATE else "model")
            if isinstance(model, str) and 0 < len(model) <= 256:
                self.model = model
        if self.response_id is None:
            rid = obj.get("responseId" if self.dialect == GEMINI_GENERATE else "id")
            if isinstance(rid, str) and 0 < len(rid) <= 256:
                self.response_id = rid

    def note_error(self, obj: dict[str, Any]) -> bool:
        """Record an error object (any provider's shape); True if ``obj`` was one."""
        error = obj.get("error")
        if obj.get("type") == "error" and isinstance(error, dict):  # Anthropic
            kind = error.get("type")
        elif isinstance(error, dict):  # OpenAI, Gemini
            kind = error.get("type") or error.get("status") or error.get("code")
        elif obj.get("type") == "error":  # OpenAI Responses stream error event
            kind = obj.get("code") or "error"
        else:
            return False
        self.error_type = str(kind)[:100] if kind is not None else "error"
        return True

    def _tokens(self, container: dict[str, Any], key: str, sub: str | None = None) -> int | None:
        """The token count at ``container[key]`` (``container[key][sub]`` with ``sub``), if valid."""
        value = container.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        if value is None:
            return None
        if type(value) is not int or not 0 <= value < _MAX_TOKENS:  # bool is not an int here
            path = f"{key}.{sub}" if sub is not None else key
            self.problem = f"invalid usage field {path}={value!r}"[:200]
            self.invalid = self.invalid or self.problem
            return None
        return value

    def missing_count(self) -> str | None:
        """Why the final usage record is not whole: it names the count it lacks (``prompt_tokens``
        missing or ``null``), for a call that reports both; ``None`` when nothing is missing.

        Embeddings report no output count, and Gemini leaves out a zero ``candidatesTokenCount``;
        an error response may report its input only (nothing was generated).
        """
        if not self.complete or self.error_type is not None:
            return None
        input_key, output_key = self.count_keys
        anthropic = self.dialect == ANTHROPIC_MESSAGES
        has_input = (self.raw_input if anthropic else self.input) is not None
        if not has_input:
            return f"the usage record has no {input_key} (missing or null): priced on the output alone"
        if output_key is not None and self.output is None:
            return f"the usage record has no {output_key} (missing or null): priced on the input alone"
        return None

    def note_usage(self, usage: Any, *, final: bool = True) -> None:
        """Read a usage object of this dialect; ``final`` marks the call's last usage record."""
        if not isinstance(usage, dict):
            return
        t = self._tokens
        if self.dialect == ANTHROPIC_MESSAGES:
            # message_delta usage is cumulative and may repeat the input fields: take what it has.
            for attr, key in (
                ("raw_input", "input_tokens"),
                ("cache_read", "cache_read_input_tokens"),
                ("cache_write", "cache_creation_input_tokens"),
            ):
                value = t(usage, key)
                if value is not None:
                    setattr(self, attr, value)
            if final:
                self.output = t(usage, "output_tokens")
                self.reasoning = t(usage, "output_tokens_details", "thinking_tokens")
        elif self.dialect == GEMINI_GENERATE:
            prompt = t(usage, "promptTokenCount")
            tool_prompt = t(usage, "toolUsePromptTokenCount")
            candidates = t(usage, "candidatesTokenCount")
            thoughts = t(usage, "thoughtsTokenCount")
            if prompt is not None or tool_prompt is not None:
                self.input = (prompt or 0) + (tool_prompt or 0)
            if candidates is not None or thoughts is not None:
                self.output = (candidates or 0) + (thoughts or 0)
            self.cache_read = t(usage, "cachedContentTokenCount")
            self.reasoning = thoughts
        elif "prompt_tokens" in usage or "completion_tokens" in usage:
            # Chat completions, completions, embeddings and most OpenAI-compatible servers.
            self.count_keys = _COUNT_KEYS.get(self.dialect, _OPENAI_KEYS)
            self.input = t(usage, "prompt_tokens")
            if self.dialect != OPENAI_EMBEDDINGS or "completion_tokens" in usage:
                self.output = t(usage, "completion_tokens")
            self.cache_read = t(usage, "prompt_tokens_details", "cached_tokens")
            self.cache_write = t(usage, "prompt_tokens_details", "cache_write_tokens")
            self.reasoning = t(usage, "completion_tokens_details", "reasoning_tokens")
        else:
            # The Responses API shape (also used by some compatible servers on chat completions).
            self.count_keys = _COUNT_KEYS[OPENAI_RESPONSES]
            self.input = t(usage, "input_tokens")
            self.output = t(usage, "output_tokens")
            self.cache_read = t(usage, "input_tokens_details", "cached_tokens")
            self.cache_write = t(usage, "input_tokens_details", "cache_write_tokens")
            self.reasoning = t(usage, "output_tokens_details", "reasoning_tokens")
        if final and self.has_usage():
            self.complete = True

    def note_body(self, obj: Any) -> None:
        """Read a whole (non-streamed) response body."""
        if isinstance(obj, list) and self.dialect == GEMINI_GENERATE:
            # Gemini streamGenerateContent without alt=sse: a JSON array of chunks.
            for item in obj:
                if isinstance(item, dict):
                    self.note_body(item)
            return
        if not isinstance(obj, dict):
            self.problem = "the response body is JSON but not an object"
            return
        self.note_error(obj)
        self.note_model(obj)
        if self.dialect == GEMINI_GENERATE:
            if "usageMetadata" in obj:
                self.note_usage(obj["usageMetadata"], final=False)
                self.complete = self.has_usage()
            return
        if "usage" in obj:
            self.note_usage(obj["usage"])
        elif isinstance(obj.get("response"), dict):
            self.note_body(obj["response"])
