"""The ``otel-costs`` command line: ``tree``, ``demo`` and ``prices export``.

The trace-wide rollup worker that was ``otel-costs serve`` is now the Collector's ``costrollup``
processor (``docs/collector-rollup.md``); ``prices export`` writes its price file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_costs.cli._demo import add_demo_parser
from otel_costs.cli._report import by_agent, cost_trees, format_by_agent, format_tree, trace_title
from otel_costs.pipeline._otlp import read_json_file
from otel_costs.report._cli import add_report_parsers


def _tree(args: argparse.Namespace) -> int:
    try:
        records, problems = read_json_file(args.file)
    except OSError as exc:
        print(f"otel-costs: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"otel-costs: skipped {problem}", file=sys.stderr)
    traces = cost_trees(records)
    if not traces:
        print(f"otel-costs: no spans in {args.file}", file=sys.stderr)
        return 1
    for roots in traces:
        drawn = format_tree(roots, show_all=args.all)
        if drawn:
            print(trace_title(roots))
            print(drawn)
            print()
    if args.by_agent:
        print(format_by_agent(by_agent(records)))
    return 0


def _prices_export(args: argparse.Namespace) -> int:
    from otel_costs.pricing import PriceBook, PriceConfigError, export_prices

    try:
        book = PriceBook(overrides_file=args.prices, use_genai_prices=not args.no_genai_prices)
        document = export_prices(book, args.file)
    except PriceConfigError as exc:
        print(f"otel-costs prices export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otel-costs prices export: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    models = sum(len(p["models"]) for p in document["providers"])
    print(
        f"wrote {args.file}: {len(document['providers'])} providers, {models} models, "
        f"{len(document['overrides'])} overrides"
    )
    return 0


def _add_prices_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prices = sub.add_parser("prices", help="price data: export the Collector's price file")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    export = prices_sub.add_parser(
        "export",
        help="write the costrollup processor's price file (genai-prices' data plus your overrides)",
        description="Write the price file the Collector's costrollup processor reads (prices_file), "
        "from the same data PriceBook prices from: genai-prices' bundled data plus your overrides.",
    )
    export.add_argument("file", help="the price file to write (JSON)")
    export.add_argument(
        "--prices",
        metavar="OVERRIDES_FILE",
        default=None,
        help="price overrides, a .toml or .yaml file in PriceBook's schema (docs/pricing.md)",
    )
    export.add_argument(
        "--no-genai-prices",
        action="store_true",
        help="export the overrides only (usage-only spans of other models are then unpriced)",
    )
    export.set_defaults(func=_prices_export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``otel-costs`` (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(prog="otel-costs", description="Where the money goes in LLM traces.")
    sub = parser.add_subparsers(dest="command", required=True)
    tree = sub.add_parser("tree", help="print each trace in an OTLP/JSON-lines file as a cost tree")
    tree.add_argument("file", help="OTLP/JSON lines, as written by otel_costs.configure() or the Collector")
    tree.add_argument("--all", action="store_true", help="also show spans with no LLM cost below them")
    tree.add_argument("--by-agent", action="store_true", help="also print direct cost per agent")
    tree.set_defaults(func=_tree)
    add_demo_parser(sub)
    add_report_parsers(sub)
    _add_prices_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-costs`` command."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    code: int = args.func(args)
    return code
