"""Cost rollup over span trees: the pure functions (``rollup``, ``cost_node``) and the in-process
``CostRollupExporter`` that puts each subtree's total on its spans.

Example::

    from otel_costs.rollup import CostNode, rollup

    nodes = [CostNode("root", None), CostNode("llm", "root", direct_nanos=12, billable=True)]
    totals = [r.total_nanos for r in rollup(nodes)]  # [12, 12]
"""

from otel_costs._public import publish as _publish
from otel_costs.rollup._exporter import CostRollupExporter, RunListener
from otel_costs.rollup._tree import CostNode, NodeRollup, cost_node, rollup

__all__ = [
    "CostNode",
    "CostRollupExporter",
    "NodeRollup",
    "RunListener",
    "cost_node",
    "rollup",
]

_publish(globals(), __all__, __name__)
