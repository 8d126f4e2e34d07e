"""The ``otel-costs`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_costs._serve import add_serve_parser
from otel_costs.cli._demo import add_demo_parser
from otel_costs.cli._report import by_agent, cost_trees, format_by_agent, format_tree, trace_title
from otel_costs.pipeline._otlp import read_json_file


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
    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-costs`` command."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
