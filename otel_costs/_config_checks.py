"""The checks every configuration file shares: ``ConfigError`` (the one base class of the project's
configuration errors), bounded USD amounts, URLs, and YAML that rejects a key given twice.

``PriceConfigError`` (price overrides) and ``BudgetConfigError`` (budget files) derive from
``ConfigError``; each message names the file or place, the key and what to write instead.
Nothing here imports more than the standard library (and ``yaml`` when a YAML file is read).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ("MAX_AMOUNT_CHARS", "ConfigError", "amount_text", "bounded_decimal", "check_url", "load_yaml")

#: Longest text of an amount read from a configuration (a price or a limit): more digits than
#: any real amount needs, few enough that no parsing or arithmetic on it is ever slow.
MAX_AMOUNT_CHARS: Final = 64


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names where, the key and the fix."""


def amount_text(
    value: str | int | float | Decimal, where: str, *, example: str, unit: str, error: type[ConfigError]
) -> str:
    """The text of an amount, refused (``error``) past ``MAX_AMOUNT_CHARS`` characters: a
    5,000-digit price is a typo or an attack, never a price (and ``int`` to text would raise)."""
    if isinstance(value, int) and abs(value) >= 10**MAX_AMOUNT_CHARS:
        raise error(f"{where}: an integer this large is not an amount; write {unit} such as {example}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if len(text) > MAX_AMOUNT_CHARS:
        raise error(
            f"{where}: {len(text)} characters is not an amount; write {unit} as a number such as "
            f"{example} (at most {MAX_AMOUNT_CHARS} characters)"
        )
    return text


def bounded_decimal(
    value: object,
    where: str,
    *,
    maximum: Decimal,
    example: str,
    unit: str,
    error: type[ConfigError] = ConfigError,
) -> Decimal:
    """``value`` (a number, or a string of one) as an exact, finite ``Decimal`` in ``[0, maximum]``.

    Raises ``ConfigError`` naming ``where`` for booleans, non-numbers, NaN, infinities, negative
    amounts, amounts above ``maximum`` and texts longer than ``MAX_AMOUNT_CHARS`` (a 5,000-digit
    price is a typo or an attack, never a price).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise error(f"{where}: write {unit} as a number such as {example}, got {value!r}")
    text = amount_text(value, where, example=example, unit=unit, error=error)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise error(f"{where}: write {unit} as a number such as {example}, got {value!r}") from None
    if not amount.is_finite():
        raise error(f"{where}: {value!r} is not a finite amount; write {unit} such as {example}")
    if amount < 0:
        raise error(f"{where}: {value!r} is negative; write {unit} >= 0 such as {example}")
    if amount > maximum:
        raise error(
            f"{where}: {value!r} is absurdly large (above {maximum:,}); write {unit} such as {example}"
        )
    return amount


def check_url(
    value: object, where: str, schemes: tuple[str, ...], example: str, error: type[ConfigError] = ConfigError
) -> str:
    """``value`` if it is a URL with one of ``schemes``, a host and a valid port; else ``ConfigError``.

    Checked when the file is read, so a typo (``htp://x``) is reported there, naming the key,
    not later inside a client library.
    """
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where}: expected a URL such as {example!r}, got {value!r}")
    try:
        parts = urlsplit(value.strip())
        port = parts.port  # raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        raise error(f"{where}: {value!r} is not a valid URL ({exc}); write e.g. {example!r}") from None
    if parts.scheme.lower() not in schemes:
        raise error(
            f"{where}: {value!r} has scheme {parts.scheme or '(none)'!r}; use {' or '.join(schemes)}, "
            f"e.g. {example!r}"
        )
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise error(f"{where}: {value!r} names no host; write e.g. {example!r}")
    if any(c in value for c in "\r\n\t ") or (port is not None and port == 0):
        raise error(f"{where}: {value!r} is not a valid URL; write e.g. {example!r}")
    return value.strip()


def load_yaml(raw: bytes, where: str, error: type[ConfigError] = ConfigError) -> Any:
    """Parse YAML safely, rejecting a mapping key given twice (``yaml.safe_load`` keeps the last).

    Raises ``error`` (a ``ConfigError``) naming ``where``, the repeated key and its line; a YAML
    syntax error as a plain ``ValueError`` with yaml's message.
    """
    import yaml

    class _UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the mapping constructor reports it
            if repeated:
                line = key_node.start_mark.line + 1
                raise error(
                    f"{where}: the key {key!r} is given twice (again on line {line}); keep one of them"
                )
        return loader.construct_mapping(node, deep=deep)

    _UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(raw, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None  # the caller says which file is not valid YAML
