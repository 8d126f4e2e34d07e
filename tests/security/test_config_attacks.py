"""Hostile and mistyped configuration: every bad value raises the project's own config error (issue 13.5).

One row per case. Each file case writes a real budget or price file, loads it the way users do
(``BudgetConfig.load``, ``PriceBook(overrides_file=...)``) and checks that the error is a
``ConfigError`` (``BudgetConfigError`` or ``PriceConfigError``) whose message names the file, the
key and what to write instead: never ``decimal.InvalidOperation``, a bare ``ValueError``, a
silent "last one wins", or a failure later inside redis-py.
"""

# ruff: noqa: E501  (the case table keeps one row per line)
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from otel_costs.budgets import Budget, BudgetConfig, BudgetConfigError
from otel_costs.budgets.ledger import RedisLedger
from otel_costs.pipeline import ConfigError
from otel_costs.pricing import PriceBook, PriceConfigError

BUDGET = '[[budgets]]\nname = "team"\nlimit_usd = {limit}\n'
ONE_BUDGET = BUDGET.format(limit='"25.00"')
PRICES = "m = {{ input = {rate}, output = 1 }}\n"

# (id, file name, content, error type, fragments the message must hold)
FILE_CASES = [
    ("limit-1e30", "b.toml", BUDGET.format(limit='"1e30"'), BudgetConfigError, ["limit_usd", "absurdly large"]),
    ("limit-5000-digits", "b.toml", BUDGET.format(limit='"' + "9" * 5000 + '"'), BudgetConfigError,
     ["limit_usd", "characters", '"25.00"']),
    ("limit-float-1e300", "b.toml", BUDGET.format(limit="1e300"), BudgetConfigError, ["limit_usd", "absurdly large"]),
    ("limit-nan", "b.toml", BUDGET.format(limit='"NaN"'), BudgetConfigError, ["limit_usd", "positive"]),
    ("limit-inf", "b.toml", BUDGET.format(limit="inf"), BudgetConfigError, ["limit_usd", "positive"]),
    ("limit-negative", "b.toml", BUDGET.format(limit="-5"), BudgetConfigError, ["limit_usd", "positive"]),
    ("limit-not-a-number", "b.toml", BUDGET.format(limit='"lots"'), BudgetConfigError, ["limit_usd", '"25.00"']),
    ("redis-url-scheme", "b.toml", ONE_BUDGET + '[ledger]\nkind = "redis"\nurl = "htp://x"\n', BudgetConfigError,
     ["[ledger] url", "'htp'", "redis://127.0.0.1:6379/0"]),
    ("redis-url-no-host", "b.toml", ONE_BUDGET + '[ledger]\nkind = "redis"\nurl = "redis://"\n', BudgetConfigError,
     ["[ledger] url", "no host", "redis://127.0.0.1:6379/0"]),
    ("redis-url-bad-port", "b.toml", ONE_BUDGET + '[ledger]\nkind = "redis"\nurl = "redis://h:99999/0"\n',
     BudgetConfigError, ["[ledger] url", "not a valid URL", "redis://127.0.0.1:6379/0"]),
    ("ledger-path-under-redis", "b.toml",
     ONE_BUDGET + '[ledger]\nkind = "redis"\nurl = "redis://h:6379/0"\npath = "x.db"\n', BudgetConfigError,
     ["[ledger]", "'path'", "kind 'redis'", "remove it"]),
    ("ledger-path-under-memory", "b.toml", ONE_BUDGET + '[ledger]\npath = "x.db"\n', BudgetConfigError,
     ["[ledger]", "'path'", "kind 'memory'"]),
    ("ledger-unknown-key", "b.toml", ONE_BUDGET + '[ledger]\nkind = "sqlite"\npaht = "x.db"\n', BudgetConfigError,
     ["[ledger]", "'paht'", "known keys"]),
    ("top-unknown-key", "b.toml", 'ledgr = 1\n' + ONE_BUDGET, BudgetConfigError, ["'ledgr'", "known keys"]),
    ("webhook-url-scheme", "b.toml", ONE_BUDGET + '[alerts]\nwebhook_url = "htp://hooks"\n', BudgetConfigError,
     ["webhook_url", "'htp'", "https://"]),
    ("webhook-url-no-host", "b.toml", ONE_BUDGET + '[alerts]\nwebhook_url = "https://"\n', BudgetConfigError,
     ["webhook_url", "no host"]),
    ("reservation-ttl-1e300", "b.toml", "reservation_ttl = 1e300\n" + ONE_BUDGET, BudgetConfigError, ["reservation_ttl", "at most", "'10m'"]),
    ("budget-yaml-key-twice", "b.yaml", "budgets:\n- name: team\n  limit_usd: '25'\n  limit_usd: '2500'\n",
     BudgetConfigError, ["'limit_usd'", "given twice", "keep one"]),
    ("price-5000-digits", "p.toml", PRICES.format(rate='"' + "9" * 5000 + '"'), PriceConfigError,
     ["['m'].input", "characters", "2.5"]),
    ("price-int-5000-digits", "p.toml", PRICES.format(rate="9" * 5000), PriceConfigError,
     ["p.toml", "line 1 ('m')", "thousands of digits", "2.5"]),
    ("price-yaml-int-5000-digits", "p.yaml", "m:\n  input: " + "9" * 5000 + "\n  output: 1\n", PriceConfigError,
     ["p.yaml", "line 2 ('input')", "thousands of digits", "2.5"]),
    ("price-1e300", "p.toml", PRICES.format(rate="1e300"), PriceConfigError, ["['m'].input", "absurdly large", "2.5"]),
    ("price-string-1e300", "p.toml", PRICES.format(rate='"1e300"'), PriceConfigError, ["['m'].input", "absurdly large"]),
    ("price-nan", "p.toml", PRICES.format(rate="nan"), PriceConfigError, ["['m'].input", "2.5"]),
    ("price-string-nan", "p.toml", PRICES.format(rate='"NaN"'), PriceConfigError, ["['m'].input", "finite price >= 0"]),
    ("price-inf", "p.toml", PRICES.format(rate="inf"), PriceConfigError, ["['m'].input", "2.5"]),
    ("price-negative", "p.toml", PRICES.format(rate="-1"), PriceConfigError, ["['m'].input", "finite price >= 0"]),
    ("price-unknown-key", "p.toml", "m = { input = 1, output = 1, ouput = 2 }\n", PriceConfigError,
     ["['m']", "'ouput'", "allowed"]),
    ("prices-yaml-model-twice", "p.yaml", "m:\n  input: 1\n  output: 1\nm:\n  input: 9\n  output: 9\n",
     PriceConfigError, ["'m'", "given twice", "line 4"]),
    ("prices-yaml-model-twice-by-case", "p.yaml", "m:\n  input: 1\n  output: 1\nM:\n  input: 9\n  output: 9\n",
     PriceConfigError, ["same model"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "error", "fragments"), [pytest.param(*case[1:], id=case[0]) for case in FILE_CASES]
)
def test_a_bad_config_file_raises_a_config_error_naming_file_key_and_fix(
    tmp_path: Path, name: str, content: str, error: type[ConfigError], fragments: list[str]
) -> None:
    """A hostile or mistyped budget or price file raises the project's config error, naming the
    file, the key and what to write instead."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        if name.startswith("b."):
            BudgetConfig.load(path)
        else:
            PriceBook(overrides_file=path, use_genai_prices=False)
    assert type(caught.value) is error
    message = str(caught.value)
    assert name in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("limit", "fragment"),
    [
        (Decimal("1e30"), "up to 1,000,000,000,000 USD"),
        (Decimal("9" * 5000), "up to 1,000,000,000,000 USD"),
        (Decimal("NaN"), "finite"),
        (Decimal("-Infinity"), "finite"),
        (10**5000, "up to 1,000,000,000,000 USD"),
        (Decimal(-5), "positive"),
    ],
    ids=["1e30", "5000-digits", "nan", "-inf", "int-5000-digits", "negative"],
)
def test_a_bad_budget_limit_in_code_raises_a_config_error(limit: Decimal | int, fragment: str) -> None:
    """Budget(limit_usd=...) refuses absurd and non-finite limits with BudgetConfigError, never
    decimal.InvalidOperation."""
    with pytest.raises(BudgetConfigError, match="limit_usd") as caught:
        Budget("team", limit)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("rate", "fragment"),
    [("9" * 5000, "characters"), (1e300, "absurdly large"), (float("nan"), "2.5"), (Decimal("-1"), ">= 0")],
    ids=["5000-digits", "1e300", "nan", "negative"],
)
def test_a_bad_price_in_code_raises_a_config_error(rate: object, fragment: str) -> None:
    """PriceBook({...}) refuses absurd, overlong and non-finite rates with PriceConfigError naming the key."""
    with pytest.raises(PriceConfigError, match=r"overrides\['m'\]\.input") as caught:
        PriceBook({"m": {"input": rate, "output": 1}}, use_genai_prices=False)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("url", ["htp://x", "redis://", "redis://h:notaport/0", "http://h:6379"])
def test_a_malformed_redis_url_is_refused_at_construction(url: str) -> None:
    """RedisLedger(url) checks the URL when built, naming it and a correct example, instead of
    failing later inside redis-py."""
    with pytest.raises(ConfigError, match="RedisLedger url") as caught:
        RedisLedger(url)
    assert "redis://127.0.0.1:6379/0" in str(caught.value)
