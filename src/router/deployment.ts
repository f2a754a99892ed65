/**
 * The check of a routing table against the deployment a router serves (--topology, --layers and
 * --experts). A table of another shape is valid on its own, but every engine batch would fail on it,
 * so the router rejects it before it becomes active or pending.
 */
import type { DeploymentShape } from '../config/router.js';
import type { RoutingTable } from '../routing/types.js';
import { TableShapeMismatchError } from './errors.js';

/** Throws TableShapeMismatchError naming the first field where `table` differs from `deployment`. */
export function checkTableShape(table: RoutingTable, deployment: DeploymentShape): void {
  const { topology, layers, experts } = deployment;
  const generation = table.generation;
  if (topology !== null && (table.topology.nodes !== topology.nodes || table.topology.gpusPerNode !== topology.gpusPerNode)) {
    throw new TableShapeMismatchError(
      `routing table generation ${generation} has topology ${table.topology.nodes}x${table.topology.gpusPerNode}, ` +
        `but this router serves ${topology.nodes}x${topology.gpusPerNode} (--topology); push a table for ${topology.nodes}x${topology.gpusPerNode}`,
    );
  }
  if (layers !== null && table.layers.length !== layers) {
    throw new TableShapeMismatchError(
      `routing table generation ${generation} has ${table.layers.length} layers, but this router serves ${layers} (--layers)`,
    );
  }
  if (experts !== null && table.experts !== experts) {
    throw new TableShapeMismatchError(
      `routing table generation ${generation} has ${table.experts} experts, but this router serves ${experts} (--experts)`,
    );
  }
}
