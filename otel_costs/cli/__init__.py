"""The ``otel-costs`` command line and the cost reports it prints, as public API.

``main(["tree", "traces.jsonl"])`` runs the command in-process; ``cost_trees``, ``format_tree``,
``by_agent``, ``format_by_agent`` and ``trace_title`` draw the same reports from decoded spans;
``run_demo`` runs ``otel-costs demo`` and returns what it prints.
"""

from otel_costs.cli._demo import run_demo
from otel_costs.cli._main import main
from otel_costs.cli._report import TreeNode, by_agent, cost_trees, format_by_agent, format_tree, trace_title

__all__ = [
    "TreeNode",
    "by_agent",
    "cost_trees",
    "format_by_agent",
    "format_tree",
    "main",
    "run_demo",
    "trace_title",
]

from otel_costs._public import publish as _publish

_publish(globals(), __all__, __name__)
