"""The application's code location, as OpenTelemetry ``code.*`` attributes, for spans otel-costs starts.

The Attribution Auditor (``otel-costs audit``) groups its findings by call site: a model call or
scope that drops attribution is reported at the line of the application that made it, not at a
line inside httpx or an SDK. ``workflow()``, ``agent()``, ``retry()`` and the HTTP capture's LLM
spans record it; the caller is the first frame outside the libraries below.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Final

from otel_costs import conventions as conv

#: Top-level packages whose frames are never a call site (the library, the SDKs it wraps, the
#: HTTP stack, and the standard library's plumbing between them).
_LIBRARIES: Final = frozenset(
    {
        "otel_costs",
        "opentelemetry",
        "wrapt",
        "httpx",
        "httpx2",
        "httpcore",
        "h11",
        "h2",
        "anyio",
        "sniffio",
        "openai",
        "anthropic",
        "asyncio",
        "contextlib",
        "concurrent",
        "threading",
        "functools",
    }
)
#: Frames looked at, at most: past that the span gets no call site rather than a slow walk.
_MAX_FRAMES: Final = 64


def call_site() -> dict[str, object]:
    """``code.function.name``, ``code.file.path`` and ``code.line.number`` of the application's caller.

    ``{}`` when no frame outside the libraries is found within 64 frames. Never raises. Example::

        attributes.update(call_site())
    """
    try:
        frame: FrameType | None = sys._getframe(1)
        for _ in range(_MAX_FRAMES):
            if frame is None:
                return {}
            module = frame.f_globals.get("__name__")
            if not isinstance(module, str) or module.partition(".")[0] not in _LIBRARIES:
                code = frame.f_code
                return {
                    conv.CODE_FUNCTION_NAME: f"{module}.{code.co_qualname}" if module else code.co_qualname,
                    conv.CODE_FILE_PATH: code.co_filename,
                    conv.CODE_LINE_NUMBER: frame.f_lineno,
                }
            frame = frame.f_back
    except Exception:  # an odd frame object must not cost the span
        return {}
    return {}
