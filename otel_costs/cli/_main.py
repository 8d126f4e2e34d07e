"""The ``otel-costs`` command line: ``tree``, ``demo`` and ``serve``.

``serve`` lives in ``otel_costs._serve`` (grpc, protobuf: the ``serve`` extra), imported only when
that command runs, so ``tree`` and ``demo`` work on the base install and start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


#: ``otel-costs serve``'s one-line help, shown without importing it.
_SERVE_HELP = "trace-wide cost rollup worker, OTLP in and out (needs: pip install 'otel-costs[serve]')"


def build_parser(*, serve: bool = False) -> argparse.ArgumentParser:
    """The argument parser of ``otel-costs`` (subcommands register themselves here).

    ``serve=True`` imports ``otel_costs._serve`` for the full ``serve`` subcommand; otherwise
    ``serve`` is listed by name and help only.
    """
    parser = argparse.ArgumentParser(prog="otel-costs", description="Where the money goes in LLM traces.")
    sub = parser.add_subparsers(dest="command", required=True)
    tree = sub.add_parser("tree", help="print each trace in an OTLP/JSON-lines file as a cost tree")
    tree.add_argument("file", help="OTLP/JSON lines, as written by otel_costs.configure() or the Collector")
    tree.add_argument("--all", action="store_true", help="also show spans with no LLM cost below them")
    tree.add_argument("--by-agent", action="store_true", help="also print direct cost per agent")
    tree.set_defaults(func=_tree)
    add_demo_parser(sub)
    if serve:
        from otel_costs._serve import add_serve_parser

        add_serve_parser(sub)
    else:
        sub.add_parser("serve", help=_SERVE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-costs`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    serve = argv[:1] == ["serve"]  # the command is the first argument: the top level has only -h
    if serve:
        try:
            import otel_costs._serve  # noqa: F401
        except ImportError as exc:
            print(
                f"otel-costs serve: {exc}; it needs the serve extra: pip install 'otel-costs[serve]'",
                file=sys.stderr,
            )
            return 2
    args = build_parser(serve=serve).parse_args(argv)
    code: int = args.func(args)
    return code
