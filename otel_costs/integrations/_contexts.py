"""Scopes left in another ``contextvars.Context`` than they were entered in, and their repair.

LangGraph starts each async node task in its caller's context and ends it in the task's own, so a
callback handler's scope can end where its context is not current. This module owns the probe that
tells whether a callback runs in the context a scope was entered in, the bounded record of contexts
left behind, and ``_heal``, which puts back, where one is still current, the context it replaced.
"""

from __future__ import annotations

import contextvars
import threading
from collections import OrderedDict

from opentelemetry import context

#: Marks the contextvars.Context a scope was entered in: resetting this token elsewhere fails.
_PROBE: contextvars.ContextVar[object] = contextvars.ContextVar("otel_costs.langchain.probe", default=None)

#: Contexts of scopes that ended in another contextvars.Context than they were entered in, by id
#: -> (that context, the context before it). Where they were entered they are still current:
#: the next callback there (LangGraph starts each async node task eagerly in the caller's context
#: and ends it in the task's own) puts the context from before back. Bounded, oldest out first.
_STALE: OrderedDict[int, tuple[context.Context, context.Context]] = OrderedDict()
_STALE_MAX = 4096
_stale_lock = threading.Lock()


def _mark_stale(entered: context.Context, before: context.Context) -> None:
    """Remember that ``entered`` (current where its scope was entered) should be ``before`` again."""
    with _stale_lock:
        _STALE[id(entered)] = (entered, before)
        while len(_STALE) > _STALE_MAX:
            _STALE.popitem(last=False)


def _is_stale(ctx: context.Context) -> bool:
    """Whether ``ctx`` is a context a scope left behind (see ``_STALE``)."""
    with _stale_lock:
        found = _STALE.get(id(ctx))
    return found is not None and found[0] is ctx


def _heal() -> None:
    """If the current context is one a scope left behind (see ``_STALE``), restore what it replaced."""
    for _ in range(64):  # a chain of stale scopes is as deep as the runs that nested: bounded anyway
        current = context.get_current()
        with _stale_lock:
            found = _STALE.get(id(current))
        if found is None or found[0] is not current:
            return
        context.attach(found[1])  # a set, not a detach: the token of that entry is not valid here


def _same_context(probe: contextvars.Token[object]) -> bool:
    """Whether ``probe`` was made in the running ``contextvars.Context`` (and resets it there)."""
    try:
        _PROBE.reset(probe)
    except (ValueError, RuntimeError):
        return False
    return True
