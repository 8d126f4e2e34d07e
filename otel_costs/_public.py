"""How a public module presents the names it re-exports from private modules.

Each public package (``otel_costs``, ``otel_costs.pricing``, ...) imports its names from private
modules and calls :func:`publish`, so that ``repr()``, tracebacks, docs and pickles name the public
path (``otel_costs.pricing.PriceBook``), not the private module that happens to define it.
``tests/test_public_api.py`` checks every public module against this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def publish(namespace: Mapping[str, object], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` of each class and function in ``names`` to ``module``.

    Example::

        __all__ = ["PriceBook"]
        publish(globals(), __all__, __name__)
    """
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__code__"):
            try:
                obj.__module__ = module
            except (AttributeError, TypeError):  # builtins and C types keep their own
                pass
