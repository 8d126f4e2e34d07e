"""``otel-costs prices export`` / ``otel_costs.pricing.export_prices``: the Collector's price file.

The fast tests check the file against the format (``collector/costrollupprocessor/README.md``,
"Price file") and that overrides (cached input, cache writes, tiers, dated changes, provider
restrictions) round-trip. The slow test runs the real built Collector with ``costrollup`` reading
an exported file and checks that usage-only spans come out with the same ``cost.direct_nanos`` as
``PriceBook`` gives in Python, for genai-prices models and overrides.

The price file's keys and provider aliases (internal) are the contract with the Go processor, so the
tests read them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from genai_prices import data_snapshot
from infra import LOOPBACK, _run_process, free_port, poll_until

from otel_costs._money import to_nanos
from otel_costs.cli import main
from otel_costs.pricing import PriceBook, PriceConfigError, export_prices, read_usage
from otel_costs.pricing._export import PRICE_KEYS
from otel_costs.pricing._providers import PROVIDER_ALIASES

OVERRIDES: dict[str, dict[str, Any]] = {
    "acme-large": {
        "input": "2.5",
        "cached_input": 0.25,
        "cache_write": "3.125",
        "output": 10,
        "tiers": [{"above": 128000, "input": 5, "cached_input": "0.5", "cache_write": "6.25", "output": 15}],
        "changes": [
            {
                "start_date": dt.date(2026, 6, 1),
                "input": "2",
                "cached_input": "0.2",
                "cache_write": "2.5",
                "output": "8",
                "tiers": [
                    {"above": 128000, "input": "4", "cached_input": "0.4", "cache_write": "5", "output": "12"}
                ],
            }
        ],
    },
    "House-Model": {"provider": "azure.ai.openai", "input": "0.3", "output": "1.2"},
    "tiny": {"input": "0.0000001", "output": "1e-7"},
}

DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
MATCH_KEYS = {"equals", "starts_with", "ends_with", "contains", "regex", "or", "and"}


def _check_rate(where: str, value: Any) -> None:
    if isinstance(value, str):
        assert DECIMAL.match(value), f"{where}: {value!r} is not a decimal string"
        return
    assert isinstance(value, dict) and set(value) == {"base", "tiers"}, where
    _check_rate(where + ".base", value["base"])
    starts = [tier["start"] for tier in value["tiers"]]
    assert starts == sorted(starts) and all(type(s) is int for s in starts), where
    for tier in value["tiers"]:
        assert set(tier) == {"start", "price"}, where
        _check_rate(where + ".tiers", tier["price"])


def _check_price_set(where: str, price_set: Any) -> None:
    assert isinstance(price_set, dict), where
    assert set(price_set) <= set(PRICE_KEYS), f"{where}: {sorted(set(price_set) - set(PRICE_KEYS))}"
    for key, value in price_set.items():
        _check_rate(f"{where}.{key}", value)


def _check_prices(where: str, prices: Any) -> None:
    if isinstance(prices, dict):
        _check_price_set(where, prices)
        return
    assert isinstance(prices, list) and prices, where
    for index, entry in enumerate(prices):
        assert set(entry) == {"constraint", "prices"}, where
        constraint = entry["constraint"]
        assert constraint is None or set(constraint) in ({"start_date"}, {"start_time", "end_time"}), where
        _check_price_set(f"{where}[{index}]", entry["prices"])


def _check_match(where: str, match: Any) -> None:
    assert isinstance(match, dict) and len(match) == 1, f"{where}: {match!r}"
    ((key, value),) = match.items()
    assert key in MATCH_KEYS, where
    if key in ("or", "and"):
        assert isinstance(value, list) and value, where
        for clause in value:
            _check_match(where, clause)
    else:
        assert isinstance(value, str), where


def test_export_from_genai_prices_validates(tmp_path: Path) -> None:
    """The default book's export: format and version keys, genai-prices' providers in order,
    every model with a match and prices in the format's shape, the provider aliases."""
    path = tmp_path / "prices.json"
    document = export_prices(PriceBook(), path)
    assert json.loads(path.read_text(encoding="utf-8")) == document
    assert document["format"] == "otel-costs-prices"
    assert document["version"] == 1
    assert document["generated_by"].startswith("otel-costs ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document["generated_at"])
    assert document["provider_aliases"] == PROVIDER_ALIASES
    assert document["overrides"] == []
    assert [p["id"] for p in document["providers"]] == [p.id for p in data_snapshot.get_snapshot().providers]
    models = 0
    for provider in document["providers"]:
        assert isinstance(provider["api_pattern"], str)
        re.compile(provider["api_pattern"])
        for key in ("provider_match", "model_match"):
            if key in provider:
                _check_match(f"{provider['id']}.{key}", provider[key])
        assert provider["models"], provider["id"]
        for model in provider["models"]:
            where = f"{provider['id']}/{model['id']}"
            assert set(model) == {"id", "match", "prices"}, where
            _check_match(where, model["match"])
            _check_prices(where, model["prices"])
            models += 1
    assert models > 100
    assert not list(tmp_path.glob(".*tmp")), "the temporary file was left behind"
    assert path.stat().st_mode & 0o777 == 0o644, "a Collector running as another user must read it"
    path.chmod(0o600)
    export_prices(PriceBook(use_genai_prices=False), path)
    assert path.stat().st_mode & 0o777 == 0o600, "a re-export keeps the file's mode"


def test_overrides_round_trip() -> None:
    """Overrides come out as written: cached input, cache writes, tiers, dated changes, exact
    decimals (floats and ints as written), the provider restriction as the normalized id."""
    document = export_prices(PriceBook(OVERRIDES, use_genai_prices=False), os.devnull)
    assert document["providers"] == []
    by_model = {o["model"]: o for o in document["overrides"]}
    assert by_model["House-Model"] == {
        "model": "House-Model",
        "provider": "azure",
        "prices": {"input_mtok": "0.3", "output_mtok": "1.2"},
    }
    assert by_model["tiny"]["prices"] == {"input_mtok": "0.0000001", "output_mtok": "0.0000001"}

    def tiered(base: str, high: str) -> dict[str, Any]:
        return {"base": base, "tiers": [{"start": 128000, "price": high}]}

    assert by_model["acme-large"] == {
        "model": "acme-large",
        "provider": None,
        "prices": [
            {
                "constraint": None,
                "prices": {
                    "input_mtok": tiered("2.5", "5"),
                    "cache_read_mtok": tiered("0.25", "0.5"),
                    "cache_write_mtok": tiered("3.125", "6.25"),
                    "output_mtok": tiered("10", "15"),
                },
            },
            {
                "constraint": {"start_date": "2026-06-01"},
                "prices": {
                    "input_mtok": tiered("2", "4"),
                    "cache_read_mtok": tiered("0.2", "0.4"),
                    "cache_write_mtok": tiered("2.5", "5"),
                    "output_mtok": tiered("8", "12"),
                },
            },
        ],
    }
    for override in document["overrides"]:
        _check_prices(override["model"], override["prices"])


def test_cli_exports_an_overrides_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``otel-costs prices export FILE --prices OVERRIDES --no-genai-prices``; a bad overrides
    file exits 2 naming the problem, and writes nothing."""
    overrides = tmp_path / "prices.toml"
    overrides.write_text(
        "[acme-large]\ninput = 2.5\noutput = 10\ncached_input = 0.25\n"
        "changes = [{start_date = 2026-06-01, input = 2, output = 8}]\n"
        '\n[house-model]\nprovider = "openai"\ninput = 0.3\noutput = 1.2\n'
    )
    out = tmp_path / "out" / "prices.json"
    out.parent.mkdir()
    assert main(["prices", "export", str(out), "--prices", str(overrides), "--no-genai-prices"]) == 0
    assert "0 providers, 0 models, 2 overrides" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["providers"] == []
    assert document["overrides"] == [
        {
            "model": "acme-large",
            "provider": None,
            "prices": [
                {
                    "constraint": None,
                    "prices": {"input_mtok": "2.5", "cache_read_mtok": "0.25", "output_mtok": "10"},
                },
                {
                    "constraint": {"start_date": "2026-06-01"},
                    "prices": {"input_mtok": "2", "output_mtok": "8"},
                },
            ],
        },
        {"model": "house-model", "provider": "openai", "prices": {"input_mtok": "0.3", "output_mtok": "1.2"}},
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text("[m]\ninput = -1\noutput = 1\n")
    missing = tmp_path / "never.json"
    assert main(["prices", "export", str(missing), "--prices", str(bad)]) == 2
    assert "expected a finite price >= 0" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["prices", "export", str(tmp_path / "no-such-dir" / "p.json"), "--no-genai-prices"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_bad_overrides_raise_before_anything_is_written() -> None:
    with pytest.raises(PriceConfigError):
        PriceBook({"m": {"input": 1}})


# --- through the real Collector -------------------------------------------------------------------


def _collector_binary() -> Path:
    """The built Collector; a missing one skips the test, except in CI (``CI=true``) where it fails."""
    path = (
        Path(os.environ.get("OTEL_COSTS_BIN_DIR", Path.home() / ".cache" / "otel-costs" / "bin"))
        / "otelcol-otel-costs"
    )
    if not os.access(path, os.X_OK):
        message = f"the built Collector {path} is missing: run `bash collector/build.sh` (needs Go >= 1.26)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class _Sink(ThreadingHTTPServer):
    """An OTLP/HTTP JSON receiver: keeps every request body the Collector's otlphttp exporter sends."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        super().__init__((LOOPBACK, 0), _SinkHandler)


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _sink() -> Iterator[_Sink]:
    server = _Sink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


#: Start times: before acme-large's 2026-06-01 change, after it, and DeepSeek's off-peak hours.
T_MAY = 1_780_000_000_000_000_000
T_JUNE = 1_782_000_000_000_000_000
T_OFFPEAK = 1_780_020_000_000_000_000

#: (name, attributes, start): usage-only LLM spans, none carries cost.*.
CALLS: list[tuple[str, dict[str, Any], int]] = [
    ("gpt-4o", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}, T_MAY),
    (
        "claude cached",
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 500,
        },
        T_MAY,
    ),
    (
        "gemini 200k tier",
        {"gen_ai.provider.name": "gcp.gemini", "gen_ai.request.model": "gemini-2.5-pro"},
        T_MAY,
    ),
    (
        "deepseek off-peak",
        {"gen_ai.provider.name": "deepseek", "gen_ai.request.model": "deepseek-chat"},
        T_OFFPEAK,
    ),
    ("by server", {"gen_ai.request.model": "gpt-4o-mini", "server.address": "api.openai.com"}, T_MAY),
    ("litellm name", {"gen_ai.request.model": "openai/gpt-4o-mini"}, T_MAY),
    (
        "acme tier, may",
        {"gen_ai.request.model": "acme-large", "gen_ai.usage.cache_read.input_tokens": 40_000},
        T_MAY,
    ),
    ("acme june", {"gen_ai.request.model": "ACME-Large", "gen_ai.provider.name": "acme"}, T_JUNE),
    ("house on azure", {"gen_ai.provider.name": "azure", "gen_ai.request.model": "house-model"}, T_MAY),
    ("house elsewhere", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "house-model"}, T_MAY),
    ("unknown", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "no-such-model-xyz"}, T_MAY),
]
TOKENS = {"gemini 200k tier": (250_000, 300), "acme tier, may": (200_000, 1000)}


def _attributes(name: str, extra: dict[str, Any]) -> dict[str, Any]:
    input_tokens, output_tokens = TOKENS.get(name, (3000, 200))
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": value}


def _request(trace_id: str) -> dict[str, Any]:
    spans: list[dict[str, Any]] = [
        {
            "traceId": trace_id,
            "spanId": f"{1:016x}",
            "name": "workflow",
            "kind": 1,
            "startTimeUnixNano": str(T_MAY),
            "endTimeUnixNano": str(T_MAY + 10_000_000),
            "attributes": [],
        }
    ]
    for index, (name, extra, start) in enumerate(CALLS, start=2):
        spans.append(
            {
                "traceId": trace_id,
                "spanId": f"{index:016x}",
                "parentSpanId": f"{1:016x}",
                "name": name,
                "kind": 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 1_000_000),
                "attributes": [
                    {"key": k, "value": _any_value(v)} for k, v in _attributes(name, extra).items()
                ],
            }
        )
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "no-otel-costs"}}]
                },
                "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
            }
        ]
    }


def _value(value: dict[str, Any]) -> Any:
    ((key, raw),) = value.items()
    if key == "intValue":
        return int(raw)
    if key == "doubleValue":
        return float(raw)
    return raw


COLLECTOR_CONFIG = """
extensions:
  health_check:
    endpoint: {host}:{health}
receivers:
  otlp:
    protocols:
      http:
        endpoint: {host}:{http}
processors:
  costrollup:
    prices_file: {prices}
    root_wait: 200ms
    max_wait: 10s
    check_interval: 20ms
exporters:
  otlphttp:
    endpoint: http://{host}:{sink}
    encoding: json
    compression: none
    retry_on_failure:
      enabled: false
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [costrollup]
      exporters: [otlphttp]
  telemetry:
    metrics:
      level: none
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_collector_prices_usage_only_spans_like_pricebook(tmp_path: Path) -> None:
    """Usage-only spans sent through a Collector running ``costrollup`` with the exported file
    come out with the same ``cost.direct_nanos`` (and status) as ``PriceBook`` gives in Python."""
    binary = _collector_binary()
    book = PriceBook(OVERRIDES)
    prices = tmp_path / "prices.json"
    export_prices(book, prices)
    expected: dict[str, tuple[str, int | None]] = {}
    for name, extra, start in CALLS:
        reading = read_usage(_attributes(name, extra))
        assert reading is not None and reading.call is not None, name
        result = book.price(reading.call, at=dt.datetime.fromtimestamp(start / 1e9, dt.UTC))
        expected[name] = (result.status, to_nanos(result.total) if result.status == "priced" else None)
    assert sum(1 for status, _ in expected.values() if status == "priced") >= 9, expected
    assert expected["acme june"][1] != expected["acme tier, may"][1]

    ports = {"health": free_port(), "http": free_port()}
    with _sink() as sink:
        config = tmp_path / "collector.yaml"
        config.write_text(
            COLLECTOR_CONFIG.format(host=LOOPBACK, prices=prices, sink=sink.server_address[1], **ports)
        )
        argv = [str(binary), "--config", str(config)]
        health = f"http://{LOOPBACK}:{ports['health']}/"
        with _run_process(argv, {}, health, tmp_path / "collector.log", "costrollup collector", 60.0):
            response = httpx.post(
                f"http://{LOOPBACK}:{ports['http']}/v1/traces",
                json=_request("5b8efff798038103d269b633813fc60c"),
            )
            assert response.status_code == 200, response.text
            spans = poll_until(
                lambda: (
                    [
                        s
                        for body in sink.bodies
                        for rs in body.get("resourceSpans", [])
                        for ss in rs.get("scopeSpans", [])
                        for s in ss.get("spans", [])
                    ]
                    or None
                ),
                timeout=30,
                what="the Collector to pass the trace on",
            )
    got = {s["name"]: {a["key"]: _value(a["value"]) for a in s.get("attributes", [])} for s in spans}
    assert set(got) == {"workflow", *expected}
    problems = []
    for name, (status, nanos) in expected.items():
        attrs = got[name]
        if attrs.get("cost.status") != status or attrs.get("cost.direct_nanos") != nanos:
            problems.append(
                f"{name}: PriceBook {status} {nanos}, Collector {attrs.get('cost.status')} "
                f"{attrs.get('cost.direct_nanos')} ({attrs.get('cost.status_reason')})"
            )
    assert not problems, "\n".join(problems)
    total = sum(nanos for _, nanos in expected.values() if nanos is not None)
    assert got["workflow"]["cost.total_nanos"] == total
    assert got["workflow"]["cost.rollup.unpriced"] == sum(1 for s, _ in expected.values() if s == "unpriced")
    assert Decimal(got["acme june"]["cost.direct_nanos"]) > 0
