"""How a public module presents the names it re-exports from private modules.

Each public package (``otel_costs``, ``otel_costs.pricing``, ...) imports its names from private
modules and calls :func:`publish`, so that ``repr()``, tracebacks, docs and pickles name the public
path (``otel_costs.pricing.PriceBook``), not the private module that happens to define it.
``tests/test_public_api.py`` checks every public module against this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping


def publish(namespace: Mapping[str, object], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` of each class and function in ``names`` to ``module``.

    Example::

        from otel_costs._public import publish as _publish

        __all__ = ["PriceBook"]
        _publish(globals(), __all__, __name__)
    """
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            with contextlib.suppress(AttributeError, TypeError):  # builtins and C types keep their own
                obj.__module__ = module
