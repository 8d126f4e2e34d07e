"""The public surface: ``otel_costs.__all__`` is exactly the public names, alphabetised."""

from __future__ import annotations

import inspect

import otel_costs


def test_all_is_sorted() -> None:
    """``__all__`` is kept in alphabetical order so additions are easy to review."""
    assert otel_costs.__all__ == sorted(otel_costs.__all__)


def test_all_is_exactly_the_public_names() -> None:
    """Every public module attribute is in ``__all__`` and every name in ``__all__`` exists."""
    public = {name for name in vars(otel_costs) if not name.startswith("_")}
    # Submodules imported as a side effect of importing the package are not API.
    public -= {"testing"}
    assert set(otel_costs.__all__) == public


def test_public_names_come_from_private_modules() -> None:
    """Public objects are defined in private modules, so the package's layout can change freely."""
    for name in otel_costs.__all__:
        obj = getattr(otel_costs, name)
        if isinstance(obj, type) or inspect.isfunction(obj):  # type aliases have no home module
            assert obj.__module__.startswith("otel_costs._"), (name, obj.__module__)


def test_testing_module_exports_exist_and_are_sorted() -> None:
    """``otel_costs.testing.__all__`` is alphabetised and every name in it exists."""
    import otel_costs.testing as testing

    assert testing.__all__ == sorted(testing.__all__)
    for name in testing.__all__:
        assert hasattr(testing, name), name
