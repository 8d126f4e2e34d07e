"""Cost rollup. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
from otel_costs.rollup._exporter import CostRollupExporter
from otel_costs.rollup._tree import CostNode, NodeRollup, cost_node, rollup

__all__ = ["CostNode", "CostRollupExporter", "NodeRollup", "cost_node", "rollup"]

_publish(globals(), __all__, __name__)
