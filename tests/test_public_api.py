"""The public surface: every public module's ``__all__`` is exactly its public names, alphabetised."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

import otel_costs

#: Every public module. A name is public API when it is in one of these modules' ``__all__``.
PUBLIC_MODULES = [
    "otel_costs",
    "otel_costs.attribution",
    "otel_costs.budgets",
    "otel_costs.budgets.ledger",
    "otel_costs.capture",
    "otel_costs.cli",
    "otel_costs.conventions",
    "otel_costs.metrics",
    "otel_costs.pipeline",
    "otel_costs.pricing",
    "otel_costs.report",
    "otel_costs.rollup",
    "otel_costs.testing",
]


def _public_names(module: ModuleType) -> set[str]:
    """Names a reader of ``module`` would take for API: not private, not submodules, not ``annotations``."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, ModuleType) or name == "annotations":
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted(name: str) -> None:
    """``__all__`` is kept in plain alphabetical order so additions are easy to review."""
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)


@pytest.mark.parametrize("name", [n for n in PUBLIC_MODULES if n != "otel_costs"])
def test_all_is_exactly_the_public_names(name: str) -> None:
    """Every public attribute of a subpackage is in its ``__all__`` and every name in ``__all__`` exists."""
    module = importlib.import_module(name)
    assert set(module.__all__) == _public_names(module)


def test_root_names_resolve_lazily() -> None:
    """The root's ``__all__`` names each resolve (on first use) and nothing else public is there."""
    for name in otel_costs.__all__:
        assert getattr(otel_costs, name) is not None
    assert set(otel_costs.__all__) == _public_names(otel_costs) | set(otel_costs.__all__)
    listed = {n for n in dir(otel_costs) if not n.startswith("_")}
    modules = {n for n in listed if isinstance(getattr(otel_costs, n), ModuleType)}
    assert set(otel_costs.__all__) == listed - modules
    with pytest.raises(AttributeError, match="no attribute 'TokenUsage'"):
        _ = otel_costs.TokenUsage


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_objects_name_their_public_module(name: str) -> None:
    """Classes and functions say they come from a public module (``__module__``), not a private one."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        obj = getattr(module, attr)
        if isinstance(obj, type) or inspect.isfunction(obj):
            home = obj.__module__
            assert home in PUBLIC_MODULES, (name, attr, home)
            # A name re-exported by a second public module (the root's, testing's
            # assert_attribution_complete) names its one home, which exports the same object.
            assert getattr(importlib.import_module(home), attr) is obj, (name, attr, home)


def test_root_names_are_their_subpackage_objects() -> None:
    """A root name is the very object its subpackage exports (one name, one object)."""
    for attr in otel_costs.__all__:
        obj = getattr(otel_costs, attr)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert getattr(importlib.import_module(obj.__module__), attr) is obj
